/**
 * The server's Subsonic API, served in process to plugins (no network). The embedding server
 * provides its own router as a layer; the engine ships an embedded default over its demo library.
 * The helpers here (version, error codes, parameter access) are for router implementations.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { User } from "./UserDirectory.js"

/** The Subsonic API version the host forces on every request (`v`). */
export const SUBSONIC_API_VERSION = "1.16.1"

/** One Subsonic request, already checked and normalised by the host service. */
export interface SubsonicRequest {
  /** The endpoint: the URI's last path segment without `.view` (e.g. `ping`, `getAlbum`). */
  readonly endpoint: string
  /** Query parameters in order, with `u`, `c`, `v` and (for JSON calls) `f` set by the host. */
  readonly params: ReadonlyArray<readonly [string, string]>
  /** The user the plugin acts as. */
  readonly user: User
}

/** A router's answer: the body the server would send, and its content type. */
export interface SubsonicResponse {
  readonly contentType: string
  readonly body: Uint8Array
}

/** The server's Subsonic API (supplied by the embedding server, or `EmbeddedLibrary`). */
export class SubsonicRouter extends Context.Tag("ndp-engine/SubsonicRouter")<
  SubsonicRouter,
  {
    /** Answers a request; Subsonic-level failures are answered in Subsonic's own error format. */
    readonly handle: (request: SubsonicRequest) => Effect.Effect<SubsonicResponse>
  }
>() {}

/** The error codes of the Subsonic API. */
export const SubsonicErrorCode = {
  Generic: 0,
  MissingParameter: 10,
  ClientTooOld: 20,
  ServerTooOld: 30,
  WrongCredentials: 40,
  TokenAuthNotSupported: 41,
  NotAuthorized: 50,
  TrialExpired: 60,
  NotFound: 70
} as const

/** The first value of parameter `name`, if any. */
export const paramOf = (request: SubsonicRequest, name: string): string | undefined =>
  request.params.find(([key]) => key === name)?.[1]

/** Every value of parameter `name`, in order (Subsonic repeats parameters such as `id`). */
export const paramsOf = (request: SubsonicRequest, name: string): ReadonlyArray<string> =>
  request.params.filter(([key]) => key === name).map(([, value]) => value)

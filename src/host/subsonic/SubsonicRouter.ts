/**
 * The server's Subsonic API, served in process to plugins (no network). The embedding server
 * provides its own router as a layer; the engine ships an embedded default over its demo library.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { User } from "../users/UserDirectory.js"

/** One Subsonic request, already checked and normalised by the host service. */
export interface SubsonicRequest {
  /** The endpoint: the URI's last path segment without `.view` (e.g. `ping`, `getAlbum`). */
  readonly endpoint: string
  /** Query parameters in order, with `u`, `c`, `v` and (for JSON calls) `f` set by the host. */
  readonly params: ReadonlyArray<readonly [string, string]>
  /** The user the plugin acts as. */
  readonly user: User
}

export interface SubsonicResponse {
  readonly contentType: string
  readonly body: Uint8Array
}

export class SubsonicRouter extends Context.Tag("ndp-engine/SubsonicRouter")<
  SubsonicRouter,
  {
    /** Answers a request; Subsonic-level failures are answered in Subsonic's own error format. */
    readonly handle: (request: SubsonicRequest) => Effect.Effect<SubsonicResponse>
  }
>() {}

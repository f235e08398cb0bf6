/**
 * The Scrobbler capability as a typed client. Errors are classified as the contract says: the text
 * `scrobbler(not_authorized|retry_later|unrecoverable)` in the plugin's error, or the README draft's
 * JSON output `{error, error_type}`; anything else is unrecoverable.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { PluginCallError } from "../runtime/PluginError.js"
import type { CapabilityTarget } from "./Capabilities.js"
import { parseOutput } from "./CapabilityCodec.js"

export const ScrobblerErrorKind = Schema.Literal("not_authorized", "retry_later", "unrecoverable")
export type ScrobblerErrorKind = typeof ScrobblerErrorKind.Type

/** A scrobbler refused or failed; `kind` says whether to retry, drop, or mark the user unauthorized. */
export class ScrobblerError extends Schema.TaggedError<ScrobblerError>()("ScrobblerError", {
  pluginId: Schema.String,
  kind: ScrobblerErrorKind,
  message: Schema.String,
  /** The underlying call failure's tag, when there was one. */
  callError: Schema.optional(Schema.String)
}) {}

export interface ArtistCredit {
  readonly id?: string
  readonly name: string
  readonly mbid?: string
  readonly sortName?: string
  /** The participation category (`artist`, `composer`, `performer`…). */
  readonly role?: string
  /** A specialization within the role (the instrument of a performer…). */
  readonly subRole?: string
}

/** What the host sends about a track (contract §4). */
export interface TrackInfo {
  readonly id: string
  readonly title: string
  readonly album: string
  readonly artist: string
  readonly albumArtist: string
  readonly artists: ReadonlyArray<ArtistCredit>
  readonly albumArtists: ReadonlyArray<ArtistCredit>
  /** Seconds. */
  readonly duration: number
  readonly trackNumber: number
  readonly discNumber: number
  readonly mbzRecordingId?: string
  readonly mbzAlbumId?: string
  readonly mbzReleaseGroupId?: string
  readonly mbzReleaseTrackId?: string
  /**
   * The track's library and its file path relative to that library's root. The server fills them;
   * a plugin receives them only when it has `library.filesystem` and the administrator allowed that
   * library (see {@link trackFor}).
   */
  readonly libraryId?: number
  readonly path?: string
}

/** What a client needs to know about a plugin to decide which track fields it may see. */
export type TrackAudience = Pick<CapabilityTarget, "manifest" | "allowsLibrary">

/** The track as `plugin` may see it: without `libraryId` and `path` unless it may read that library's files. */
export const trackFor = (plugin: TrackAudience, track: TrackInfo): TrackInfo => {
  if (track.libraryId === undefined && track.path === undefined) return track
  const { libraryId, path, ...rest } = track
  const allowed =
    libraryId !== undefined &&
    plugin.manifest?.permissions.library?.filesystem === true &&
    (plugin.allowsLibrary?.(libraryId) ?? false)
  return allowed ? { ...rest, libraryId, ...(path === undefined ? {} : { path }) } : rest
}

export interface NowPlayingRequest {
  readonly username: string
  readonly track: TrackInfo
  /** Seconds into the track. */
  readonly position: number
}

export interface ScrobbleRequest {
  readonly username: string
  readonly track: TrackInfo
  /** Unix seconds when playback started. */
  readonly timestamp: number
}

/** Playback states a player reports (Navidrome's `PlaybackReportRequest.state`). */
export const PlaybackState = Schema.Literal("starting", "playing", "paused", "stopped", "expired")
export type PlaybackState = typeof PlaybackState.Type

/** A player's playback state, as reported to `nd_scrobbler_playback_report`. */
export interface PlaybackReport {
  readonly username: string
  readonly track: TrackInfo
  readonly state: PlaybackState
  readonly positionMs: number
  /** 1 is normal speed. */
  readonly playbackRate: number
  readonly playerId: string
  readonly playerName: string
  /** Unix seconds when the report was made. */
  readonly timestamp: number
}

export interface Scrobbler {
  readonly pluginId: string
  /** Whether the plugin will scrobble for this user (false without asking if the user is not allowed). */
  readonly isAuthorized: (username: string) => Effect.Effect<boolean, ScrobblerError>
  readonly nowPlaying: (request: NowPlayingRequest) => Effect.Effect<void, ScrobblerError>
  readonly scrobble: (request: ScrobbleRequest) => Effect.Effect<void, ScrobblerError>
  /**
   * Reports a playback state. A plugin without the export, or answering "not implemented" (-2),
   * succeeds: playback reports are optional for scrobblers.
   */
  readonly playbackReport: (report: PlaybackReport) => Effect.Effect<void, ScrobblerError>
}

const KIND_IN_TEXT = /scrobbler\((not_authorized|retry_later|unrecoverable)\)/

const DraftError = Schema.Struct({
  error: Schema.optional(Schema.NullOr(Schema.String)),
  error_type: Schema.optional(Schema.NullOr(Schema.String)),
  errorType: Schema.optional(Schema.NullOr(Schema.String))
})

const kindOf = (text: string | null | undefined): ScrobblerErrorKind => {
  const parsed = Schema.decodeUnknownOption(ScrobblerErrorKind)(text)
  return parsed._tag === "Some" ? parsed.value : "unrecoverable"
}

export interface ScrobblerOptions {
  /** Whether the administrator allowed this user for the plugin (default: the plugin's own allowance). */
  readonly allowsUser?: (username: string) => boolean
}

/** The scrobbler client of a loaded plugin. */
export const fromPlugin = (
  plugin: Pick<CapabilityTarget, "id" | "exports" | "call" | "allowsUser"> & TrackAudience,
  options: ScrobblerOptions = {}
): Scrobbler => {
  const fail = (kind: ScrobblerErrorKind, message: string, callError?: string) =>
    new ScrobblerError({
      pluginId: plugin.id,
      kind,
      message,
      ...(callError === undefined ? {} : { callError })
    })

  const fromCallError = (
    error: PluginCallError | { readonly _tag: "PluginOutputError"; readonly message: string }
  ) => fail(kindOf(KIND_IN_TEXT.exec(error.message)?.[1]), error.message, error._tag)

  // Draft plugins report failure as a successful call with `{error, error_type}` output.
  const send = (name: keyof Scrobbler, exportName: string, request: { readonly track: TrackInfo }) =>
    plugin.call(exportName, JSON.stringify({ ...request, track: trackFor(plugin, request.track) })).pipe(
      Effect.flatMap((bytes) => parseOutput(plugin.id, exportName, bytes)),
      Effect.mapError(fromCallError),
      Effect.flatMap((json) => {
        const draft = Schema.decodeUnknownOption(DraftError)(json)
        if (draft._tag === "Some" && typeof draft.value.error === "string" && draft.value.error !== "") {
          const type = draft.value.error_type ?? draft.value.errorType
          return Effect.fail(fail(kindOf(type), draft.value.error))
        }
        return Effect.void
      }),
      Effect.withSpan(`Scrobbler.${name}`, { attributes: { plugin: plugin.id, export: exportName } })
    )

  const allows = options.allowsUser ?? plugin.allowsUser ?? (() => false)

  const notAllowed = (username: string) =>
    Effect.fail(fail("not_authorized", `user ${username} is not allowed for plugin ${plugin.id}`))

  return {
    pluginId: plugin.id,
    isAuthorized: (username) =>
      !allows(username) || !plugin.exports.has("nd_scrobbler_is_authorized")
        ? Effect.succeed(false)
        : plugin.call("nd_scrobbler_is_authorized", JSON.stringify({ username })).pipe(
            Effect.flatMap((bytes) => parseOutput(plugin.id, "nd_scrobbler_is_authorized", bytes)),
            Effect.mapError(fromCallError),
            Effect.flatMap((json) => {
              if (json === undefined) return Effect.succeed(false)
              if (typeof json === "boolean") return Effect.succeed(json)
              if (typeof json === "object" && json !== null && "authorized" in json) {
                return Effect.succeed((json as { authorized: unknown }).authorized === true)
              }
              return Effect.fail(
                fail(
                  "unrecoverable",
                  `plugin ${plugin.id} answered nd_scrobbler_is_authorized with ${JSON.stringify(json)}; expected true or false`
                )
              )
            })
          ),
    nowPlaying: (request) =>
      allows(request.username)
        ? send("nowPlaying", "nd_scrobbler_now_playing", request)
        : notAllowed(request.username),
    scrobble: (request) =>
      allows(request.username)
        ? send("scrobble", "nd_scrobbler_scrobble", request)
        : notAllowed(request.username),
    playbackReport: (report) =>
      !allows(report.username)
        ? notAllowed(report.username)
        : !plugin.exports.has("nd_scrobbler_playback_report")
          ? Effect.void
          : send("playbackReport", "nd_scrobbler_playback_report", report).pipe(
              Effect.catchIf(
                (error) => error.callError === "PluginNotImplementedError",
                () => Effect.void
              )
            )
  }
}

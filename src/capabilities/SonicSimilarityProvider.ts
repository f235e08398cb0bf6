/**
 * The SonicSimilarity capability as a typed client: `nd_get_sonic_similar_tracks {song, count}` and
 * `nd_find_sonic_path {startSong, endSong, count}`, both answering `{matches: [{song, similarity}]}`.
 * Suggested songs are references the host resolves against its library (the manager's
 * `SonicSimilarity` does, through the matcher). A missing export and "not implemented" are no
 * matches; an answer over `maxAnswerBytes`, not JSON or not the contract's shape is a
 * `PluginOutputError`; matches past the `count` asked for are dropped.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { CapabilityTarget } from "./Capabilities.js"
import type { PluginCallError, PluginNotImplementedError } from "../runtime/PluginError.js"
import { decodeBoundedOutput, nullable } from "./CapabilityCodec.js"
import { normalizeSongRef, type NormalizedSongRef, SongRef } from "./MetadataAgent.js"

/** Failures of a sonic-similarity call; "not implemented" is no matches, not an error. */
export type SonicSimilarityProviderError = Exclude<PluginCallError, PluginNotImplementedError>

/** The largest answer read from a plugin by default: 1 MiB of JSON. */
export const defaultMaxAnswerBytes = 1024 * 1024

const SonicMatch = Schema.Struct({ song: SongRef, similarity: Schema.Number.pipe(Schema.finite()) })
const SonicResponse = Schema.Struct({ matches: nullable(Schema.Array(SonicMatch)) })

/** A song the plugin suggests and how similar it found it (higher is closer). */
export interface SonicMatch {
  readonly song: NormalizedSongRef
  readonly similarity: number
}

export const similarTracksExport = "nd_get_sonic_similar_tracks"
export const sonicPathExport = "nd_find_sonic_path"

export interface SonicSimilarityProvider {
  readonly pluginId: string
  /** Up to `count` songs that sound like `song`, as the plugin ranks them. */
  readonly similarTracks: (
    song: SongRef,
    count: number
  ) => Effect.Effect<ReadonlyArray<SonicMatch>, SonicSimilarityProviderError>
  /** Up to `count` songs leading from `start` to `end`, in order. */
  readonly sonicPath: (
    start: SongRef,
    end: SongRef,
    count: number
  ) => Effect.Effect<ReadonlyArray<SonicMatch>, SonicSimilarityProviderError>
}

export interface SonicSimilarityProviderOptions {
  /** Answers larger than this many bytes are refused as `PluginOutputError` `TooLarge`. */
  readonly maxAnswerBytes?: number
}

/** The sonic-similarity client of a loaded plugin. */
export const fromPlugin = (
  plugin: Pick<CapabilityTarget, "id" | "exports" | "call">,
  options: SonicSimilarityProviderOptions = {}
): SonicSimilarityProvider => {
  const maxAnswerBytes = options.maxAnswerBytes ?? defaultMaxAnswerBytes
  const decode = decodeBoundedOutput(SonicResponse, "sonic-similarity answers", maxAnswerBytes)
  const ask = (exportName: string, request: object, count: number) =>
    !plugin.exports.has(exportName)
      ? Effect.succeed([])
      : plugin.call(exportName, JSON.stringify(request)).pipe(
          Effect.flatMap((bytes) => decode(plugin.id, exportName, bytes)),
          Effect.tap((response) =>
            (response?.matches?.length ?? 0) > count
              ? Effect.logWarning(
                  `plugin ${plugin.id}: ${exportName} answered ${response?.matches?.length} matches for ${count} asked; the rest are dropped`
                )
              : Effect.void
          ),
          Effect.map((response): ReadonlyArray<SonicMatch> =>
            (response?.matches ?? [])
              .slice(0, count)
              .map((match) => ({ song: normalizeSongRef(match.song), similarity: match.similarity }))
          ),
          Effect.catchTag("PluginNotImplementedError", () => Effect.succeed([])),
          Effect.annotateLogs("plugin", plugin.id),
          Effect.withSpan(`SonicSimilarityProvider.${exportName}`, { attributes: { plugin: plugin.id } })
        )
  return {
    pluginId: plugin.id,
    similarTracks: (song, count) => ask(similarTracksExport, { song, count }, count),
    sonicPath: (start, end, count) => ask(sonicPathExport, { startSong: start, endSong: end, count }, count)
  }
}

/**
 * The Lyrics capability as a typed client: `nd_lyrics_get_lyrics {track}` → `{lyrics: [{lang?, text}]}`,
 * each text parsed (LRC, SRT, TTML or plain) into lines with optional times. A missing `lang` becomes
 * `xxx`; an entry that cannot be parsed is logged and skipped; entries without lines are dropped. A
 * missing export and "not implemented" are no lyrics; real failures are errors.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import type { CapabilityTarget } from "./Capabilities.js"
import type { PluginCallError, PluginNotImplementedError } from "../runtime/PluginError.js"
import { decodeBoundedOutput, nullable } from "./CapabilityCodec.js"
import * as LyricsFormat from "./LyricsFormat.js"
import { type TrackAudience, type TrackInfo, trackFor } from "./Scrobbler.js"

/** Failures of a lyrics call; "not implemented" is no lyrics, not an error. */
export type LyricsProviderError = Exclude<PluginCallError, PluginNotImplementedError>

/** The largest answer read from a plugin by default: 1 MiB of JSON. */
export const defaultMaxAnswerBytes = 1024 * 1024

const LyricsText = Schema.Struct({ lang: nullable(Schema.String), text: nullable(Schema.String) })
const LyricsResponse = Schema.Struct({ lyrics: nullable(Schema.Array(LyricsText)) })

const exportName = "nd_lyrics_get_lyrics"

export interface LyricsProvider {
  readonly pluginId: string
  /** The track's lyrics the plugin found (empty when it found none), one entry per language or version. */
  readonly getLyrics: (
    track: TrackInfo
  ) => Effect.Effect<ReadonlyArray<LyricsFormat.Lyrics>, LyricsProviderError>
}

export interface LyricsProviderOptions {
  /** Answers larger than this many bytes are refused as `PluginOutputError` `TooLarge`. */
  readonly maxAnswerBytes?: number
}

/** The lyrics client of a loaded plugin. */
export const fromPlugin = (
  plugin: Pick<CapabilityTarget, "id" | "exports" | "call"> & TrackAudience,
  options: LyricsProviderOptions = {}
): LyricsProvider => {
  const maxAnswerBytes = options.maxAnswerBytes ?? defaultMaxAnswerBytes
  const decode = decodeBoundedOutput(LyricsResponse, "lyrics answers", maxAnswerBytes)
  return {
    pluginId: plugin.id,
    getLyrics: (track) =>
      !plugin.exports.has(exportName)
        ? Effect.succeed([])
        : plugin.call(exportName, JSON.stringify({ track: trackFor(plugin, track) })).pipe(
            Effect.flatMap((bytes) => decode(plugin.id, exportName, bytes)),
            Effect.flatMap((response) =>
              Effect.forEach(response?.lyrics ?? [], (entry, index) => {
                const parsed = LyricsFormat.parse(entry.lang, entry.text ?? "")
                return Either.match(parsed, {
                  onLeft: (why) =>
                    Effect.as(
                      Effect.logWarning(`plugin ${plugin.id}: lyrics entry ${index} skipped: ${why}`),
                      []
                    ),
                  onRight: (lyrics) => Effect.succeed(lyrics.lines.length === 0 ? [] : [lyrics])
                })
              })
            ),
            Effect.map((found) => found.flat()),
            Effect.catchTag("PluginNotImplementedError", () => Effect.succeed([])),
            Effect.annotateLogs("plugin", plugin.id),
            Effect.withSpan(`LyricsProvider.${exportName}`, { attributes: { plugin: plugin.id } })
          )
  }
}

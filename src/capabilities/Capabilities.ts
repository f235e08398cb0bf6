/**
 * Capabilities are detected from exports: a plugin has a capability when it exports at least one
 * of that capability's functions (contract §3).
 */
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Manifest } from "../manifest/Manifest.js"
import type { PluginCallError } from "../runtime/PluginError.js"
import type { CallOptions } from "../runtime/WasmRuntime.js"

export const CapabilityName = Schema.Literal(
  "MetadataAgent",
  "Scrobbler",
  "Lifecycle",
  "Scheduler",
  "WebSocket",
  "Lyrics",
  "TaskWorker",
  "SonicSimilarity"
)
export type CapabilityName = typeof CapabilityName.Type

/** The exports that make up each capability. */
export const capabilityExports: Readonly<Record<CapabilityName, ReadonlyArray<string>>> = {
  MetadataAgent: [
    "nd_get_artist_mbid",
    "nd_get_artist_url",
    "nd_get_artist_biography",
    "nd_get_similar_artists",
    "nd_get_artist_images",
    "nd_get_artist_top_songs",
    "nd_get_album_info",
    "nd_get_album_images",
    "nd_get_similar_songs_by_track",
    "nd_get_similar_songs_by_album",
    "nd_get_similar_songs_by_artist"
  ],
  Scrobbler: [
    "nd_scrobbler_is_authorized",
    "nd_scrobbler_now_playing",
    "nd_scrobbler_scrobble",
    "nd_scrobbler_playback_report"
  ],
  Lifecycle: ["nd_on_init"],
  Scheduler: ["nd_scheduler_callback"],
  WebSocket: [
    "nd_websocket_on_text_message",
    "nd_websocket_on_binary_message",
    "nd_websocket_on_error",
    "nd_websocket_on_close"
  ],
  Lyrics: ["nd_lyrics_get_lyrics"],
  TaskWorker: ["nd_task_execute"],
  SonicSimilarity: ["nd_get_sonic_similar_tracks", "nd_find_sonic_path"]
}

/** The capabilities a set of exports provides, in a stable order. */
export const detectCapabilities = (exports: ReadonlySet<string>): ReadonlyArray<CapabilityName> =>
  CapabilityName.literals.filter((name) => capabilityExports[name].some((fn) => exports.has(fn)))

/**
 * What a capability client needs of a loaded plugin. The loader's `LoadedPlugin` is one; declared
 * here so that capabilities never import the loader, which runs `nd_on_init` through them.
 */
export interface CapabilityTarget {
  readonly id: string
  readonly exports: ReadonlySet<string>
  /** Calls an export with raw input bytes (a string is sent as UTF-8). */
  readonly call: (
    exportName: string,
    input?: Uint8Array | string,
    options?: CallOptions
  ) => Effect.Effect<Uint8Array | null, PluginCallError>
  /** Whether the administrator allowed this user for the plugin. */
  readonly allowsUser?: ((username: string) => boolean) | undefined
  /** The plugin's manifest (its permissions decide which track fields it may see). */
  readonly manifest?: Manifest | undefined
  /** Whether the administrator allowed this library for the plugin. */
  readonly allowsLibrary?: ((libraryId: number) => boolean) | undefined
}

/**
 * Lyrics lookups across plugins in the configured order (a `LyricsPriority`-like setting naming
 * plugin IDs). The first source whose answer has lyrics wins. A source that fails is logged and
 * skipped: another may well answer. Each plugin runs at most `maxConcurrentPerPlugin` lookups at a
 * time (default 2), because clients prefetch lyrics for whole queues and the burst would otherwise
 * hit the plugin's upstream service all at once.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as LyricsFormat from "../capabilities/LyricsFormat.js"
import * as LyricsProvider from "../capabilities/LyricsProvider.js"
import type { TrackInfo } from "../capabilities/Scrobbler.js"
import type { LoadedPlugin } from "../loader/PluginLoader.js"
import { PluginManager } from "./PluginManager.js"

export interface LyricsOptions {
  /** Plugin IDs in the order they are asked. */
  readonly sources: ReadonlyArray<string>
  /** Lookups one plugin runs at once (default 2); more wait their turn. */
  readonly maxConcurrentPerPlugin?: number
  /** Answers larger than this are a failure of that source (default 1 MiB). */
  readonly maxAnswerBytes?: number
}

/** Lyrics and the plugin that gave them. */
export interface Answer {
  readonly source: string
  readonly lyrics: ReadonlyArray<LyricsFormat.Lyrics>
}

export class Lyrics extends Context.Tag("ndp-engine/Lyrics")<
  Lyrics,
  {
    /** Asks the sources in order; the first non-empty answer, or `None` when no source has lyrics. */
    readonly getLyrics: (track: TrackInfo) => Effect.Effect<Option.Option<Answer>>
    /** The configured order. */
    readonly sources: ReadonlyArray<string>
  }
>() {}

/** Source names from a comma-separated setting such as `"lrclib, my-lyrics"`. */
export const parseSources = (setting: string): ReadonlyArray<string> =>
  setting
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "")

const make = (options: LyricsOptions) =>
  Effect.gen(function* () {
    const manager = yield* PluginManager
    const perPlugin = Math.max(1, options.maxConcurrentPerPlugin ?? 2)
    // Keyed by ID, not by loaded version: a reload must not double the plugin's allowance.
    const gates = new Map<string, Effect.Semaphore>()
    const clients = new WeakMap<LoadedPlugin, LyricsProvider.LyricsProvider>()

    const gateOf = (id: string) => {
      let gate = gates.get(id)
      if (gate === undefined) {
        gate = Effect.unsafeMakeSemaphore(perPlugin)
        gates.set(id, gate)
      }
      return gate
    }

    const clientOf = (plugin: LoadedPlugin) => {
      let client = clients.get(plugin)
      if (client === undefined) {
        client = LyricsProvider.fromPlugin(
          plugin,
          options.maxAnswerBytes === undefined ? {} : { maxAnswerBytes: options.maxAnswerBytes }
        )
        clients.set(plugin, client)
      }
      return client
    }

    const askOne = (id: string, track: TrackInfo) =>
      gateOf(id)
        .withPermits(1)(
          manager.use(id, (plugin) =>
            plugin.capabilities.includes("Lyrics") ? clientOf(plugin).getLyrics(track) : Effect.succeed([])
          )
        )
        .pipe(
          Effect.catchAll((error) =>
            Effect.as(
              error._tag === "ManagerError"
                ? Effect.logDebug(`lyrics source ${id} is not loaded: ${error.message}`)
                : Effect.logWarning(`lyrics source ${id} failed: ${error.message}`),
              []
            )
          ),
          Effect.catchAllDefect((defect) =>
            Effect.as(Effect.logError(`lyrics source ${id} crashed`, defect), [])
          ),
          Effect.annotateLogs("plugin", id)
        )

    const getLyrics = Effect.fn("Lyrics.getLyrics")(function* (track: TrackInfo) {
      for (const source of options.sources) {
        const lyrics = yield* askOne(source, track)
        if (lyrics.length > 0) return Option.some<Answer>({ source, lyrics })
      }
      return Option.none<Answer>()
    })

    return Lyrics.of({ getLyrics, sources: options.sources })
  })

/** Lyrics lookups over the manager's plugins. */
export const layer = (options: LyricsOptions): Layer.Layer<Lyrics, never, PluginManager> =>
  Layer.effect(Lyrics, make(options))

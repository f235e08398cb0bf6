/**
 * Sonic similarity over the manager's plugins: songs that sound like a library track, or a path of
 * songs from one track to another, from the plugin providing the `SonicSimilarity` capability,
 * resolved to library tracks through the matcher (ID, MusicBrainz ID, ISRC, then title and
 * artist). Suggestions the library lacks are dropped and the others keep their similarity; a
 * failing provider is an error, not an empty answer.
 *
 * One provider answers each request, chosen the same way every time: the first loaded plugin with
 * the capability in the configured `providers` order, else the loaded one with the lowest ID.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { SongRef } from "../capabilities/MetadataAgent.js"
import * as SonicSimilarityProvider from "../capabilities/SonicSimilarityProvider.js"
import { matchSongs } from "../host/matcher/MatcherService.js"
import type { LoadedPlugin } from "../loader/PluginLoader.js"
import { type CatalogTrack, type LibraryScope, TrackCatalog } from "../server/TrackCatalog.js"
import { PluginManager } from "./PluginManager.js"

export interface SonicSimilarityOptions {
  /** Plugin IDs preferred as the provider, in order; other loaded providers follow by ID. */
  readonly providers?: ReadonlyArray<string>
  /** The most songs one request may ask for (default 500); a larger `count` is cut to it. */
  readonly maxCount?: number
  /** Answers larger than this are refused (default 1 MiB). */
  readonly maxAnswerBytes?: number
}

/** The default cap on `count`: each suggestion may cost a catalogue search. */
export const defaultMaxCount = 500

/** A library track a plugin suggested, with the similarity it gave. */
export interface SimilarTrack {
  readonly track: CatalogTrack
  readonly similarity: number
}

/** The tracks found and the plugin that suggested them. */
export interface Answer {
  readonly provider: string
  readonly tracks: ReadonlyArray<SimilarTrack>
}

/** Which library tracks a request may start from and resolve to (default: every library). */
export interface RequestOptions {
  readonly libraries?: LibraryScope
}

/** A request that could not be answered; `message` says what to do. */
export class SonicSimilarityError extends Schema.TaggedError<SonicSimilarityError>()("SonicSimilarityError", {
  reason: Schema.Literal("NoProvider", "TrackNotFound", "ProviderFailed"),
  message: Schema.String,
  pluginId: Schema.optional(Schema.String),
  /** The tag of the plugin's failure (e.g. `PluginOutputError`) when `ProviderFailed`. */
  failure: Schema.optional(Schema.String)
}) {}

export class SonicSimilarity extends Context.Tag("ndp-engine/SonicSimilarity")<
  SonicSimilarity,
  {
    /** The plugin that would answer now, if any loaded plugin provides sonic similarity. */
    readonly provider: Effect.Effect<Option.Option<string>>
    /** Up to `count` library tracks that sound like track `trackId`, as the provider ranked them. */
    readonly similarTracks: (
      trackId: string,
      count: number,
      options?: RequestOptions
    ) => Effect.Effect<Answer, SonicSimilarityError>
    /** Up to `count` library tracks leading from `startId` to `endId`, in the provider's order. */
    readonly sonicPath: (
      startId: string,
      endId: string,
      count: number,
      options?: RequestOptions
    ) => Effect.Effect<Answer, SonicSimilarityError>
  }
>() {}

/** How a library track is described to a provider. */
export const songRefOf = (track: CatalogTrack): SongRef => ({
  id: track.id,
  name: track.title,
  artist: track.artist,
  album: track.album,
  // Both, as Navidrome sends them: older plugins read seconds.
  duration: track.durationMs / 1000,
  durationMs: track.durationMs,
  artists: track.artist === "" ? [] : [{ name: track.artist, role: "artist" }],
  ...(track.mbid ? { mbid: track.mbid } : {}),
  ...(track.isrc ? { isrc: track.isrc } : {})
})

const make = (options: SonicSimilarityOptions) =>
  Effect.gen(function* () {
    const manager = yield* PluginManager
    const catalog = yield* TrackCatalog
    const preferred = options.providers ?? []
    const maxCount = Math.max(1, options.maxCount ?? defaultMaxCount)
    const clients = new WeakMap<LoadedPlugin, SonicSimilarityProvider.SonicSimilarityProvider>()

    const clientOf = (plugin: LoadedPlugin) => {
      let client = clients.get(plugin)
      if (client === undefined) {
        client = SonicSimilarityProvider.fromPlugin(
          plugin,
          options.maxAnswerBytes === undefined ? {} : { maxAnswerBytes: options.maxAnswerBytes }
        )
        clients.set(plugin, client)
      }
      return client
    }

    const candidates = Effect.map(manager.loadedIds, (loaded) => [
      ...preferred.filter((id) => loaded.includes(id)),
      ...loaded.filter((id) => !preferred.includes(id)).sort()
    ])

    /** Runs `ask` on the first candidate providing the capability, inside `manager.use`. */
    const withProvider = <A>(
      ask: (client: SonicSimilarityProvider.SonicSimilarityProvider) => Effect.Effect<A, SonicSimilarityError>
    ) =>
      Effect.gen(function* () {
        for (const id of yield* candidates) {
          const answered = yield* manager
            .use(id, (plugin) =>
              plugin.capabilities.includes("SonicSimilarity")
                ? Effect.map(ask(clientOf(plugin)), (a) => Option.some({ provider: id, answer: a }))
                : Effect.succeed(Option.none())
            )
            .pipe(
              // Unloaded since the list was read: the next candidate may answer.
              Effect.catchTag("ManagerError", () => Effect.succeed(Option.none()))
            )
          if (Option.isSome(answered)) return answered.value
        }
        return yield* new SonicSimilarityError({
          reason: "NoProvider",
          message: "no loaded plugin provides sonic similarity: install and enable one"
        })
      })

    const trackOf = (id: string, libraries: LibraryScope) =>
      Effect.flatMap(catalog.find("id", [id], libraries), (found) => {
        const track = found.find((candidate) => candidate.id === id)
        return track === undefined
          ? Effect.fail(
              new SonicSimilarityError({
                reason: "TrackNotFound",
                message: `track ${JSON.stringify(id)} is not in the libraries this request may see`
              })
            )
          : Effect.succeed(track)
      })

    const failed =
      (pluginId: string) =>
      (error: SonicSimilarityProvider.SonicSimilarityProviderError): SonicSimilarityError =>
        new SonicSimilarityError({
          reason: "ProviderFailed",
          pluginId,
          failure: error._tag,
          message: `sonic-similarity provider ${pluginId} failed: ${error.message}`
        })

    const resolve = (matches: ReadonlyArray<SonicSimilarityProvider.SonicMatch>, libraries: LibraryScope) =>
      Effect.map(
        matchSongs(
          catalog,
          matches.map((match) => match.song),
          libraries
        ),
        (found) =>
          found.flatMap((match, i) =>
            match === undefined ? [] : [{ track: match.track, similarity: matches[i]!.similarity }]
          )
      )

    const run = (
      count: number,
      libraries: LibraryScope,
      ask: (
        client: SonicSimilarityProvider.SonicSimilarityProvider,
        count: number
      ) => Effect.Effect<ReadonlyArray<SonicSimilarityProvider.SonicMatch>, SonicSimilarityError>
    ) =>
      Effect.gen(function* () {
        const wanted = Math.min(Math.max(Math.floor(count), 0), maxCount)
        const { answer, provider } = yield* withProvider((client) =>
          wanted === 0 ? Effect.succeed([]) : ask(client, wanted)
        )
        return { provider, tracks: yield* resolve(answer, libraries) } satisfies Answer
      })

    const similarTracks = Effect.fn("SonicSimilarity.similarTracks")(function* (
      trackId: string,
      count: number,
      requestOptions: RequestOptions = {}
    ) {
      const libraries = requestOptions.libraries ?? "all"
      const song = songRefOf(yield* trackOf(trackId, libraries))
      return yield* run(count, libraries, (client, n) =>
        client.similarTracks(song, n).pipe(Effect.mapError(failed(client.pluginId)))
      )
    })

    const sonicPath = Effect.fn("SonicSimilarity.sonicPath")(function* (
      startId: string,
      endId: string,
      count: number,
      requestOptions: RequestOptions = {}
    ) {
      const libraries = requestOptions.libraries ?? "all"
      const start = songRefOf(yield* trackOf(startId, libraries))
      const end = songRefOf(yield* trackOf(endId, libraries))
      return yield* run(count, libraries, (client, n) =>
        client.sonicPath(start, end, n).pipe(Effect.mapError(failed(client.pluginId)))
      )
    })

    const provider = Effect.flatMap(candidates, (ids) =>
      Effect.findFirst(ids, (id) =>
        manager
          .use(id, (plugin) => Effect.succeed(plugin.capabilities.includes("SonicSimilarity")))
          .pipe(Effect.orElseSucceed(() => false))
      )
    )

    return SonicSimilarity.of({ provider, similarTracks, sonicPath })
  })

/** Sonic similarity over the manager's plugins and the server's catalogue. */
export const layer = (
  options: SonicSimilarityOptions = {}
): Layer.Layer<SonicSimilarity, never, PluginManager | TrackCatalog> =>
  Layer.effect(SonicSimilarity, make(options))

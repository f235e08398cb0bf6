/**
 * The Matcher host service (`matcher`, which requires `library`): `matcher_matchsongs {songs, opts}`
 * answers one result per input song, in order, `null` when unmatched. Each song is matched by ID,
 * then MusicBrainz recording ID, then ISRC, then a fuzzy title/artist/album match against the
 * server's `TrackCatalog`, only within the libraries the administrator allowed for the plugin.
 * `opts.username` adds that user's stars, ratings and play counts; an unknown user and a user not
 * allowed get the same error, so a plugin cannot probe which accounts exist. `path` is sent only
 * with `library.filesystem`. At most `maxSongsPerCall` songs per call.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { normalizeSongRef, type NormalizedSongRef, SongRef } from "../../capabilities/MetadataAgent.js"
import {
  type CatalogTrack,
  type LibraryScope,
  TrackCatalog,
  type UserTrackData
} from "../../server/TrackCatalog.js"
import { type HostFunctionHandler, hostFunction } from "../HostCodec.js"
import { define, type HostServiceProvider, isAllowed, type PluginContext } from "../HostProvider.js"
import { hasFilesystem } from "../library/LibraryService.js"
import { MatcherError } from "./MatcherError.js"

/** The functions of the Matcher service and the permission they need. */
export const definition = define({ grant: "matcher", functions: ["matcher_matchsongs"] })

/** The most songs one call may ask about (each may cost a catalogue search). */
export const maxSongsPerCall = 200

/** The most candidates one fuzzy search scores. */
export const candidatesPerSearch = 50

/** How a song was matched. */
export type MatchedBy = "id" | "mbid" | "isrc" | "fuzzy"

const MatchRequest = Schema.Struct({
  songs: Schema.Array(SongRef),
  opts: Schema.optionalWith(
    Schema.Struct({ username: Schema.optionalWith(Schema.String, { nullable: true }) }),
    { nullable: true, default: () => ({}) }
  )
})

/** Lower case, accents and punctuation dropped, bracketed "feat."/"remaster"/"live" notes removed. */
export const normalize = (text: string): string =>
  text
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .toLowerCase()
    .replace(/[([][^)\]]*\b(feat|ft|featuring|remaster(ed)?|live|version|edit|mix)\b[^)\]]*[)\]]/g, " ")
    .replace(/[^\p{L}\p{N}]+/gu, " ")
    .trim()

/**
 * The best fuzzy candidate for `song`: the title must match and, when the song names artists, one
 * of them must match the track's artist; a matching album and a duration within 3 s break ties,
 * then the lowest ID, so the answer does not depend on the order the server returned.
 */
export const bestFuzzy = (
  song: NormalizedSongRef,
  candidates: ReadonlyArray<CatalogTrack>
): CatalogTrack | undefined => {
  const title = normalize(song.name)
  const artists = song.artists.map((artist) => normalize(artist.name)).filter((name) => name !== "")
  const album = normalize(song.album ?? "")
  const score = (track: CatalogTrack): number => {
    if (normalize(track.title) !== title) return -1
    const artist = normalize(track.artist)
    // Word-bounded containment: "queen david bowie" credits "david bowie", "bowiefan" does not.
    if (artists.length > 0 && !artists.some((name) => ` ${artist} `.includes(` ${name} `))) {
      return -1
    }
    return (
      (album !== "" && normalize(track.album) === album ? 2 : 0) +
      (song.durationMs > 0 && Math.abs(track.durationMs - song.durationMs) <= 3000 ? 1 : 0)
    )
  }
  let best: { track: CatalogTrack; score: number } | undefined
  for (const track of candidates) {
    const s = score(track)
    if (s < 0) continue
    if (best === undefined || s > best.score || (s === best.score && track.id < best.track.id)) {
      best = { track, score: s }
    }
  }
  return best?.track
}

/** The word of `title` most likely to narrow a catalogue search: its longest. */
const searchTerm = (title: string): string =>
  normalize(title)
    .split(" ")
    .reduce((longest, word) => (word.length > longest.length ? word : longest), "")

/** The tracks matched to `songs`, in order, `undefined` when unmatched. */
export const matchSongs = Effect.fn("Matcher.matchSongs")(function* (
  catalog: TrackCatalog["Type"],
  songs: ReadonlyArray<NormalizedSongRef>,
  libraries: LibraryScope
) {
  const results: Array<{ track: CatalogTrack; matchedBy: MatchedBy } | undefined> = songs.map(() => undefined)
  const byKey = (
    key: "id" | "mbid" | "isrc",
    value: (song: NormalizedSongRef) => string | null | undefined
  ) =>
    Effect.gen(function* () {
      const wanted = songs.flatMap((song, i) => {
        const v = value(song)
        return results[i] === undefined && v !== undefined && v !== null && v !== "" ? [[i, v] as const] : []
      })
      if (wanted.length === 0) return
      const found = yield* catalog.find(key, [...new Set(wanted.map(([, v]) => v))], libraries)
      for (const [i, v] of wanted) {
        const track = found
          .filter((candidate) => (key === "id" ? candidate.id : candidate[key]) === v)
          .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))[0]
        if (track !== undefined) results[i] = { track, matchedBy: key }
      }
    })
  yield* byKey("id", (song) => song.id)
  yield* byKey("mbid", (song) => song.mbid)
  yield* byKey("isrc", (song) => song.isrc)
  yield* Effect.forEach(
    songs.flatMap((song, i) => (results[i] === undefined ? [[i, song] as const] : [])),
    ([i, song]) => {
      const term = searchTerm(song.name)
      return term === ""
        ? Effect.void
        : Effect.map(catalog.search(term, libraries, candidatesPerSearch), (candidates) => {
            const track = bestFuzzy(song, candidates)
            if (track !== undefined) results[i] = { track, matchedBy: "fuzzy" }
          })
    },
    { concurrency: 4, discard: true }
  )
  return results
})

const toWire = (
  match: { track: CatalogTrack; matchedBy: MatchedBy },
  filesystem: boolean,
  data: Option.Option<ReadonlyMap<string, UserTrackData>>
) => {
  const { track } = match
  const user = Option.map(data, (map) => map.get(track.id) ?? { starred: false, rating: 0, playCount: 0 })
  return {
    id: track.id,
    libraryId: track.libraryId,
    title: track.title,
    artist: track.artist,
    album: track.album,
    durationMs: track.durationMs,
    ...(track.mbid ? { mbid: track.mbid } : {}),
    ...(track.isrc ? { isrc: track.isrc } : {}),
    ...(filesystem ? { path: track.path } : {}),
    matchedBy: match.matchedBy,
    ...Option.getOrElse(
      Option.map(user, (u) => ({ starred: u.starred, rating: u.rating, playCount: u.playCount })),
      () => ({})
    )
  }
}

/** The Matcher functions for one plugin over the server's catalogue. */
export const functions = (
  catalog: TrackCatalog["Type"],
  context: PluginContext
): Record<(typeof definition.functions)[number], HostFunctionHandler> => {
  const filesystem = hasFilesystem(context)
  const userData = (username: string, ids: ReadonlyArray<string>) =>
    Effect.flatMap(
      isAllowed(context.users, username)
        ? catalog.userData(username, ids)
        : Effect.succeed(Option.none<ReadonlyMap<string, UserTrackData>>()),
      (found) =>
        Option.isSome(found)
          ? Effect.succeed(found)
          : Effect.fail(
              new MatcherError({
                reason: "UserNotAvailable",
                message: `user ${JSON.stringify(username)} is not available to this plugin: the administrator must allow them`
              })
            )
    )
  return {
    matcher_matchsongs: hostFunction("matcher_matchsongs", MatchRequest, (request) =>
      Effect.gen(function* () {
        if (request.songs.length > maxSongsPerCall) {
          return yield* new MatcherError({
            reason: "TooManySongs",
            message: `${request.songs.length} songs in one call; at most ${maxSongsPerCall}: split the list`
          })
        }
        const username = request.opts.username
        // The user is checked before any matching, so an unavailable user costs no search.
        if (username !== undefined && username !== "") yield* userData(username, [])
        const matches = yield* matchSongs(catalog, request.songs.map(normalizeSongRef), context.libraries)
        const ids = matches.flatMap((match) => (match === undefined ? [] : [match.track.id]))
        const data =
          username !== undefined && username !== "" ? yield* userData(username, ids) : Option.none()
        return {
          result: matches.map((match) => (match === undefined ? null : toWire(match, filesystem, data)))
        }
      })
    )
  }
}

/** The service over the server's catalogue. */
export const provider = (catalog: TrackCatalog["Type"]): HostServiceProvider => ({
  ...definition,
  make: (context) => Effect.succeed(functions(catalog, context))
})

/** The Matcher host service; it searches the embedding server's `TrackCatalog`. */
export class MatcherService extends Context.Tag("ndp-engine/host/MatcherService")<
  MatcherService,
  HostServiceProvider
>() {}

/** The Matcher service over the server's `TrackCatalog`, taken once. */
export const make: Effect.Effect<HostServiceProvider, never, TrackCatalog> = Effect.map(
  TrackCatalog,
  provider
).pipe(Effect.withSpan("MatcherService.make"))

/** The Matcher service as a layer. */
export const layer: Layer.Layer<MatcherService, never, TrackCatalog> = Layer.effect(MatcherService, make)

/**
 * The service when the context holds a `TrackCatalog`, else nothing: servers written before it keep
 * compiling, and without it plugins importing `matcher_matchsongs` fail to load naming the service.
 */
export const layerIfCatalog: Layer.Layer<never> = Layer.unwrapEffect(
  Effect.map(Effect.serviceOption(TrackCatalog), (catalog) =>
    Option.match(catalog, {
      onNone: () => Layer.empty,
      onSome: (found) => layer.pipe(Layer.provide(Layer.succeed(TrackCatalog, found)))
    })
  )
)

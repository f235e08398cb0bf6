/**
 * The embedded Subsonic router: answers from the embedded catalogue in Subsonic's JSON form
 * (OpenSubsonic flavour, 1.16.1), whatever `f` asks for: there is no XML. Binary endpoints
 * (`stream`, `download`, `getCoverArt`) return the files' bytes. Users are not consulted beyond
 * the one the host vouches for: every user sees every library.
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { extname, resolve, sep } from "node:path"
import {
  paramOf,
  SUBSONIC_API_VERSION,
  SubsonicErrorCode,
  type SubsonicRequest,
  type SubsonicResponse,
  type SubsonicRouter
} from "../SubsonicRouter.js"
import { COVER_FILE } from "./DemoLibrary.js"
import type { AlbumOrder, AlbumRow, ArtistRow, Catalogue, SongRow } from "./CatalogQueries.js"

/** The `type` the embedded router reports in every response. */
export const SERVER_TYPE = "ndp-engine"
/** The `serverVersion` the embedded router reports. */
export const SERVER_VERSION = "0.1.0"

/** Articles ignored when artists are indexed and sorted, as Navidrome's default. */
export const IGNORED_ARTICLES = "The El La Los Las Le Les"

/** A Subsonic-level failure, answered in Subsonic's error format. */
class SubsonicFailure extends Data.TaggedError("SubsonicFailure")<{
  readonly code: number
  readonly message: string
}> {}

type Payload = Readonly<Record<string, unknown>>
type Reply = { readonly json: Payload } | { readonly raw: SubsonicResponse }
type Handler = (request: SubsonicRequest) => Effect.Effect<Reply, SubsonicFailure>

const encoder = new TextEncoder()

const envelope = (status: "ok" | "failed", body: Payload): SubsonicResponse => ({
  contentType: "application/json",
  body: encoder.encode(
    JSON.stringify({
      "subsonic-response": {
        status,
        version: SUBSONIC_API_VERSION,
        type: SERVER_TYPE,
        serverVersion: SERVER_VERSION,
        openSubsonic: true,
        ...body
      }
    })
  )
})

/** A Subsonic error response. */
export const errorResponse = (code: number, message: string): SubsonicResponse =>
  envelope("failed", { error: { code, message } })

// ---- parameters ----

const missing = (name: string) =>
  new SubsonicFailure({
    code: SubsonicErrorCode.MissingParameter,
    message: `required '${name}' parameter is missing`
  })

const notFound = (what: string) =>
  new SubsonicFailure({ code: SubsonicErrorCode.NotFound, message: `${what} not found` })

const required = (request: SubsonicRequest, name: string): Effect.Effect<string, SubsonicFailure> => {
  const value = paramOf(request, name)
  return value === undefined || value === "" ? Effect.fail(missing(name)) : Effect.succeed(value)
}

const optionalInt = (request: SubsonicRequest, name: string): number | undefined => {
  const value = paramOf(request, name)
  if (value === undefined || !/^-?\d+$/.test(value.trim())) return undefined
  return Number.parseInt(value, 10)
}

/** An integer parameter clamped to `[min, max]`; absent or malformed = `fallback`, as Navidrome does. */
const intParam = (request: SubsonicRequest, name: string, fallback: number, min: number, max: number) =>
  Math.min(max, Math.max(min, optionalInt(request, name) ?? fallback))

const textParam = (request: SubsonicRequest, name: string): string | undefined => {
  const value = paramOf(request, name)
  return value === undefined || value === "" ? undefined : value
}

// ---- JSON shapes ----

const iso = (seconds: number) => new Date(seconds * 1000).toISOString()

const sortName = (name: string): string => {
  for (const article of IGNORED_ARTICLES.split(" ")) {
    if (name.toLowerCase().startsWith(`${article.toLowerCase()} `)) return name.slice(article.length + 1)
  }
  return name
}

const indexLetter = (name: string): string => {
  const first = sortName(name)
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .charAt(0)
    .toUpperCase()
  return /[A-Z]/.test(first) ? first : "#"
}

const artistJson = (artist: ArtistRow) => ({
  id: artist.id,
  name: artist.name,
  coverArt: artist.id,
  albumCount: artist.album_count,
  sortName: sortName(artist.name).toLowerCase()
})

const albumJson = (album: AlbumRow) => ({
  id: album.id,
  name: album.name,
  artist: album.artist_name,
  artistId: album.artist_id,
  coverArt: album.id,
  songCount: album.song_count,
  duration: album.duration,
  created: iso(album.created_at),
  year: album.year,
  genre: album.genre,
  genres: [{ name: album.genre }],
  artists: [{ id: album.artist_id, name: album.artist_name }],
  displayArtist: album.artist_name,
  sortName: album.name.toLowerCase(),
  isCompilation: false
})

const songJson = (song: SongRow) => ({
  id: song.id,
  parent: song.album_id,
  isDir: false,
  title: song.title,
  album: song.album_name,
  artist: song.artist_name,
  track: song.track,
  year: song.year,
  genre: song.genre,
  coverArt: song.album_id,
  size: song.size,
  contentType: song.content_type,
  suffix: song.suffix,
  duration: song.duration,
  bitRate: song.bit_rate,
  bitDepth: song.bit_depth,
  samplingRate: song.sample_rate,
  channelCount: song.channels,
  path: song.path,
  discNumber: song.disc,
  created: iso(song.created_at),
  albumId: song.album_id,
  artistId: song.artist_id,
  type: "music",
  mediaType: "song",
  isVideo: false,
  genres: [{ name: song.genre }],
  artists: [{ id: song.artist_id, name: song.artist_name }],
  displayArtist: song.artist_name,
  albumArtists: [{ id: song.artist_id, name: song.artist_name }],
  displayAlbumArtist: song.artist_name
})

/** A list member, omitted when empty (as Navidrome's `omitempty` does). */
const list = <A>(name: string, items: ReadonlyArray<A>): Payload =>
  items.length > 0 ? { [name]: items } : {}

const ok = (payload: Payload = {}): Reply => ({ json: payload })

/** A record's own member: endpoint and list-type names come from plugins (`constructor`, …). */
const own = <A>(record: Readonly<Record<string, A>>, key: string): A | undefined =>
  Object.hasOwn(record, key) ? record[key] : undefined

// ---- the router ----

const albumListOrders: Readonly<Record<string, AlbumOrder | "none">> = {
  random: "random",
  newest: "newest",
  alphabeticalByName: "name",
  alphabeticalByArtist: "artist",
  byYear: "year",
  byGenre: "name",
  // No play counts, ratings or stars in the embedded catalogue: these lists are empty.
  highest: "none",
  frequent: "none",
  recent: "none",
  starred: "none"
}

const contentTypeOf = (file: string): string =>
  ({ ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp" })[
    extname(file).toLowerCase()
  ] ?? "application/octet-stream"

/** `byYear`'s range: both ends required; `fromYear > toYear` lists newest first. */
const yearRange = (request: SubsonicRequest) =>
  Effect.gen(function* () {
    const fromYear = optionalInt(request, "fromYear")
    const toYear = optionalInt(request, "toYear")
    if (fromYear === undefined) return yield* Effect.fail(missing("fromYear"))
    if (toYear === undefined) return yield* Effect.fail(missing("toYear"))
    return {
      from: Math.min(fromYear, toYear),
      to: Math.max(fromYear, toYear),
      descending: fromYear > toYear
    }
  })

/** The router over the catalogue. */
export const makeRouter = (catalogue: Catalogue, fs: FileSystem.FileSystem): SubsonicRouter["Type"] => {
  const one = <A>(effect: Effect.Effect<ReadonlyArray<A>>, what: string) =>
    Effect.flatMap(effect, (rows) =>
      rows[0] === undefined ? Effect.fail(notFound(what)) : Effect.succeed(rows[0])
    )

  /** Reads a file of a library, refusing paths that would leave the library's folder. */
  const readLibraryFile = (libraryId: number, relative: string, what: string) =>
    Effect.gen(function* () {
      const library = (yield* catalogue.libraries).find((l) => l.id === libraryId)
      if (library === undefined) return yield* Effect.fail(notFound(what))
      const root = resolve(library.path)
      const file = resolve(root, relative)
      if (!file.startsWith(root + sep)) return yield* Effect.fail(notFound(what))
      const bytes = yield* fs.readFile(file).pipe(Effect.mapError(() => notFound(what)))
      return { file, bytes }
    })

  const libraryFilter = (request: SubsonicRequest) => optionalInt(request, "musicFolderId")

  const stream: Handler = (request) =>
    Effect.gen(function* () {
      const song = yield* one(catalogue.songs({ id: yield* required(request, "id") }), "Song")
      const { bytes } = yield* readLibraryFile(song.library_id, song.path, "Song file")
      return { raw: { contentType: song.content_type, body: bytes } }
    })

  const handlers: Readonly<Record<string, Handler>> = {
    ping: () => Effect.succeed(ok()),
    getLicense: () => Effect.succeed(ok({ license: { valid: true } })),
    getOpenSubsonicExtensions: () => Effect.succeed(ok({ openSubsonicExtensions: [] })),
    getMusicFolders: () =>
      Effect.map(catalogue.libraries, (libraries) =>
        ok({
          musicFolders: list(
            "musicFolder",
            libraries.map((l) => ({ id: l.id, name: l.name }))
          )
        })
      ),
    getArtists: (request) =>
      Effect.map(catalogue.artists({ libraryId: libraryFilter(request) }), (artists) => {
        const groups = new Map<string, Array<ArtistRow>>()
        const sorted = [...artists].sort((a, b) =>
          sortName(a.name).localeCompare(sortName(b.name), "en", { sensitivity: "base" })
        )
        for (const artist of sorted) {
          const letter = indexLetter(artist.name)
          groups.set(letter, [...(groups.get(letter) ?? []), artist])
        }
        const index = [...groups.entries()]
          .sort(([a], [b]) => (a === "#" ? 1 : b === "#" ? -1 : a.localeCompare(b)))
          .map(([name, members]) => ({ name, artist: members.map(artistJson) }))
        return ok({ artists: { ignoredArticles: IGNORED_ARTICLES, ...list("index", index) } })
      }),
    getArtist: (request) =>
      Effect.gen(function* () {
        const artist = yield* one(catalogue.artists({ id: yield* required(request, "id") }), "Artist")
        const albums = yield* catalogue.albums({ artistId: artist.id, order: "year" })
        return ok({ artist: { ...artistJson(artist), ...list("album", albums.map(albumJson)) } })
      }),
    getAlbum: (request) =>
      Effect.gen(function* () {
        const album = yield* one(catalogue.albums({ id: yield* required(request, "id") }), "Album")
        const songs = yield* catalogue.songs({ albumId: album.id })
        return ok({ album: { ...albumJson(album), ...list("song", songs.map(songJson)) } })
      }),
    getSong: (request) =>
      Effect.gen(function* () {
        const song = yield* one(catalogue.songs({ id: yield* required(request, "id") }), "Song")
        return ok({ song: songJson(song) })
      }),
    getAlbumList2: (request) =>
      Effect.gen(function* () {
        const type = yield* required(request, "type")
        const order = own(albumListOrders, type)
        if (order === undefined) {
          return yield* new SubsonicFailure({
            code: SubsonicErrorCode.Generic,
            message: `type '${type}' not implemented`
          })
        }
        const years = type === "byYear" ? yield* yearRange(request) : undefined
        const genre = type === "byGenre" ? yield* required(request, "genre") : undefined
        if (order === "none") return ok({ albumList2: {} })
        const albums = yield* catalogue.albums({
          libraryId: libraryFilter(request),
          limit: intParam(request, "size", 10, 0, 500),
          offset: intParam(request, "offset", 0, 0, Number.MAX_SAFE_INTEGER),
          genre,
          fromYear: years?.from,
          toYear: years?.to,
          order: years?.descending === true ? "yearDesc" : years !== undefined ? "year" : order
        })
        return ok({ albumList2: list("album", albums.map(albumJson)) })
      }),
    search3: (request) =>
      Effect.gen(function* () {
        const raw = paramOf(request, "query")
        if (raw === undefined) return yield* Effect.fail(missing("query"))
        // Clients send `""` or `*` to mean everything.
        const cleaned = raw
          .trim()
          .replace(/^"(.*)"$/, "$1")
          .replace(/\*/g, "")
          .trim()
        const text = cleaned === "" ? undefined : cleaned
        const libraryId = libraryFilter(request)
        const page = (kind: string) => ({
          limit: intParam(request, `${kind}Count`, 20, 0, 500),
          offset: intParam(request, `${kind}Offset`, 0, 0, Number.MAX_SAFE_INTEGER)
        })
        const artists = yield* catalogue.artists({ text, libraryId, ...page("artist") })
        const albums = yield* catalogue.albums({ text, libraryId, order: "name", ...page("album") })
        const songs = yield* catalogue.songs({ text, libraryId, order: "title", ...page("song") })
        return ok({
          searchResult3: {
            ...list("artist", artists.map(artistJson)),
            ...list("album", albums.map(albumJson)),
            ...list("song", songs.map(songJson))
          }
        })
      }),
    getRandomSongs: (request) =>
      Effect.map(
        catalogue.songs({
          order: "random",
          limit: intParam(request, "size", 10, 0, 500),
          libraryId: libraryFilter(request),
          genre: textParam(request, "genre"),
          fromYear: optionalInt(request, "fromYear"),
          toYear: optionalInt(request, "toYear")
        }),
        (songs) => ok({ randomSongs: list("song", songs.map(songJson)) })
      ),
    getGenres: () =>
      Effect.map(catalogue.genres, (genres) =>
        ok({
          genres: list(
            "genre",
            genres.map((g) => ({ value: g.genre, songCount: g.song_count, albumCount: g.album_count }))
          )
        })
      ),
    // Nothing plays in the embedded server.
    getNowPlaying: () => Effect.succeed(ok({ nowPlaying: {} })),
    stream,
    download: stream,
    getCoverArt: (request) =>
      Effect.gen(function* () {
        const id = yield* required(request, "id")
        const album = id.startsWith("mf-")
          ? yield* Effect.flatMap(one(catalogue.songs({ id }), "Cover art"), (song) =>
              one(catalogue.albums({ id: song.album_id }), "Cover art")
            )
          : id.startsWith("ar-")
            ? yield* one(catalogue.albums({ artistId: id, order: "year", limit: 1 }), "Cover art")
            : yield* one(catalogue.albums({ id }), "Cover art")
        const { bytes, file } = yield* readLibraryFile(
          album.library_id,
          `${album.folder}/${COVER_FILE}`,
          "Cover art"
        )
        return { raw: { contentType: contentTypeOf(file), body: bytes } }
      })
  }

  return {
    handle: (request) => {
      const handler = own(handlers, request.endpoint)
      if (handler === undefined) {
        return Effect.succeed(
          errorResponse(SubsonicErrorCode.NotFound, `endpoint '${request.endpoint}' not found`)
        )
      }
      return handler(request).pipe(
        Effect.map((reply) => ("raw" in reply ? reply.raw : envelope("ok", reply.json))),
        Effect.catchTag("SubsonicFailure", (failure) =>
          Effect.succeed(errorResponse(failure.code, failure.message))
        ),
        Effect.withSpan("EmbeddedSubsonic.handle", { attributes: { endpoint: request.endpoint } })
      )
    }
  }
}

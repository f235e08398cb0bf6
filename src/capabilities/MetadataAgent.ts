/**
 * The MetadataAgent capability as a typed client. Every method answers `Option`: empty output,
 * empty strings or lists, a missing export and "not implemented" are all `None` (a miss); real
 * failures (plugin errors, traps, timeouts, bad output) are errors.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { PluginCallError, PluginNotImplementedError } from "../runtime/PluginError.js"
import type { CapabilityTarget } from "./Capabilities.js"
import { decodeOutput, nullable } from "./CapabilityCodec.js"

/** Failures of a metadata call; "not implemented" is a miss, not an error. */
export type MetadataAgentError = Exclude<PluginCallError, PluginNotImplementedError>

export interface ArtistRequest {
  readonly id: string
  readonly name: string
  readonly mbid?: string
}
export interface SimilarArtistsRequest extends ArtistRequest {
  readonly limit: number
}
export interface TopSongsRequest extends ArtistRequest {
  readonly count: number
}
export interface AlbumRequest {
  readonly name: string
  readonly artist: string
  readonly mbid?: string
}
export interface SongsByTrackRequest {
  readonly id: string
  readonly name: string
  readonly artist: string
  readonly mbid?: string
  readonly count: number
}
export type SongsByAlbumRequest = SongsByTrackRequest
export interface SongsByArtistRequest extends ArtistRequest {
  readonly count: number
}

export const ArtistRef = Schema.Struct({
  id: nullable(Schema.String),
  name: Schema.String,
  mbid: nullable(Schema.String),
  sortName: nullable(Schema.String),
  /** The participation category (`artist`, `composer`, `performer`…). */
  role: nullable(Schema.String),
  /** A specialization within the role (the instrument of a performer…). */
  subRole: nullable(Schema.String)
})
export type ArtistRef = typeof ArtistRef.Type

export const Image = Schema.Struct({ url: Schema.String, size: nullable(Schema.Number) })
export type Image = typeof Image.Type

export const SongRef = Schema.Struct({
  id: nullable(Schema.String),
  name: Schema.String,
  mbid: nullable(Schema.String),
  isrc: nullable(Schema.String),
  artist: nullable(Schema.String),
  artistMbid: nullable(Schema.String),
  album: nullable(Schema.String),
  albumMbid: nullable(Schema.String),
  duration: nullable(Schema.Number),
  durationMs: nullable(Schema.Number),
  artists: nullable(Schema.Array(ArtistRef))
})
export type SongRef = typeof SongRef.Type

/**
 * A song as the engine hands it on: `durationMs` always set (it wins over the legacy `duration` in
 * seconds when non-zero; negative values become 0) and `artists` always a list (a lone legacy
 * `artist`/`artistMbid` is folded into it).
 */
export type NormalizedSongRef = SongRef & {
  readonly durationMs: number
  readonly artists: ReadonlyArray<ArtistRef>
}

/** Normalizes a song from a plugin: see {@link NormalizedSongRef}. */
export const normalizeSongRef = (song: SongRef): NormalizedSongRef => {
  const ms = song.durationMs ?? 0
  const seconds = song.duration ?? 0
  const durationMs = ms > 0 ? Math.round(ms) : Math.max(0, Math.round(seconds * 1000))
  const legacy =
    song.artist !== undefined && song.artist !== null && song.artist !== ""
      ? [{ name: song.artist, ...(song.artistMbid ? { mbid: song.artistMbid } : {}) }]
      : []
  return {
    ...song,
    ...(seconds < 0 ? { duration: 0 } : {}),
    durationMs,
    artists:
      song.artists !== undefined && song.artists !== null && song.artists.length > 0 ? song.artists : legacy
  }
}

export const AlbumInfo = Schema.Struct({
  name: nullable(Schema.String),
  mbid: nullable(Schema.String),
  description: nullable(Schema.String),
  url: nullable(Schema.String)
})
export type AlbumInfo = typeof AlbumInfo.Type

const text = (field: string) => Schema.Struct({ [field]: nullable(Schema.String) })
const list = <S extends Schema.Schema.Any>(field: string, item: S) =>
  Schema.Struct({ [field]: nullable(Schema.Array(item)) })

/** The typed client of one plugin's metadata exports. */
export interface MetadataAgent {
  readonly pluginId: string
  readonly getArtistMBID: (request: ArtistRequest) => Effect.Effect<Option.Option<string>, MetadataAgentError>
  readonly getArtistURL: (request: ArtistRequest) => Effect.Effect<Option.Option<string>, MetadataAgentError>
  readonly getArtistBiography: (
    request: ArtistRequest
  ) => Effect.Effect<Option.Option<string>, MetadataAgentError>
  readonly getSimilarArtists: (
    request: SimilarArtistsRequest
  ) => Effect.Effect<Option.Option<ReadonlyArray<ArtistRef>>, MetadataAgentError>
  readonly getArtistImages: (
    request: ArtistRequest
  ) => Effect.Effect<Option.Option<ReadonlyArray<Image>>, MetadataAgentError>
  readonly getArtistTopSongs: (
    request: TopSongsRequest
  ) => Effect.Effect<Option.Option<ReadonlyArray<NormalizedSongRef>>, MetadataAgentError>
  readonly getAlbumInfo: (
    request: AlbumRequest
  ) => Effect.Effect<Option.Option<AlbumInfo>, MetadataAgentError>
  readonly getAlbumImages: (
    request: AlbumRequest
  ) => Effect.Effect<Option.Option<ReadonlyArray<Image>>, MetadataAgentError>
  readonly getSimilarSongsByTrack: (
    request: SongsByTrackRequest
  ) => Effect.Effect<Option.Option<ReadonlyArray<NormalizedSongRef>>, MetadataAgentError>
  readonly getSimilarSongsByAlbum: (
    request: SongsByAlbumRequest
  ) => Effect.Effect<Option.Option<ReadonlyArray<NormalizedSongRef>>, MetadataAgentError>
  readonly getSimilarSongsByArtist: (
    request: SongsByArtistRequest
  ) => Effect.Effect<Option.Option<ReadonlyArray<NormalizedSongRef>>, MetadataAgentError>
}

const nonEmptyText = (value: string | null | undefined): Option.Option<string> =>
  value === null || value === undefined || value === "" ? Option.none() : Option.some(value)

const nonEmptyList = <A>(value: ReadonlyArray<A> | null | undefined): Option.Option<ReadonlyArray<A>> =>
  value === null || value === undefined || value.length === 0 ? Option.none() : Option.some(value)

/** The metadata client of a loaded plugin (methods of exports it lacks always miss). */
export const fromPlugin = (plugin: Pick<CapabilityTarget, "id" | "exports" | "call">): MetadataAgent => {
  const method = <O, I, A>(
    name: keyof MetadataAgent,
    exportName: string,
    output: Schema.Schema<O, I>,
    pick: (decoded: O) => Option.Option<A>
  ): ((request: object) => Effect.Effect<Option.Option<A>, MetadataAgentError>) =>
    Effect.fn(`MetadataAgent.${name}`, { attributes: { plugin: plugin.id, export: exportName } })(
      (request: object) =>
        plugin.exports.has(exportName)
          ? plugin.call(exportName, JSON.stringify(request)).pipe(
              Effect.flatMap((bytes) => decodeOutput(output)(plugin.id, exportName, bytes)),
              Effect.map((decoded) => (decoded === undefined ? Option.none() : pick(decoded))),
              Effect.catchTag("PluginNotImplementedError", () => Effect.succeed(Option.none<A>()))
            )
          : Effect.succeed(Option.none())
    )

  const songs = (name: keyof MetadataAgent, exportName: string) =>
    method(name, exportName, list("songs", SongRef), (o) =>
      Option.map(nonEmptyList(o.songs as ReadonlyArray<SongRef> | null | undefined), (songs) =>
        songs.map(normalizeSongRef)
      )
    )

  return {
    pluginId: plugin.id,
    getArtistMBID: method("getArtistMBID", "nd_get_artist_mbid", text("mbid"), (o) =>
      nonEmptyText(o.mbid as string | null | undefined)
    ),
    getArtistURL: method("getArtistURL", "nd_get_artist_url", text("url"), (o) =>
      nonEmptyText(o.url as string | null | undefined)
    ),
    getArtistBiography: method("getArtistBiography", "nd_get_artist_biography", text("biography"), (o) =>
      nonEmptyText(o.biography as string | null | undefined)
    ),
    getSimilarArtists: method(
      "getSimilarArtists",
      "nd_get_similar_artists",
      list("artists", ArtistRef),
      (o) => nonEmptyList(o.artists as ReadonlyArray<ArtistRef> | null | undefined)
    ),
    getArtistImages: method("getArtistImages", "nd_get_artist_images", list("images", Image), (o) =>
      nonEmptyList(o.images as ReadonlyArray<Image> | null | undefined)
    ),
    getArtistTopSongs: songs("getArtistTopSongs", "nd_get_artist_top_songs"),
    getAlbumInfo: method("getAlbumInfo", "nd_get_album_info", AlbumInfo, (o) =>
      [o.name, o.mbid, o.description, o.url].some((v) => v !== null && v !== undefined && v !== "")
        ? Option.some(o)
        : Option.none()
    ),
    getAlbumImages: method("getAlbumImages", "nd_get_album_images", list("images", Image), (o) =>
      nonEmptyList(o.images as ReadonlyArray<Image> | null | undefined)
    ),
    getSimilarSongsByTrack: songs("getSimilarSongsByTrack", "nd_get_similar_songs_by_track"),
    getSimilarSongsByAlbum: songs("getSimilarSongsByAlbum", "nd_get_similar_songs_by_album"),
    getSimilarSongsByArtist: songs("getSimilarSongsByArtist", "nd_get_similar_songs_by_artist")
  }
}

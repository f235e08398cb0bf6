/**
 * Queries over the embedded catalogue (tables in `CatalogSchema`), feeding the embedded
 * `LibraryCatalog` and Subsonic router, and the registration of music folders.
 */
import type { SqlError } from "@effect/sql/SqlError"
import type { Fragment } from "@effect/sql/Statement"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import { basename, join, resolve } from "node:path"
import { Storage } from "../../storage/Storage.js"
import type { Library } from "../LibraryCatalog.js"
import { nowSeconds } from "./CatalogSchema.js"
import { DEMO_FOLDER } from "./DemoLibrary.js"
import { EmbeddedLibraryError } from "./EmbeddedLibraryError.js"
import { scanFolder } from "./FolderScan.js"

interface LibraryRow {
  readonly id: number
  readonly name: string
  readonly path: string
  readonly kind: "demo" | "folder"
  readonly last_scan_at: number
  readonly total_songs: number
  readonly total_albums: number
  readonly total_artists: number
  readonly total_size: number
  readonly total_duration: number
}

/** An artist with its album count. */
export interface ArtistRow {
  readonly id: string
  readonly library_id: number
  readonly name: string
  readonly album_count: number
}

/** An album with its artist's name, song count and total duration. */
export interface AlbumRow {
  readonly id: string
  readonly library_id: number
  readonly artist_id: string
  readonly artist_name: string
  readonly name: string
  readonly year: number
  readonly genre: string
  readonly folder: string
  readonly created_at: number
  readonly song_count: number
  readonly duration: number
}

/** A song with its album's and artist's names. */
export interface SongRow {
  readonly id: string
  readonly library_id: number
  readonly album_id: string
  readonly artist_id: string
  readonly title: string
  readonly track: number
  readonly disc: number
  readonly duration: number
  readonly size: number
  readonly path: string
  readonly suffix: string
  readonly content_type: string
  readonly bit_rate: number
  readonly sample_rate: number
  readonly bit_depth: number
  readonly channels: number
  readonly created_at: number
  readonly album_name: string
  readonly year: number
  readonly genre: string
  readonly artist_name: string
}

/** A genre with its song and album counts. */
export interface GenreRow {
  readonly genre: string
  readonly song_count: number
  readonly album_count: number
}

/** Filters shared by list queries; absent = no filter. */
export interface Filter {
  readonly libraryId?: number | undefined
  /** Case-insensitive substring of the item's name (songs: title, album or artist). */
  readonly text?: string | undefined
  readonly genre?: string | undefined
  readonly fromYear?: number | undefined
  readonly toYear?: number | undefined
  readonly limit?: number | undefined
  readonly offset?: number | undefined
}

/** How album lists are ordered. */
export type AlbumOrder = "random" | "newest" | "name" | "artist" | "year" | "yearDesc"

/** How song lists are ordered. */
export type SongOrder = "album" | "random" | "title"

/** Read access to the catalogue. Database failures are defects: the catalogue is the engine's own. */
export interface Catalogue {
  readonly libraries: Effect.Effect<ReadonlyArray<Library>>
  readonly artists: (
    filter?: Filter & { readonly id?: string | undefined }
  ) => Effect.Effect<ReadonlyArray<ArtistRow>>
  readonly albums: (
    filter?: Filter & {
      readonly id?: string | undefined
      readonly artistId?: string | undefined
      readonly order?: AlbumOrder | undefined
    }
  ) => Effect.Effect<ReadonlyArray<AlbumRow>>
  readonly songs: (
    filter?: Filter & {
      readonly id?: string | undefined
      readonly albumId?: string | undefined
      readonly order?: SongOrder | undefined
    }
  ) => Effect.Effect<ReadonlyArray<SongRow>>
  readonly genres: Effect.Effect<ReadonlyArray<GenreRow>>
}

/** Where a library row's folder is: the demo library lives in the data folder. */
export const libraryFolder = (dataFolder: string, row: { readonly kind: string; readonly path: string }) =>
  row.kind === "demo" ? join(dataFolder, DEMO_FOLDER) : row.path

/** Queries over the catalogue in `sql` (already migrated). */
export const makeCatalogue = ({ dialect, sql }: Storage["Type"], dataFolder: string): Catalogue => {
  const common = (filter: Filter): Array<Fragment> => [
    ...(filter.libraryId !== undefined ? [sql`library_id = ${filter.libraryId}`] : []),
    ...(filter.genre !== undefined ? [sql`genre = ${filter.genre}`] : []),
    ...(filter.fromYear !== undefined ? [sql`year >= ${filter.fromYear}`] : []),
    ...(filter.toYear !== undefined ? [sql`year <= ${filter.toYear}`] : [])
  ]
  const page = (filter: Filter) => dialect.page(filter.limit, filter.offset)
  const nocase = dialect.caseless
  const contains = dialect.contains
  const die = <A>(effect: Effect.Effect<A, SqlError>) => Effect.orDie(effect)

  const albumOrders: Record<AlbumOrder, string> = {
    random: "random()",
    newest: "created_at DESC, id",
    name: `${nocase("name")}, id`,
    artist: `${nocase("artist_name")}, year, ${nocase("name")}, id`,
    year: `year, ${nocase("name")}, id`,
    yearDesc: `year DESC, ${nocase("name")}, id`
  }
  const songOrders: Record<SongOrder, string> = {
    album: `${nocase("album_name")}, album_id, disc, track, id`,
    random: "random()",
    title: `${nocase("title")}, id`
  }

  return {
    libraries: die(sql<LibraryRow>`SELECT * FROM library_view ORDER BY id`).pipe(
      Effect.map((rows) =>
        rows.map((row): Library => ({
          id: row.id,
          name: row.name,
          path: libraryFolder(dataFolder, row),
          lastScanAt: row.last_scan_at,
          totalSongs: row.total_songs,
          totalAlbums: row.total_albums,
          totalArtists: row.total_artists,
          totalSize: row.total_size,
          totalDuration: row.total_duration
        }))
      )
    ),
    artists: (filter = {}) =>
      die(
        sql<ArtistRow>`SELECT * FROM artist_view WHERE ${sql.and([
          ...(filter.id !== undefined ? [sql`id = ${filter.id}`] : []),
          ...(filter.libraryId !== undefined ? [sql`library_id = ${filter.libraryId}`] : []),
          ...(filter.text !== undefined ? [contains("name", filter.text)] : [])
        ])} ORDER BY ${sql.literal(nocase("name"))}, id ${page(filter)}`
      ),
    albums: (filter = {}) =>
      die(
        sql<AlbumRow>`SELECT * FROM album_view WHERE ${sql.and([
          ...common(filter),
          ...(filter.id !== undefined ? [sql`id = ${filter.id}`] : []),
          ...(filter.artistId !== undefined ? [sql`artist_id = ${filter.artistId}`] : []),
          ...(filter.text !== undefined
            ? [sql`(${contains("name", filter.text)} OR ${contains("artist_name", filter.text)})`]
            : [])
        ])} ORDER BY ${sql.literal(albumOrders[filter.order ?? "year"])} ${page(filter)}`
      ),
    songs: (filter = {}) =>
      die(
        sql<SongRow>`SELECT * FROM song_view WHERE ${sql.and([
          ...common(filter),
          ...(filter.id !== undefined ? [sql`id = ${filter.id}`] : []),
          ...(filter.albumId !== undefined ? [sql`album_id = ${filter.albumId}`] : []),
          ...(filter.text !== undefined
            ? [
                sql`(${contains("title", filter.text)} OR ${contains("album_name", filter.text)}
                  OR ${contains("artist_name", filter.text)})`
              ]
            : [])
        ])} ORDER BY ${sql.literal(songOrders[filter.order ?? "album"])} ${page(filter)}`
      ),
    genres: die(
      sql<GenreRow>`SELECT genre, COUNT(*) AS song_count, COUNT(DISTINCT album_id) AS album_count
        FROM song_view GROUP BY genre ORDER BY ${sql.literal(nocase("genre"))}`
    )
  }
}

/** A folder for the embedded catalogue: `id` is requested (the CLI's `--library ID=PATH`) or the next free one. */
export interface RegisterLibraryOptions {
  readonly id?: number | undefined
  /** Display name; default the folder's name. */
  readonly name?: string | undefined
  readonly path: string
  /**
   * Remove the embedded demo library first (its catalogue rows; its files stay), so that the
   * caller's libraries replace it and may use its ID: Navidrome numbers the first library 1, and
   * real plugins assume that.
   */
  readonly replaceDemo?: boolean | undefined
}

const databaseError = (cause: SqlError) =>
  new EmbeddedLibraryError({
    reason: "Database",
    message: `catalogue update failed: ${cause.message}`,
    cause
  })

// Children first: the catalogue's tables reference `libraries` and each other.
const removeDemo = ({ sql }: Storage["Type"]) =>
  Effect.gen(function* () {
    yield* sql`DELETE FROM songs WHERE library_id IN (SELECT id FROM libraries WHERE kind = 'demo')`
    yield* sql`DELETE FROM albums WHERE library_id IN (SELECT id FROM libraries WHERE kind = 'demo')`
    yield* sql`DELETE FROM artists WHERE library_id IN (SELECT id FROM libraries WHERE kind = 'demo')`
    yield* sql`DELETE FROM libraries WHERE kind = 'demo'`
  })

/**
 * Adds a music folder to the embedded catalogue (or refreshes it: same ID, or same path without an
 * ID), scanning it shallowly for its statistics, and returns its library ID. The demo library's ID
 * cannot be taken over unless `replaceDemo` removes the demo library first.
 */
export const registerLibrary = (
  options: RegisterLibraryOptions
): Effect.Effect<number, EmbeddedLibraryError, Storage | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const storage = yield* Storage
    const { sql } = storage
    const { id } = options
    if (id !== undefined && !(Number.isSafeInteger(id) && id > 0 && id <= 2_147_483_647)) {
      return yield* new EmbeddedLibraryError({
        reason: "InvalidId",
        message: `invalid library ID ${id}: use a positive integer`
      })
    }
    const path = resolve(options.path)
    const stats = yield* scanFolder(path)
    const name = options.name ?? basename(path)
    const row = {
      name,
      path,
      kind: "folder",
      last_scan_at: nowSeconds(),
      scanned_songs: stats.songs,
      scanned_albums: stats.albums,
      scanned_artists: stats.artists,
      scanned_size: stats.size,
      scanned_duration: stats.duration
    }
    const store = Effect.gen(function* () {
      if (options.replaceDemo === true) yield* removeDemo(storage)
      const existing =
        id !== undefined
          ? yield* sql<{ id: number; kind: string }>`SELECT id, kind FROM libraries WHERE id = ${id}`
          : yield* sql<{ id: number; kind: string }>`SELECT id, kind FROM libraries
              WHERE kind = 'folder' AND path = ${path} ORDER BY id LIMIT 1`
      const found = existing[0]
      if (found?.kind === "demo") {
        return yield* new EmbeddedLibraryError({
          reason: "IdTaken",
          message: `library ${found.id} is the embedded demo library; choose another ID, or replace the demo library`
        })
      }
      if (found !== undefined) {
        yield* sql`UPDATE libraries SET ${sql.update(row)} WHERE id = ${found.id}`
        return found.id
      }
      const inserted = yield* sql<{ id: number }>`INSERT INTO libraries ${sql.insert(
        id !== undefined ? { id, ...row } : row
      )} RETURNING id`
      const newId = inserted[0]?.id
      if (newId === undefined) {
        return yield* new EmbeddedLibraryError({
          reason: "Database",
          message: "catalogue update returned no ID"
        })
      }
      return newId
    })
    return yield* sql
      .withTransaction(store)
      .pipe(Effect.catchTag("SqlError", (cause) => Effect.fail(databaseError(cause))))
  }).pipe(Effect.withSpan("EmbeddedLibrary.registerLibrary"))

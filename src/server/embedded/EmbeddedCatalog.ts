/**
 * The embedded music catalogue in `<dataFolder>/ndp.db`: libraries, artists, albums and songs, with
 * the demo library recorded by a migration, plus folders the embedding server registers. Queries
 * here feed the embedded `LibraryCatalog` and the embedded Subsonic router.
 *
 * Library statistics are computed, not stored: the catalogue's own rows count, and for registered
 * folders (which have no catalogue rows) the figures of their last shallow scan.
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import { migrate as runMigrations } from "../../internal/migrate.js"
import type { SqlError } from "@effect/sql/SqlError"
import type { Fragment } from "@effect/sql/Statement"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { open, readdir, stat } from "node:fs/promises"
import { basename, join, resolve } from "node:path"
import type { Library } from "../LibraryCatalog.js"
import {
  DEMO_FOLDER,
  DEMO_LIBRARY_ID,
  demoCatalogue,
  WAV_BIT_DEPTH,
  WAV_CHANNELS,
  WAV_SAMPLE_RATE,
  wavDuration
} from "./DemoLibrary.js"

/** Why registering a library or reading the catalogue failed. */
export class EmbeddedLibraryError extends Schema.TaggedError<EmbeddedLibraryError>()("EmbeddedLibraryError", {
  reason: Schema.Literal("InvalidId", "IdTaken", "NotADirectory", "Scan", "Database"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/** The table of the catalogue's migrations (apart from `EmbeddedDatabase`'s, in the same file). */
export const MIGRATIONS_TABLE = "ndp_library_migrations"

const nowSeconds = () => Math.floor(Date.now() / 1000)

const migrations = Migrator.fromRecord({
  "0001_catalogue": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // `path` is absolute for registered folders; the demo library's is '' and resolved against the
    // data folder at read time, so a moved data folder keeps working.
    yield* sql`CREATE TABLE libraries (
      id INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      path TEXT NOT NULL,
      kind TEXT NOT NULL CHECK (kind IN ('demo', 'folder')),
      last_scan_at INTEGER NOT NULL,
      scanned_songs INTEGER NOT NULL DEFAULT 0,
      scanned_albums INTEGER NOT NULL DEFAULT 0,
      scanned_artists INTEGER NOT NULL DEFAULT 0,
      scanned_size INTEGER NOT NULL DEFAULT 0,
      scanned_duration INTEGER NOT NULL DEFAULT 0
    )`
    yield* sql`CREATE TABLE artists (
      id TEXT PRIMARY KEY,
      library_id INTEGER NOT NULL REFERENCES libraries (id),
      name TEXT NOT NULL
    )`
    yield* sql`CREATE TABLE albums (
      id TEXT PRIMARY KEY,
      library_id INTEGER NOT NULL REFERENCES libraries (id),
      artist_id TEXT NOT NULL REFERENCES artists (id),
      name TEXT NOT NULL,
      year INTEGER NOT NULL,
      genre TEXT NOT NULL,
      folder TEXT NOT NULL,
      created_at INTEGER NOT NULL
    )`
    yield* sql`CREATE TABLE songs (
      id TEXT PRIMARY KEY,
      library_id INTEGER NOT NULL REFERENCES libraries (id),
      album_id TEXT NOT NULL REFERENCES albums (id),
      artist_id TEXT NOT NULL REFERENCES artists (id),
      title TEXT NOT NULL,
      track INTEGER NOT NULL,
      disc INTEGER NOT NULL,
      duration INTEGER NOT NULL,
      size INTEGER NOT NULL,
      path TEXT NOT NULL,
      suffix TEXT NOT NULL,
      content_type TEXT NOT NULL,
      bit_rate INTEGER NOT NULL,
      sample_rate INTEGER NOT NULL,
      bit_depth INTEGER NOT NULL,
      channels INTEGER NOT NULL,
      created_at INTEGER NOT NULL
    )`
    yield* sql`CREATE INDEX songs_album ON songs (album_id)`
    yield* sql`CREATE INDEX albums_artist ON albums (artist_id)`
    yield* sql`CREATE VIEW library_view AS SELECT l.id, l.name, l.path, l.kind, l.last_scan_at,
      l.scanned_songs + (SELECT COUNT(*) FROM songs s WHERE s.library_id = l.id) AS total_songs,
      l.scanned_albums + (SELECT COUNT(*) FROM albums a WHERE a.library_id = l.id) AS total_albums,
      l.scanned_artists + (SELECT COUNT(*) FROM artists a WHERE a.library_id = l.id) AS total_artists,
      l.scanned_size + (SELECT COALESCE(SUM(s.size), 0) FROM songs s WHERE s.library_id = l.id) AS total_size,
      l.scanned_duration + (SELECT COALESCE(SUM(s.duration), 0) FROM songs s WHERE s.library_id = l.id)
        AS total_duration
      FROM libraries l`
    yield* sql`CREATE VIEW artist_view AS SELECT ar.id, ar.library_id, ar.name,
      (SELECT COUNT(*) FROM albums al WHERE al.artist_id = ar.id) AS album_count
      FROM artists ar`
    yield* sql`CREATE VIEW album_view AS SELECT al.id, al.library_id, al.artist_id, ar.name AS artist_name,
      al.name, al.year, al.genre, al.folder, al.created_at,
      (SELECT COUNT(*) FROM songs s WHERE s.album_id = al.id) AS song_count,
      (SELECT COALESCE(SUM(s.duration), 0) FROM songs s WHERE s.album_id = al.id) AS duration
      FROM albums al JOIN artists ar ON ar.id = al.artist_id`
    yield* sql`CREATE VIEW song_view AS SELECT s.*, al.name AS album_name, al.year, al.genre,
      ar.name AS artist_name
      FROM songs s JOIN albums al ON al.id = s.album_id JOIN artists ar ON ar.id = s.artist_id`
  }),
  "0002_demo_library": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const now = nowSeconds()
    yield* sql`INSERT INTO libraries (id, name, path, kind, last_scan_at)
      VALUES (${DEMO_LIBRARY_ID}, 'Demo Library', '', 'demo', ${now})`
    yield* sql`INSERT INTO artists ${sql.insert(
      demoCatalogue.artists.map((a) => ({ id: a.id, library_id: DEMO_LIBRARY_ID, name: a.name }))
    )}`
    yield* sql`INSERT INTO albums ${sql.insert(
      demoCatalogue.albums.map((a) => ({
        id: a.id,
        library_id: DEMO_LIBRARY_ID,
        artist_id: a.artistId,
        name: a.name,
        year: a.year,
        genre: a.genre,
        folder: a.folder,
        created_at: a.createdAt
      }))
    )}`
    const bitRate = (WAV_SAMPLE_RATE * WAV_BIT_DEPTH * WAV_CHANNELS) / 1000
    yield* sql`INSERT INTO songs ${sql.insert(
      demoCatalogue.songs.map((s) => ({
        id: s.id,
        library_id: DEMO_LIBRARY_ID,
        album_id: s.albumId,
        artist_id: s.artistId,
        title: s.title,
        track: s.track,
        disc: 1,
        duration: s.seconds,
        size: s.size,
        path: s.path,
        suffix: "wav",
        content_type: "audio/wav",
        bit_rate: bitRate,
        sample_rate: WAV_SAMPLE_RATE,
        bit_depth: WAV_BIT_DEPTH,
        channels: WAV_CHANNELS,
        created_at: demoCatalogue.albums.find((a) => a.id === s.albumId)?.createdAt ?? now
      }))
    )}`
  })
})

/** Brings the catalogue's tables up to date (idempotent; safe on a database `EmbeddedDatabase` uses). */
export const migrate: Effect.Effect<void, EmbeddedLibraryError, SqlClient.SqlClient> = runMigrations(
  MIGRATIONS_TABLE,
  migrations
).pipe(
  Effect.asVoid,
  Effect.mapError(
    (cause) =>
      new EmbeddedLibraryError({
        reason: "Database",
        message: `catalogue migration failed: ${cause.message}`,
        cause
      })
  )
)

// ---- rows ----

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

const likePattern = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/** Where a library row's folder is: the demo library lives in the data folder. */
export const libraryFolder = (dataFolder: string, row: { readonly kind: string; readonly path: string }) =>
  row.kind === "demo" ? join(dataFolder, DEMO_FOLDER) : row.path

/** Queries over the catalogue in `sql` (already migrated). */
export const makeCatalogue = (sql: SqlClient.SqlClient, dataFolder: string): Catalogue => {
  const common = (filter: Filter): Array<Fragment> => [
    ...(filter.libraryId !== undefined ? [sql`library_id = ${filter.libraryId}`] : []),
    ...(filter.genre !== undefined ? [sql`genre = ${filter.genre}`] : []),
    ...(filter.fromYear !== undefined ? [sql`year >= ${filter.fromYear}`] : []),
    ...(filter.toYear !== undefined ? [sql`year <= ${filter.toYear}`] : [])
  ]
  const page = (filter: Filter) => sql`LIMIT ${filter.limit ?? -1} OFFSET ${filter.offset ?? 0}`
  const die = <A>(effect: Effect.Effect<A, SqlError>) => Effect.orDie(effect)

  const albumOrders: Record<AlbumOrder, string> = {
    random: "random()",
    newest: "created_at DESC, id",
    name: "name COLLATE NOCASE, id",
    artist: "artist_name COLLATE NOCASE, year, name COLLATE NOCASE, id",
    year: "year, name COLLATE NOCASE, id",
    yearDesc: "year DESC, name COLLATE NOCASE, id"
  }
  const songOrders: Record<SongOrder, string> = {
    album: "album_name COLLATE NOCASE, album_id, disc, track, id",
    random: "random()",
    title: "title COLLATE NOCASE, id"
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
          ...(filter.text !== undefined ? [sql`name LIKE ${likePattern(filter.text)} ESCAPE '\\'`] : [])
        ])} ORDER BY name COLLATE NOCASE, id ${page(filter)}`
      ),
    albums: (filter = {}) =>
      die(
        sql<AlbumRow>`SELECT * FROM album_view WHERE ${sql.and([
          ...common(filter),
          ...(filter.id !== undefined ? [sql`id = ${filter.id}`] : []),
          ...(filter.artistId !== undefined ? [sql`artist_id = ${filter.artistId}`] : []),
          ...(filter.text !== undefined
            ? [
                sql`(name LIKE ${likePattern(filter.text)} ESCAPE '\\'
                  OR artist_name LIKE ${likePattern(filter.text)} ESCAPE '\\')`
              ]
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
                sql`(title LIKE ${likePattern(filter.text)} ESCAPE '\\'
                  OR album_name LIKE ${likePattern(filter.text)} ESCAPE '\\'
                  OR artist_name LIKE ${likePattern(filter.text)} ESCAPE '\\')`
              ]
            : [])
        ])} ORDER BY ${sql.literal(songOrders[filter.order ?? "album"])} ${page(filter)}`
      ),
    genres: die(
      sql<GenreRow>`SELECT genre, COUNT(*) AS song_count, COUNT(DISTINCT album_id) AS album_count
        FROM song_view GROUP BY genre ORDER BY genre COLLATE NOCASE`
    )
  }
}

// ---- registering folders ----

/** File name extensions counted as songs when a registered folder is scanned. */
export const audioExtensions: ReadonlySet<string> = new Set([
  "aac",
  "aif",
  "aiff",
  "ape",
  "dff",
  "dsf",
  "flac",
  "m4a",
  "mp3",
  "mp4",
  "mpc",
  "oga",
  "ogg",
  "opus",
  "wav",
  "wma",
  "wv"
])

/** How far a registration scan looks: Artist/Album/Disc below the library folder. */
const SCAN_MAX_DEPTH = 3
/** How many directory entries a registration scan reads at most. */
const SCAN_MAX_ENTRIES = 20_000

/** What a shallow scan of a folder found. */
export interface ScanStats {
  readonly songs: number
  readonly albums: number
  readonly artists: number
  readonly size: number
  readonly duration: number
}

const scanError = (path: string) => (cause: unknown) =>
  new EmbeddedLibraryError({
    reason: "Scan",
    message: `cannot scan ${path}: ${cause instanceof Error ? cause.message : String(cause)}`,
    cause
  })

const readHeader = async (file: string): Promise<Uint8Array> => {
  const handle = await open(file, "r")
  try {
    const buffer = new Uint8Array(44)
    const { bytesRead } = await handle.read(buffer, 0, 44, 0)
    return buffer.subarray(0, bytesRead)
  } finally {
    await handle.close()
  }
}

/**
 * Counts the audio files of a folder without reading tags: songs are files with an audio
 * extension, albums the folders holding them, artists the top-level folders holding them. WAV
 * durations come from their header; other formats count 0 seconds. Symbolic links are not followed.
 */
export const scanFolder = (root: string): Effect.Effect<ScanStats, EmbeddedLibraryError> =>
  Effect.gen(function* () {
    const info = yield* Effect.tryPromise({ try: () => stat(root), catch: scanError(root) }).pipe(
      Effect.catchAll(() => Effect.succeed(undefined))
    )
    if (info === undefined || !info.isDirectory()) {
      return yield* new EmbeddedLibraryError({
        reason: "NotADirectory",
        message: `${root} is not a directory`
      })
    }
    return yield* Effect.tryPromise({
      try: async () => {
        let songs = 0
        let size = 0
        let duration = 0
        let entries = 0
        const albums = new Set<string>()
        const artists = new Set<string>()
        const queue: Array<{ readonly dir: string; readonly parts: ReadonlyArray<string> }> = [
          { dir: root, parts: [] }
        ]
        for (
          let next = queue.shift();
          next !== undefined && entries < SCAN_MAX_ENTRIES;
          next = queue.shift()
        ) {
          const listing = await readdir(next.dir, { withFileTypes: true }).catch(() => [])
          for (const entry of listing) {
            if (++entries > SCAN_MAX_ENTRIES) break
            const full = join(next.dir, entry.name)
            if (entry.isDirectory()) {
              if (next.parts.length < SCAN_MAX_DEPTH)
                queue.push({ dir: full, parts: [...next.parts, entry.name] })
              continue
            }
            const extension = entry.name.includes(".")
              ? (entry.name.split(".").pop() ?? "").toLowerCase()
              : ""
            if (!entry.isFile() || !audioExtensions.has(extension)) continue
            const fileInfo = await stat(full).catch(() => undefined)
            if (fileInfo === undefined) continue
            songs++
            size += fileInfo.size
            if (extension === "wav")
              duration += wavDuration(await readHeader(full).catch(() => new Uint8Array(0)), fileInfo.size)
            albums.add(next.parts.join("/"))
            const artist = next.parts[0]
            if (artist !== undefined) artists.add(artist)
          }
        }
        return { songs, albums: albums.size, artists: artists.size, size, duration }
      },
      catch: scanError(root)
    })
  })

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
const removeDemo = (sql: SqlClient.SqlClient) =>
  Effect.gen(function* () {
    yield* sql`DELETE FROM songs WHERE library_id IN (SELECT id FROM libraries WHERE kind = 'demo')`
    yield* sql`DELETE FROM albums WHERE library_id IN (SELECT id FROM libraries WHERE kind = 'demo')`
    yield* sql`DELETE FROM artists WHERE library_id IN (SELECT id FROM libraries WHERE kind = 'demo')`
    yield* sql`DELETE FROM libraries WHERE kind = 'demo'`
  })

/**
 * Adds a music folder to the embedded catalogue (or refreshes it: same ID, or same path without an
 * ID), scanning it shallowly for its statistics, and returns its library ID. The demo library's ID
 * cannot be taken over unless `replaceDemo` removes the demo library first. Runs the catalogue
 * migrations first, so it works on a fresh database.
 */
export const registerLibrary = (
  options: RegisterLibraryOptions
): Effect.Effect<number, EmbeddedLibraryError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const { id } = options
    if (id !== undefined && !(Number.isSafeInteger(id) && id > 0 && id <= 2_147_483_647)) {
      return yield* new EmbeddedLibraryError({
        reason: "InvalidId",
        message: `invalid library ID ${id}: use a positive integer`
      })
    }
    yield* migrate
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
      if (options.replaceDemo === true) yield* removeDemo(sql)
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

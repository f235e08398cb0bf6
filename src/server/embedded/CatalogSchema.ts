/**
 * The embedded music catalogue's tables: libraries, artists, albums and songs, with views that
 * compute the statistics, and the demo library recorded by a migration. Library statistics are
 * computed, not stored: the catalogue's own rows count, and for registered folders (which have no
 * catalogue rows) the figures of their last shallow scan.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import type { Dialect } from "../../storage/Dialect.js"
import {
  DEMO_LIBRARY_ID,
  demoCatalogue,
  WAV_BIT_DEPTH,
  WAV_CHANNELS,
  WAV_SAMPLE_RATE
} from "./DemoLibrary.js"

/** Now, in Unix seconds (the catalogue's timestamps). */
export const nowSeconds = () => Math.floor(Date.now() / 1000)

/** The catalogue's migrations (numbered in `storage/Migrations.ts`). */
export const migrations = {
  catalogue: (sql: SqlClient.SqlClient, dialect: Dialect) =>
    Effect.gen(function* () {
      // `path` is absolute for registered folders; the demo library's is '' and resolved against the
      // data folder at read time, so a moved data folder keeps working.
      yield* sql`CREATE TABLE libraries (
      id ${dialect.integerKey},
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
  demoLibrary: (sql: SqlClient.SqlClient, _dialect: Dialect) =>
    Effect.gen(function* () {
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
}

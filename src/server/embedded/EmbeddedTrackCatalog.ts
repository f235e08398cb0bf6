/**
 * The embedded `TrackCatalog` over the catalogue tables (`CatalogSchema`): the demo library and
 * registered folders. It knows no MusicBrainz IDs or ISRCs (those lookups find nothing), no stars
 * or ratings; play counts are the user's scrobbles in the embedded `scrobble_history` (on a cluster,
 * the shared one: `sharedOrOwn`), while the songs are each node's own.
 */
import type { Fragment } from "@effect/sql/Statement"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { sharedOrOwn, Storage } from "../../storage/Storage.js"
import { type CatalogTrack, type LibraryScope, TrackCatalog, type UserTrackData } from "../TrackCatalog.js"
import { UserDirectory } from "../UserDirectory.js"

type Row = {
  readonly id: string
  readonly library_id: number
  readonly title: string
  readonly artist_name: string
  readonly album_name: string
  readonly duration: number
  readonly path: string
}

const toTrack = (row: Row): CatalogTrack => ({
  id: row.id,
  libraryId: row.library_id,
  title: row.title,
  artist: row.artist_name,
  album: row.album_name,
  durationMs: row.duration * 1000,
  path: row.path
})

/** The embedded catalogue's songs (a failing query is a defect: the database is the engine's own). */
export const layer: Layer.Layer<TrackCatalog, never, Storage | UserDirectory> = Layer.effect(
  TrackCatalog,
  Effect.gen(function* () {
    const { dialect, sql } = yield* Storage
    const history = (yield* sharedOrOwn).sql
    const directory = yield* UserDirectory
    const within = (libraries: LibraryScope): Fragment =>
      libraries === "all"
        ? sql`1 = 1`
        : libraries.length === 0
          ? sql`1 = 0`
          : sql`library_id IN ${sql.in(libraries)}`
    const columns = sql`id, library_id, title, artist_name, album_name, duration, path`
    return TrackCatalog.of({
      find: (key, values, libraries) =>
        // The embedded catalogue has no MusicBrainz IDs or ISRCs.
        key !== "id" || values.length === 0
          ? Effect.succeed([])
          : sql<Row>`SELECT ${columns} FROM song_view
              WHERE id IN ${sql.in(values)} AND ${within(libraries)}`.pipe(
              Effect.map((rows) => rows.map(toTrack)),
              Effect.orDie,
              Effect.withSpan("EmbeddedTrackCatalog.find")
            ),
      search: (title, libraries, limit) =>
        sql<Row>`SELECT ${columns} FROM song_view
          WHERE ${dialect.contains("title", title)} AND ${within(libraries)}
          ORDER BY id ${dialect.page(limit, 0)}`.pipe(
          Effect.map((rows) => rows.map(toTrack)),
          Effect.orDie,
          Effect.withSpan("EmbeddedTrackCatalog.search")
        ),
      userData: (username, ids) =>
        Effect.gen(function* () {
          const users = yield* directory.list
          if (!users.some((user) => user.userName === username)) return Option.none()
          const counts =
            ids.length === 0
              ? []
              : yield* history<{
                  readonly media_file_id: string
                  readonly n: number | string
                }>`SELECT media_file_id,
                  COUNT(*) AS n FROM scrobble_history
                  WHERE username = ${username} AND media_file_id IN ${history.in(ids)}
                  GROUP BY media_file_id`.pipe(Effect.orDie)
          return Option.some(
            new Map<string, UserTrackData>(
              counts.map((row) => [
                row.media_file_id,
                { starred: false, rating: 0, playCount: Number(row.n) }
              ])
            )
          )
        }).pipe(Effect.withSpan("EmbeddedTrackCatalog.userData"))
    })
  })
)

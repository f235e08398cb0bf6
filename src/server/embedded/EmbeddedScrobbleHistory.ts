/**
 * The embedded scrobble history: table `scrobble_history` in the engine's storage (its migration is
 * numbered in `storage/Migrations.ts`), filled by `Scrobblers` when it is provided. Users are the
 * embedded directory's. On a cluster the table is in its shared database (`sharedOrOwn`): a
 * scrobble recorded by one node is in the history every node reads.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Dialect } from "../../storage/Dialect.js"
import { sharedOrOwn, type Storage } from "../../storage/Storage.js"
import { type ScrobbleRef, ScrobbleHistory } from "../ScrobbleHistory.js"
import { UserDirectory } from "../UserDirectory.js"

/** The history table's migration (numbered in `storage/Migrations.ts`). */
export const migrations = {
  scrobbleHistory: (sql: SqlClient.SqlClient, dialect: Dialect) =>
    Effect.gen(function* () {
      // Unix seconds, in the 64-bit column type (INTEGER on SQLite as ever; BIGINT on PostgreSQL,
      // whose INTEGER could not compare with the widest bounds the reads use).
      yield* sql`CREATE TABLE scrobble_history (
        id ${dialect.serialKey},
        username TEXT NOT NULL,
        media_file_id TEXT NOT NULL,
        submission_time ${dialect.epochMillis} NOT NULL
      )`
      yield* sql`CREATE INDEX scrobble_history_by_user_time ON scrobble_history (username, submission_time, id)`
    })
}

// PostgreSQL answers BIGINT columns and counts as strings.
type Row = {
  readonly id: number | string
  readonly media_file_id: string
  readonly submission_time: number | string
}

const toRef = (row: Row): ScrobbleRef => ({
  id: Number(row.id),
  mediaFileId: row.media_file_id,
  submissionTime: Number(row.submission_time)
})

// SQLite integers reach 2^63; unbounded ends use the widest safe numbers.
const low = (from: number | undefined) => from ?? Number.MIN_SAFE_INTEGER
const high = (to: number | undefined) => to ?? Number.MAX_SAFE_INTEGER

/** The history over the embedded database (a failing query is a defect: the file is the engine's own). */
export const layer: Layer.Layer<ScrobbleHistory, never, Storage | UserDirectory> = Layer.effect(
  ScrobbleHistory,
  Effect.gen(function* () {
    const { sql } = yield* sharedOrOwn
    const directory = yield* UserDirectory
    const edge = (username: string, order: "MIN" | "MAX") =>
      sql<{ readonly t: number | string | null }>`SELECT ${sql.literal(order)}(submission_time) AS t
        FROM scrobble_history WHERE username = ${username}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]?.t), Number)),
        Effect.orDie
      )
    return ScrobbleHistory.of({
      hasUser: (username) =>
        Effect.map(directory.list, (users) => users.some((user) => user.userName === username)),
      firstTimestamp: (username) => edge(username, "MIN"),
      lastTimestamp: (username) => edge(username, "MAX"),
      slice: (username, slice) => {
        const direction = sql.literal(slice.descending ? "DESC" : "ASC")
        return sql<Row>`SELECT id, media_file_id, submission_time FROM scrobble_history
          WHERE username = ${username}
            AND submission_time >= ${low(slice.fromTimestamp)} AND submission_time <= ${high(slice.toTimestamp)}
          ORDER BY submission_time ${direction}, id ${direction}
          LIMIT ${slice.limit} OFFSET ${slice.offset}`.pipe(
          Effect.map((rows) => rows.map(toRef)),
          Effect.orDie
        )
      },
      count: (username, range) =>
        sql<{ readonly n: number | string }>`SELECT COUNT(*) AS n FROM scrobble_history
          WHERE username = ${username}
            AND submission_time >= ${low(range.fromTimestamp)} AND submission_time <= ${high(range.toTimestamp)}`.pipe(
          Effect.map((rows) => Number(rows[0]?.n ?? 0)),
          Effect.orDie
        ),
      record: (username, mediaFileId, submissionTime) =>
        sql`INSERT INTO scrobble_history (username, media_file_id, submission_time)
          VALUES (${username}, ${mediaFileId}, ${Math.trunc(submissionTime)})`.pipe(
          Effect.asVoid,
          Effect.orDie
        )
    })
  })
)

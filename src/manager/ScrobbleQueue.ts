/**
 * The tables behind `Scrobblers`, in the engine's storage: scrobbles waiting for a retry, and users
 * a scrobbler refused as not authorized. Plain queries; `Scrobblers` owns the policy and maps
 * `SqlError`s to its error.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import type { Dialect } from "../storage/Dialect.js"
import { Storage } from "../storage/Storage.js"

/** The queue's migrations (numbered in `storage/Migrations.ts`). */
export const migrations = {
  scrobbleQueue: (sql: SqlClient.SqlClient, dialect: Dialect) =>
    Effect.gen(function* () {
      yield* sql`CREATE TABLE scrobble_queue (
      id ${dialect.serialKey},
      plugin_id TEXT NOT NULL,
      username TEXT NOT NULL,
      request TEXT NOT NULL,
      attempts INTEGER NOT NULL,
      next_attempt_at ${dialect.epochMillis} NOT NULL,
      created_at ${dialect.epochMillis} NOT NULL,
      last_error TEXT
    )`
      yield* sql`CREATE INDEX scrobble_queue_by_plugin ON scrobble_queue (plugin_id, id)`
      yield* sql`CREATE TABLE scrobble_unauthorized (
      plugin_id TEXT NOT NULL,
      username TEXT NOT NULL,
      marked_at ${dialect.epochMillis} NOT NULL,
      PRIMARY KEY (plugin_id, username)
    )`
    }),
  // Which process drains a plugin's queue, until when: on a cluster all nodes share the queue.
  drainLeases: (sql: SqlClient.SqlClient, dialect: Dialect) =>
    sql`CREATE TABLE scrobble_drains (
      plugin_id TEXT PRIMARY KEY,
      holder TEXT NOT NULL,
      lease_until ${dialect.epochMillis} NOT NULL
    )`.pipe(Effect.asVoid)
}

/** A scrobble waiting to be sent again. */
export interface QueuedScrobble {
  readonly id: number
  readonly pluginId: string
  readonly username: string
  /** The full `ScrobbleRequest` as JSON (it holds the username too). */
  readonly request: string
  readonly attempts: number
  /** Epoch milliseconds. */
  readonly nextAttemptAt: number
  readonly createdAt: number
  readonly lastError: string | null
}

/** A user a scrobbler refused as not authorized. */
export interface UnauthorizedUser {
  readonly pluginId: string
  readonly username: string
  readonly markedAt: number
}

// PostgreSQL answers BIGINT columns and counts as strings.
interface QueueRow {
  readonly id: number | string
  readonly plugin_id: string
  readonly username: string
  readonly request: string
  readonly attempts: number
  readonly next_attempt_at: number | string
  readonly created_at: number | string
  readonly last_error: string | null
}

const fromRow = (row: QueueRow): QueuedScrobble => ({
  id: Number(row.id),
  pluginId: row.plugin_id,
  username: row.username,
  request: row.request,
  attempts: row.attempts,
  nextAttemptAt: Number(row.next_attempt_at),
  createdAt: Number(row.created_at),
  lastError: row.last_error
})

export interface ScrobbleStore {
  readonly enqueue: (row: Omit<QueuedScrobble, "id">) => Effect.Effect<void, SqlError>
  /** Whether the user has scrobbles waiting for this plugin (new ones then queue behind them). */
  readonly hasBacklog: (pluginId: string, username: string) => Effect.Effect<boolean, SqlError>
  /** A plugin's rows, oldest first. */
  readonly rowsOf: (pluginId: string, limit: number) => Effect.Effect<ReadonlyArray<QueuedScrobble>, SqlError>
  readonly all: Effect.Effect<ReadonlyArray<QueuedScrobble>, SqlError>
  readonly remove: (id: number) => Effect.Effect<void, SqlError>
  readonly reschedule: (
    id: number,
    attempts: number,
    nextAttemptAt: number,
    lastError: string
  ) => Effect.Effect<void, SqlError>
  /** Makes every row of a plugin due at `now`. */
  readonly wake: (pluginId: string, now: number) => Effect.Effect<void, SqlError>
  /** Row counts by plugin. */
  readonly counts: Effect.Effect<ReadonlyArray<{ pluginId: string; count: number }>, SqlError>
  /** Deletes rows created before `cutoff`; counts by plugin. */
  readonly dropOlderThan: (
    cutoff: number
  ) => Effect.Effect<ReadonlyArray<{ pluginId: string; count: number }>, SqlError>
  /** Deletes a plugin's rows and marks. */
  readonly dropPlugin: (pluginId: string) => Effect.Effect<void, SqlError>
  readonly isMarked: (pluginId: string, username: string) => Effect.Effect<boolean, SqlError>
  readonly mark: (pluginId: string, username: string, at: number) => Effect.Effect<void, SqlError>
  readonly unmark: (pluginId: string, username: string) => Effect.Effect<void, SqlError>
  readonly marks: Effect.Effect<ReadonlyArray<UnauthorizedUser>, SqlError>
  /** Plugins that have rows or marks. */
  readonly plugins: Effect.Effect<ReadonlyArray<string>, SqlError>
  /**
   * Takes or extends the right to drain a plugin's queue until `until`: granted when no one holds
   * it, `holder` already does, or the holder's lease ended before `now`.
   */
  readonly claimDrain: (
    pluginId: string,
    holder: string,
    now: number,
    until: number
  ) => Effect.Effect<boolean, SqlError>
  /** Gives the right up, if `holder` still has it. */
  readonly releaseDrain: (pluginId: string, holder: string) => Effect.Effect<void, SqlError>
}

/** The store in the engine's storage. */
export const make: Effect.Effect<ScrobbleStore, never, Storage> = Effect.gen(function* () {
  const { sql } = yield* Storage

  const counted = (rows: ReadonlyArray<{ plugin_id: string; n: number | string }>) =>
    rows.map((r) => ({ pluginId: r.plugin_id, count: Number(r.n) }))

  return {
    enqueue: (row) =>
      sql`INSERT INTO scrobble_queue (plugin_id, username, request, attempts, next_attempt_at, created_at, last_error)
        VALUES (${row.pluginId}, ${row.username}, ${row.request}, ${row.attempts}, ${row.nextAttemptAt}, ${row.createdAt}, ${row.lastError})`.pipe(
        Effect.asVoid
      ),
    hasBacklog: (pluginId, username) =>
      sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM scrobble_queue
        WHERE plugin_id = ${pluginId} AND username = ${username}`.pipe(
        Effect.map((rows) => Number(rows[0]?.n ?? 0) > 0)
      ),
    rowsOf: (pluginId, limit) =>
      sql<QueueRow>`SELECT * FROM scrobble_queue WHERE plugin_id = ${pluginId} ORDER BY id LIMIT ${limit}`.pipe(
        Effect.map((rows) => rows.map(fromRow))
      ),
    all: sql<QueueRow>`SELECT * FROM scrobble_queue ORDER BY id`.pipe(
      Effect.map((rows) => rows.map(fromRow))
    ),
    remove: (id) => sql`DELETE FROM scrobble_queue WHERE id = ${id}`.pipe(Effect.asVoid),
    reschedule: (id, attempts, nextAttemptAt, lastError) =>
      sql`UPDATE scrobble_queue SET attempts = ${attempts}, next_attempt_at = ${nextAttemptAt}, last_error = ${lastError}
        WHERE id = ${id}`.pipe(Effect.asVoid),
    wake: (pluginId, now) =>
      sql`UPDATE scrobble_queue SET next_attempt_at = ${now}
        WHERE plugin_id = ${pluginId} AND next_attempt_at > ${now}`.pipe(Effect.asVoid),
    counts: sql<{
      plugin_id: string
      n: number
    }>`SELECT plugin_id, COUNT(*) AS n FROM scrobble_queue GROUP BY plugin_id ORDER BY plugin_id`.pipe(
      Effect.map(counted)
    ),
    dropOlderThan: (cutoff) =>
      sql.withTransaction(
        Effect.gen(function* () {
          const rows = yield* sql<{ plugin_id: string; n: number }>`SELECT plugin_id, COUNT(*) AS n
            FROM scrobble_queue WHERE created_at < ${cutoff} GROUP BY plugin_id ORDER BY plugin_id`
          if (rows.length > 0) yield* sql`DELETE FROM scrobble_queue WHERE created_at < ${cutoff}`
          return counted(rows)
        })
      ),
    dropPlugin: (pluginId) =>
      sql
        .withTransaction(
          Effect.zipRight(
            sql`DELETE FROM scrobble_queue WHERE plugin_id = ${pluginId}`,
            sql`DELETE FROM scrobble_unauthorized WHERE plugin_id = ${pluginId}`
          )
        )
        .pipe(Effect.asVoid),
    isMarked: (pluginId, username) =>
      sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM scrobble_unauthorized
        WHERE plugin_id = ${pluginId} AND username = ${username}`.pipe(
        Effect.map((rows) => Number(rows[0]?.n ?? 0) > 0)
      ),
    mark: (pluginId, username, at) =>
      sql`INSERT INTO scrobble_unauthorized (plugin_id, username, marked_at) VALUES (${pluginId}, ${username}, ${at})
        ON CONFLICT (plugin_id, username) DO NOTHING`.pipe(Effect.asVoid),
    unmark: (pluginId, username) =>
      sql`DELETE FROM scrobble_unauthorized WHERE plugin_id = ${pluginId} AND username = ${username}`.pipe(
        Effect.asVoid
      ),
    marks: sql<{
      plugin_id: string
      username: string
      marked_at: number | string
    }>`SELECT * FROM scrobble_unauthorized ORDER BY plugin_id, username`.pipe(
      Effect.map((rows) =>
        rows.map((r) => ({ pluginId: r.plugin_id, username: r.username, markedAt: Number(r.marked_at) }))
      )
    ),
    plugins: sql<{ plugin_id: string }>`SELECT plugin_id FROM scrobble_queue
        UNION SELECT plugin_id FROM scrobble_unauthorized ORDER BY plugin_id`.pipe(
      Effect.map((rows) => rows.map((r) => r.plugin_id))
    ),
    // One conditional upsert: of two processes claiming at once, one gets the row.
    claimDrain: (pluginId, holder, now, until) =>
      sql`INSERT INTO scrobble_drains (plugin_id, holder, lease_until) VALUES (${pluginId}, ${holder}, ${until})
        ON CONFLICT (plugin_id) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until
        WHERE scrobble_drains.holder = excluded.holder OR scrobble_drains.lease_until < ${now}
        RETURNING plugin_id`.pipe(Effect.map((rows) => rows.length > 0)),
    releaseDrain: (pluginId, holder) =>
      sql`UPDATE scrobble_drains SET lease_until = 0 WHERE plugin_id = ${pluginId} AND holder = ${holder}`.pipe(
        Effect.asVoid
      )
  }
})

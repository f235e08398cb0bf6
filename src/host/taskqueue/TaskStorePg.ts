/**
 * The task queues of every plugin in the cluster's PostgreSQL database (decision 0046): one table
 * of queue definitions and one of tasks, keyed by plugin, shared by all nodes.
 *
 * A task taken for running carries a lease (`lease_until`) that the node running it renews while
 * the call lasts. A node that dies stops renewing: once the lease has passed, any node's worker
 * takes the task again as its next attempt (retried per the queue's policy, or failed when no
 * retry is left). Taking a task is one `UPDATE … FOR UPDATE SKIP LOCKED`, so two workers never run
 * the same attempt; the pending-task bounds are checked under a per-plugin transaction lock.
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { migrate } from "../../internal/migrate.js"
import { TaskQueueError } from "./TaskQueueError.js"
import {
  checkBounds,
  type QueueSettings,
  type TaskInfo,
  type TaskStatus,
  type TaskStore
} from "./TaskStore.js"

/** The PostgreSQL schema of the task queues. */
export const migrations = Migrator.fromRecord({
  "0001_taskqueue": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE ndp_task_queues (
      plugin TEXT NOT NULL,
      name TEXT NOT NULL,
      concurrency INTEGER NOT NULL,
      max_retries INTEGER NOT NULL,
      backoff_ms BIGINT NOT NULL,
      delay_ms BIGINT NOT NULL,
      retention_ms BIGINT NOT NULL,
      PRIMARY KEY (plugin, name)
    )`
    yield* sql`CREATE TABLE ndp_tasks (
      plugin TEXT NOT NULL,
      id TEXT NOT NULL,
      queue_name TEXT NOT NULL,
      payload BYTEA NOT NULL,
      status TEXT NOT NULL,
      attempt INTEGER NOT NULL DEFAULT 0,
      max_retries INTEGER NOT NULL,
      next_run_at BIGINT NOT NULL,
      lease_until BIGINT,
      created_at BIGINT NOT NULL,
      updated_at BIGINT NOT NULL,
      message TEXT NOT NULL DEFAULT '',
      PRIMARY KEY (plugin, id)
    )`
    yield* sql`CREATE INDEX ndp_tasks_dequeue ON ndp_tasks (plugin, queue_name, status, next_run_at)`
  })
})

/** Creates the tables when missing (run while the node's layer builds, under its startup lock). */
export const migrateSchema: Effect.Effect<void, SqlError | Migrator.MigrationError, SqlClient.SqlClient> =
  migrate("ndp_taskqueue_migrations", migrations).pipe(Effect.asVoid)

/** How long a taken task stays with its node without a renewal: the failover bound of a task. */
export const defaultLease: Duration.Duration = Duration.seconds(15)

const storageError = (cause: unknown) =>
  new TaskQueueError({
    reason: "Storage",
    message: `task queue storage error: ${cause instanceof Error ? cause.message : String(cause)}; check the PostgreSQL server`,
    cause
  })

// pg answers BIGINT as strings and BYTEA as Buffers.
const toNumber = (value: unknown): number => (value === null || value === undefined ? 0 : Number(value))
const toBytes = (value: Uint8Array): Uint8Array =>
  new Uint8Array(value.buffer, value.byteOffset, value.byteLength)

interface TaskRow {
  readonly id: string
  readonly payload: Uint8Array
  readonly attempt: number
  readonly max_retries: number
}

interface QueueRow {
  readonly concurrency: number
  readonly max_retries: number
  readonly backoff_ms: string | number
  readonly delay_ms: string | number
  readonly retention_ms: string | number
}

/** The task store of `pluginId` on `sql` (whose schema `migrateSchema` created). */
export const make = (
  sql: SqlClient.SqlClient,
  pluginId: string,
  options: { readonly lease?: Duration.DurationInput | undefined } = {}
): TaskStore => {
  const leaseMs = Duration.toMillis(options.lease ?? defaultLease)
  const run = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    effect.pipe(
      sql.withTransaction,
      Effect.mapError((error) => (error instanceof TaskQueueError ? error : storageError(error)))
    )
  // Writers of one plugin's tasks take turns where a bound is checked before the write.
  const lockPlugin = sql`SELECT pg_advisory_xact_lock(hashtext(${`ndp_tasks:${pluginId}`}))`

  const finish = (id: string, status: TaskStatus, message: string, now: number) =>
    run(sql`UPDATE ndp_tasks SET status = ${status}, message = ${message}, lease_until = NULL,
      updated_at = ${now} WHERE plugin = ${pluginId} AND id = ${id}`).pipe(Effect.asVoid)

  return {
    shared: true,
    leaseRenewal: Option.some(Duration.millis(Math.max(Math.floor(leaseMs / 3), 1))),
    defineQueue: (name, s, now) =>
      run(
        Effect.gen(function* () {
          yield* sql`INSERT INTO ndp_task_queues (plugin, name, concurrency, max_retries, backoff_ms, delay_ms, retention_ms)
            VALUES (${pluginId}, ${name}, ${s.concurrency}, ${s.maxRetries}, ${s.backoffMs}, ${s.delayMs}, ${s.retentionMs})
            ON CONFLICT (plugin, name) DO UPDATE SET concurrency = excluded.concurrency,
              max_retries = excluded.max_retries, backoff_ms = excluded.backoff_ms,
              delay_ms = excluded.delay_ms, retention_ms = excluded.retention_ms`
          // Only tasks whose node stopped renewing: another node may be running the rest.
          const rows =
            yield* sql`UPDATE ndp_tasks SET status = 'pending', lease_until = NULL, updated_at = ${now}
            WHERE plugin = ${pluginId} AND queue_name = ${name} AND status = 'running'
              AND lease_until < ${now} RETURNING 1 AS one`
          return rows.length
        })
      ),
    queueSettings: (name) =>
      run(sql<QueueRow>`SELECT concurrency, max_retries, backoff_ms, delay_ms, retention_ms
        FROM ndp_task_queues WHERE plugin = ${pluginId} AND name = ${name}`).pipe(
        Effect.map((rows) =>
          Option.map(Option.fromNullable(rows[0]), (row): QueueSettings => ({
            concurrency: row.concurrency,
            maxRetries: row.max_retries,
            backoffMs: toNumber(row.backoff_ms),
            delayMs: toNumber(row.delay_ms),
            retentionMs: toNumber(row.retention_ms)
          }))
        )
      ),
    insert: (task, bounds, now) =>
      run(
        Effect.gen(function* () {
          yield* lockPlugin
          const [queue] = yield* sql<{ readonly n: string }>`SELECT count(*) AS n FROM ndp_tasks
            WHERE plugin = ${pluginId} AND queue_name = ${task.queue} AND status = 'pending'`
          const [all] = yield* sql<{
            readonly bytes: string
          }>`SELECT coalesce(sum(length(payload)), 0) AS bytes
            FROM ndp_tasks WHERE plugin = ${pluginId} AND status = 'pending'`
          yield* checkBounds(task, bounds, toNumber(queue?.n), toNumber(all?.bytes))
          yield* sql`INSERT INTO ndp_tasks (plugin, id, queue_name, payload, status, attempt, max_retries, next_run_at, created_at, updated_at)
            VALUES (${pluginId}, ${task.id}, ${task.queue}, ${Buffer.from(task.payload)}, 'pending', 0, ${task.maxRetries}, ${now}, ${now}, ${now})`
        })
      ),
    dequeue: (queue, now) =>
      run(
        Effect.gen(function* () {
          // A task whose node stopped with no retry left fails here rather than running again.
          yield* sql`UPDATE ndp_tasks SET status = 'failed', lease_until = NULL, updated_at = ${now},
            message = 'the node running it stopped, and no retry is left'
            WHERE plugin = ${pluginId} AND queue_name = ${queue} AND status = 'running'
              AND lease_until < ${now} AND attempt > max_retries`
          const rows = yield* sql<TaskRow>`UPDATE ndp_tasks SET status = 'running', attempt = attempt + 1,
              lease_until = ${now + leaseMs}, updated_at = ${now}
            WHERE plugin = ${pluginId} AND id = (SELECT id FROM ndp_tasks
              WHERE plugin = ${pluginId} AND queue_name = ${queue}
                AND ((status = 'pending' AND next_run_at <= ${now}) OR (status = 'running' AND lease_until < ${now}))
              ORDER BY next_run_at, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING id, payload, attempt, max_retries`
          return Option.map(Option.fromNullable(rows[0]), (row) => ({
            id: row.id,
            payload: toBytes(row.payload),
            attempt: row.attempt,
            maxRetries: row.max_retries
          }))
        })
      ),
    nextDue: (queue) =>
      run(sql<{ readonly at: string | null }>`SELECT min(CASE WHEN status = 'pending' THEN next_run_at
          ELSE lease_until END) AS at FROM ndp_tasks
        WHERE plugin = ${pluginId} AND queue_name = ${queue}
          AND (status = 'pending' OR (status = 'running' AND lease_until IS NOT NULL))`).pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]?.at), toNumber))
      ),
    renew: (id, now) =>
      run(sql`UPDATE ndp_tasks SET lease_until = ${now + leaseMs}
        WHERE plugin = ${pluginId} AND id = ${id} AND status = 'running'`).pipe(Effect.asVoid),
    complete: (id, message, now) => finish(id, "completed", message, now),
    fail: (id, message, now) => finish(id, "failed", message, now),
    retryAt: (id, message, runAt, now) =>
      run(sql`UPDATE ndp_tasks SET status = 'pending', message = ${message}, next_run_at = ${runAt},
        lease_until = NULL, updated_at = ${now} WHERE plugin = ${pluginId} AND id = ${id}`).pipe(
        Effect.asVoid
      ),
    revert: (id, now) =>
      run(
        Option.match(id, {
          // Every node shares the table: "all" is only what no node holds any more.
          onNone: () => sql`UPDATE ndp_tasks SET status = 'pending', attempt = greatest(attempt - 1, 0),
            lease_until = NULL, updated_at = ${now}
            WHERE plugin = ${pluginId} AND status = 'running' AND lease_until < ${now} RETURNING 1 AS one`,
          onSome: (one) => sql`UPDATE ndp_tasks SET status = 'pending', attempt = greatest(attempt - 1, 0),
            lease_until = NULL, updated_at = ${now}
            WHERE plugin = ${pluginId} AND id = ${one} AND status = 'running' RETURNING 1 AS one`
        })
      ).pipe(Effect.map((rows) => rows.length)),
    get: (id) =>
      run(sql<TaskInfo>`SELECT status, message, attempt FROM ndp_tasks
        WHERE plugin = ${pluginId} AND id = ${id}`).pipe(Effect.map((rows) => Option.fromNullable(rows[0]))),
    cancel: (id, now) =>
      run(
        Effect.gen(function* () {
          const [row] = yield* sql<{ readonly status: TaskStatus }>`SELECT status FROM ndp_tasks
            WHERE plugin = ${pluginId} AND id = ${id} FOR UPDATE`
          if (row?.status === "pending") {
            yield* sql`UPDATE ndp_tasks SET status = 'cancelled', updated_at = ${now}
              WHERE plugin = ${pluginId} AND id = ${id}`
          }
          return Option.map(Option.fromNullable(row), (r) => r.status)
        })
      ),
    clear: (queue, now) =>
      run(sql`UPDATE ndp_tasks SET status = 'cancelled', updated_at = ${now}
        WHERE plugin = ${pluginId} AND queue_name = ${queue} AND status = 'pending' RETURNING 1 AS one`).pipe(
        Effect.map((rows) => rows.length)
      ),
    cleanup: (queue, retentionMs, now) =>
      run(sql`DELETE FROM ndp_tasks WHERE plugin = ${pluginId} AND queue_name = ${queue}
        AND status IN ('completed', 'failed', 'cancelled') AND updated_at + ${retentionMs} < ${now}
        RETURNING 1 AS one`).pipe(Effect.map((rows) => rows.length))
  }
}

/**
 * Where one plugin's task queues persist: the repository the TaskQueue service talks to, and its
 * SQLite implementation, one file per plugin (`<dataFolder>/plugins/<id>/taskqueue.db`, the name
 * Navidrome uses), in WAL mode with `synchronous = FULL`. The service sees only `TaskStore`, so the
 * tables can move into the engine's shared storage service without touching the queue logic.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { migrate } from "../../internal/migrate.js"
import { TaskQueueError } from "./TaskQueueError.js"

/** A task's state as `task_get` reports it. */
export type TaskStatus = "pending" | "running" | "completed" | "failed" | "cancelled"

/** A queue's settings after defaults and clamping. */
export interface QueueSettings {
  readonly concurrency: number
  readonly maxRetries: number
  readonly backoffMs: number
  readonly delayMs: number
  readonly retentionMs: number
}

/** A task taken for running: its attempt is already counted. */
export interface DequeuedTask {
  readonly id: string
  readonly payload: Uint8Array
  readonly attempt: number
  readonly maxRetries: number
}

/** What `task_get` answers. */
export interface TaskInfo {
  readonly status: TaskStatus
  readonly message: string
  readonly attempt: number
}

/** The bounds `insert` checks in the same transaction as the insert. */
export interface InsertBounds {
  readonly maxPendingPerQueue: number
  readonly maxPendingBytes: number
}

/** One plugin's tasks and queue definitions. Every operation runs in one transaction. */
export interface TaskStore {
  /**
   * Shared by the nodes of a cluster (`TaskStorePg`): a queue defined on one node is known to all,
   * and a taken task is leased to its node, which renews the lease every `leaseRenewal` while the
   * task runs.
   */
  readonly shared: boolean
  readonly leaseRenewal: Option.Option<Duration.Duration>
  /** Keeps a running task with this node (a shared store's lease). */
  readonly renew: (id: string, now: number) => Effect.Effect<void, TaskQueueError>
  /** The settings a queue was last defined with, on any node (shared stores only). */
  readonly queueSettings: (name: string) => Effect.Effect<Option.Option<QueueSettings>, TaskQueueError>
  /** Saves the queue's settings and puts its tasks left `running` (a crash) back to `pending`. */
  readonly defineQueue: (
    name: string,
    settings: QueueSettings,
    now: number
  ) => Effect.Effect<number, TaskQueueError>
  /** Adds a pending task unless the queue or the plugin is at a bound (then the refusal, and nothing added). */
  readonly insert: (
    task: {
      readonly id: string
      readonly queue: string
      readonly payload: Uint8Array
      readonly maxRetries: number
    },
    bounds: InsertBounds,
    now: number
  ) => Effect.Effect<void, TaskQueueError>
  /** Takes the queue's next due pending task, marking it running and counting the attempt. */
  readonly dequeue: (queue: string, now: number) => Effect.Effect<Option.Option<DequeuedTask>, TaskQueueError>
  /** When the queue's earliest pending task is due, if it has one. */
  readonly nextDue: (queue: string) => Effect.Effect<Option.Option<number>, TaskQueueError>
  readonly complete: (id: string, message: string, now: number) => Effect.Effect<void, TaskQueueError>
  readonly fail: (id: string, message: string, now: number) => Effect.Effect<void, TaskQueueError>
  readonly retryAt: (
    id: string,
    message: string,
    runAt: number,
    now: number
  ) => Effect.Effect<void, TaskQueueError>
  /** Puts running tasks (one, or all) back to pending without counting the attempt they were in. */
  readonly revert: (id: Option.Option<string>, now: number) => Effect.Effect<number, TaskQueueError>
  readonly get: (id: string) => Effect.Effect<Option.Option<TaskInfo>, TaskQueueError>
  /** Cancels a pending task: the status it had (`pending` when it is now cancelled), none when unknown. */
  readonly cancel: (id: string, now: number) => Effect.Effect<Option.Option<TaskStatus>, TaskQueueError>
  /** Cancels every pending task of the queue; how many. */
  readonly clear: (queue: string, now: number) => Effect.Effect<number, TaskQueueError>
  /** Deletes the queue's finished tasks older than `retentionMs`; how many. */
  readonly cleanup: (queue: string, retentionMs: number, now: number) => Effect.Effect<number, TaskQueueError>
}

const migrations = Migrator.fromRecord({
  "0001_taskqueue": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE queues (
      name TEXT PRIMARY KEY,
      concurrency INTEGER NOT NULL,
      max_retries INTEGER NOT NULL,
      backoff_ms INTEGER NOT NULL,
      delay_ms INTEGER NOT NULL,
      retention_ms INTEGER NOT NULL
    )`
    yield* sql`CREATE TABLE tasks (
      id TEXT PRIMARY KEY,
      queue_name TEXT NOT NULL,
      payload BLOB NOT NULL,
      status TEXT NOT NULL,
      attempt INTEGER NOT NULL DEFAULT 0,
      max_retries INTEGER NOT NULL,
      next_run_at INTEGER NOT NULL,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      message TEXT NOT NULL DEFAULT ''
    )`
    yield* sql`CREATE INDEX tasks_dequeue ON tasks (queue_name, status, next_run_at)`
  })
})

/** Refuses a task that would pass the queue's or the plugin's pending bounds (every backend). */
export const checkBounds = (
  task: { readonly queue: string; readonly payload: Uint8Array },
  bounds: InsertBounds,
  pendingInQueue: number,
  pendingBytes: number
): Effect.Effect<void, TaskQueueError> => {
  if (pendingInQueue >= bounds.maxPendingPerQueue) {
    return new TaskQueueError({
      reason: "LimitReached",
      message:
        `queue "${task.queue}" already holds ${bounds.maxPendingPerQueue} pending tasks, the most allowed: ` +
        `wait for some to run (task_get) or clear the queue (task_clearqueue)`
    })
  }
  if (pendingBytes + task.payload.byteLength > bounds.maxPendingBytes) {
    return new TaskQueueError({
      reason: "LimitReached",
      message:
        `the plugin's pending tasks already hold ${pendingBytes} payload bytes; adding ${task.payload.byteLength} ` +
        `would pass the limit of ${bounds.maxPendingBytes}: keep large data in the KV store and enqueue its key`
    })
  }
  return Effect.void
}

const storageError = (cause: unknown) =>
  new TaskQueueError({
    reason: "Storage",
    message: `task queue storage error: ${cause instanceof Error ? cause.message : String(cause)}`,
    cause
  })

interface TaskRow {
  readonly id: string
  readonly payload: Uint8Array
  readonly attempt: number
  readonly max_retries: number
}

/** Opens (creating when needed) the SQLite store at `filename` in the current scope. */
export const sqlite = (filename: string): Effect.Effect<TaskStore, TaskQueueError, Scope.Scope> =>
  Effect.gen(function* () {
    yield* Effect.try({ try: () => mkdirSync(dirname(filename), { recursive: true }), catch: storageError })
    const sql = yield* SqliteClient.make({ filename }).pipe(Effect.provide(Reactivity.layer))
    yield* sql`PRAGMA synchronous = FULL`
    yield* migrate("taskqueue_migrations", migrations).pipe(Effect.provideService(SqlClient.SqlClient, sql))

    const run = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(
        sql.withTransaction,
        Effect.mapError((error) => (error instanceof TaskQueueError ? error : storageError(error)))
      )

    const setStatus = (id: string, status: TaskStatus, message: string, now: number) =>
      run(
        sql`UPDATE tasks SET status = ${status}, message = ${message}, updated_at = ${now} WHERE id = ${id}`
      ).pipe(Effect.asVoid)

    return {
      shared: false,
      leaseRenewal: Option.none(),
      renew: () => Effect.void,
      queueSettings: () => Effect.succeed(Option.none()),
      defineQueue: (name, s, now) =>
        run(
          Effect.gen(function* () {
            yield* sql`INSERT INTO queues (name, concurrency, max_retries, backoff_ms, delay_ms, retention_ms)
              VALUES (${name}, ${s.concurrency}, ${s.maxRetries}, ${s.backoffMs}, ${s.delayMs}, ${s.retentionMs})
              ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
                max_retries = excluded.max_retries, backoff_ms = excluded.backoff_ms,
                delay_ms = excluded.delay_ms, retention_ms = excluded.retention_ms`
            const rows = yield* sql`UPDATE tasks SET status = 'pending', updated_at = ${now}
              WHERE queue_name = ${name} AND status = 'running' RETURNING 1 AS one`
            return rows.length
          })
        ),
      insert: (task, bounds, now) =>
        run(
          Effect.gen(function* () {
            const [queue] = yield* sql<{ readonly n: number }>`SELECT count(*) AS n FROM tasks
              WHERE queue_name = ${task.queue} AND status = 'pending'`
            const pendingInQueue = queue?.n ?? 0
            const [all] = yield* sql<{
              readonly bytes: number
            }>`SELECT coalesce(sum(length(payload)), 0) AS bytes
              FROM tasks WHERE status = 'pending'`
            yield* checkBounds(task, bounds, pendingInQueue, all?.bytes ?? 0)
            yield* sql`INSERT INTO tasks (id, queue_name, payload, status, attempt, max_retries, next_run_at, created_at, updated_at)
              VALUES (${task.id}, ${task.queue}, ${task.payload}, 'pending', 0, ${task.maxRetries}, ${now}, ${now}, ${now})`
          })
        ),
      dequeue: (queue, now) =>
        run(sql<TaskRow>`UPDATE tasks SET status = 'running', attempt = attempt + 1, updated_at = ${now}
          WHERE id = (SELECT id FROM tasks WHERE queue_name = ${queue} AND status = 'pending'
            AND next_run_at <= ${now} ORDER BY next_run_at, created_at LIMIT 1)
          RETURNING id, payload, attempt, max_retries`).pipe(
          Effect.map((rows) =>
            Option.map(Option.fromNullable(rows[0]), (row) => ({
              id: row.id,
              payload: row.payload,
              attempt: row.attempt,
              maxRetries: row.max_retries
            }))
          )
        ),
      nextDue: (queue) =>
        run(sql<{ readonly at: number | null }>`SELECT min(next_run_at) AS at FROM tasks
          WHERE queue_name = ${queue} AND status = 'pending'`).pipe(
          Effect.map((rows) => Option.fromNullable(rows[0]?.at))
        ),
      complete: (id, message, now) => setStatus(id, "completed", message, now),
      fail: (id, message, now) => setStatus(id, "failed", message, now),
      retryAt: (id, message, runAt, now) =>
        run(sql`UPDATE tasks SET status = 'pending', message = ${message}, next_run_at = ${runAt},
          updated_at = ${now} WHERE id = ${id}`).pipe(Effect.asVoid),
      revert: (id, now) =>
        run(
          Option.match(id, {
            onNone: () => sql`UPDATE tasks SET status = 'pending', attempt = max(attempt - 1, 0),
              updated_at = ${now} WHERE status = 'running' RETURNING 1 AS one`,
            onSome: (one) => sql`UPDATE tasks SET status = 'pending', attempt = max(attempt - 1, 0),
              updated_at = ${now} WHERE id = ${one} AND status = 'running' RETURNING 1 AS one`
          })
        ).pipe(Effect.map((rows) => rows.length)),
      get: (id) =>
        run(sql<TaskInfo>`SELECT status, message, attempt FROM tasks WHERE id = ${id}`).pipe(
          Effect.map((rows) => Option.fromNullable(rows[0]))
        ),
      cancel: (id, now) =>
        run(
          Effect.gen(function* () {
            const [row] = yield* sql<{
              readonly status: TaskStatus
            }>`SELECT status FROM tasks WHERE id = ${id}`
            if (row?.status === "pending") {
              yield* sql`UPDATE tasks SET status = 'cancelled', updated_at = ${now} WHERE id = ${id}`
            }
            return Option.map(Option.fromNullable(row), (r) => r.status)
          })
        ),
      clear: (queue, now) =>
        run(sql`UPDATE tasks SET status = 'cancelled', updated_at = ${now}
          WHERE queue_name = ${queue} AND status = 'pending' RETURNING 1 AS one`).pipe(
          Effect.map((rows) => rows.length)
        ),
      cleanup: (queue, retentionMs, now) =>
        run(sql`DELETE FROM tasks WHERE queue_name = ${queue}
          AND status IN ('completed', 'failed', 'cancelled') AND updated_at + ${retentionMs} < ${now}
          RETURNING 1 AS one`).pipe(Effect.map((rows) => rows.length))
    } satisfies TaskStore
  }).pipe(
    Effect.mapError((error) => (error instanceof TaskQueueError ? error : storageError(error))),
    // better-sqlite3 throws from its constructor (unopenable file), which the client does not type.
    Effect.catchAllDefect((defect) => Effect.fail(storageError(defect)))
  )

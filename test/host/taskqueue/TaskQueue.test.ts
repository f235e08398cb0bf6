/**
 * The TaskQueue host service through the real path: the host-taskqueue fixture creates queues,
 * enqueues and inspects tasks from inside Wasm, and the host runs them through its
 * nd_task_execute. Time is the TestClock: backoff and spacing move only when the test says so.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { expect, layer, type Vitest } from "@effect/vitest"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Exit from "effect/Exit"
import * as TestClock from "effect/TestClock"
import { HostFunctions } from "../../../src/host/HostFunctions.js"
import * as KvStoreService from "../../../src/host/kvstore/KvStoreService.js"
import * as TaskStorePg from "../../../src/host/taskqueue/TaskStorePg.js"
import { backoffFor, maxPayloadBytes, storeFile } from "../../../src/host/taskqueue/TaskQueueService.js"
import { type LoadedPlugin, type LoadOptions, PluginLoader } from "../../../src/loader/PluginLoader.js"
import { WasmRuntime } from "../../../src/runtime/WasmRuntime.js"
import { testEngine } from "../../support/engine.js"
import { fixture } from "../../support/fixtures.js"
import { alongsideHealthy, loadHealthy } from "../../support/neighbour.js"
import { repackage } from "../../support/repackage.js"
import { postgresServer } from "../../support/postgres.js"
import { realSleep } from "../../support/wait.js"
import { b64, withRawDb } from "../kvstore/support.js"

const decoder = new TextDecoder()

type Answer = Record<string, unknown> & {
  readonly error?: string
  readonly result?: unknown
}

const driver = (plugin: LoadedPlugin) => {
  const call = (fn: string, request: unknown) =>
    Effect.map(
      plugin.call(fn, JSON.stringify(request)),
      (bytes) => JSON.parse(decoder.decode(bytes!)) as Answer
    )
  const host = (fn: string, request: unknown) => call(`call_task_${fn}`, request)
  const enqueue = (queueName: string, payload: string) =>
    Effect.map(host("enqueue", { queueName, payload: b64(payload) }), (answer) => {
      expect(answer.error).toBeUndefined()
      return answer.result as string
    })
  const get = (taskId: string) => host("get", { taskId })
  /**
   * Polls task_get until the task has `status` (60 s of real time at most), moving the TestClock by
   * `step` between polls so that backoffs and start spacing pass; returns its info.
   */
  const settled = (taskId: string, status: string, step: Duration.DurationInput = "0 millis") =>
    Effect.gen(function* () {
      const deadline = Date.now() + 60_000
      for (;;) {
        const answer = yield* get(taskId)
        const info = answer.result as { status: string; message: string; attempt: number } | undefined
        if (info?.status === status) return info
        if (Date.now() > deadline)
          return yield* Effect.dieMessage(`task ${taskId} never became ${status}: ${JSON.stringify(answer)}`)
        yield* TestClock.adjust(step)
        yield* realSleep(20)
      }
    })
  return { call, host, enqueue, get, settled }
}

const load = (options: LoadOptions = {}) =>
  Effect.flatMap(PluginLoader, (loader) => loader.loadFile(fixture("host-taskqueue"), options))

type Backend = "sqlite" | "postgres"

/** The rules every backend keeps; the SQLite store's own file is looked at only on SQLite. */
const suite = (
  it: Vitest.MethodsNonLive<Layer.Layer.Success<ReturnType<typeof testEngine>>>,
  backend: Backend
) => {
  it.scoped("runs enqueued tasks through nd_task_execute and keeps each one's message", () =>
    Effect.gen(function* () {
      const tq = driver(yield* load())
      expect(yield* tq.host("createqueue", { name: "work", config: {} })).toEqual({})
      const id = yield* tq.enqueue("work", "hello")
      expect(id).toMatch(/^[0-9A-Za-z]{22}$/)
      const other = yield* tq.enqueue("work", "")
      expect(other).not.toBe(id)
      expect(yield* tq.settled(id, "completed")).toEqual({
        status: "completed",
        message: `done work ${b64("hello")} 1`,
        attempt: 1
      })
      expect((yield* tq.settled(other, "completed")).message).toBe("done work  1")
      expect((yield* tq.get("no-such-task")).error).toBe('task "no-such-task" not found')
    })
  )

  it.scoped("retries with exponential backoff, then fails with the plugin's error", () =>
    Effect.gen(function* () {
      expect([1, 2, 3, 13].map((attempt) => backoffFor(1000, attempt))).toEqual([1000, 2000, 4000, 3_600_000])
      const tq = driver(yield* load())
      expect(
        yield* tq.host("createqueue", { name: "flaky", config: { maxRetries: 3, backoffMs: 1000 } })
      ).toEqual({})
      expect(
        yield* tq.host("createqueue", { name: "fail", config: { maxRetries: 1, backoffMs: 500 } })
      ).toEqual({})
      const flaky = yield* tq.enqueue("flaky", "f")
      const failing = yield* tq.enqueue("fail", "x")
      expect(yield* tq.settled(flaky, "completed", "250 millis")).toEqual({
        status: "completed",
        message: `done flaky ${b64("f")} 3`,
        attempt: 3
      })
      expect(yield* tq.settled(failing, "failed", "250 millis")).toEqual({
        status: "failed",
        message: "failed on purpose, attempt 2",
        attempt: 2
      })
    })
  )

  it.scoped(
    "concurrency is cut to what maxConcurrency leaves; none left, a duplicate or a bad name is an error",
    () =>
      Effect.gen(function* () {
        const tq = driver(yield* load())
        expect(yield* tq.host("createqueue", { name: "a", config: { concurrency: 2 } })).toEqual({})
        expect((yield* tq.host("createqueue", { name: "a", config: {} })).error).toBe(
          'queue "a" already exists'
        )
        // The manifest allows 3: "b" asks for 5 and gets the 1 left.
        expect(yield* tq.host("createqueue", { name: "b", config: { concurrency: 5 } })).toEqual({})
        expect((yield* tq.host("createqueue", { name: "c", config: {} })).error).toContain(
          "concurrency budget exhausted (3/3 allocated)"
        )
        expect((yield* tq.host("createqueue", { name: "", config: {} })).error).toContain("1 to 128 bytes")
        expect((yield* tq.host("createqueue", { name: "x".repeat(129) })).error).toContain("got 129")
        expect((yield* tq.host("enqueue", { queueName: "nope", payload: "" })).error).toContain(
          'queue "nope" does not exist'
        )
        const big = Buffer.alloc(maxPayloadBytes + 1).toString("base64")
        expect((yield* tq.host("enqueue", { queueName: "a", payload: big })).error).toContain(
          `exceeds the maximum of ${maxPayloadBytes} bytes`
        )
      })
  )

  it.scoped(
    "cancel takes only pending tasks; clearqueue cancels every pending one; delayMs spaces starts",
    () =>
      Effect.gen(function* () {
        const tq = driver(yield* load())
        expect(yield* tq.host("createqueue", { name: "spaced", config: { delayMs: 3_600_000 } })).toEqual({})
        const [first, second, third, fourth] = [
          yield* tq.enqueue("spaced", "1"),
          yield* tq.enqueue("spaced", "2"),
          yield* tq.enqueue("spaced", "3"),
          yield* tq.enqueue("spaced", "4")
        ]
        expect((yield* tq.settled(first!, "completed")).attempt).toBe(1)
        // The next start is an hour away: until then every other task stays pending, and cancellable.
        expect(yield* tq.host("cancel", { taskId: third })).toEqual({})
        expect((yield* tq.get(third!)).result).toEqual({ status: "cancelled", message: "", attempt: 0 })
        expect((yield* tq.host("cancel", { taskId: first })).error).toBe(
          `task "${first}" cannot be cancelled (status: completed)`
        )
        expect((yield* tq.host("cancel", { taskId: third })).error).toContain("(status: cancelled)")
        expect((yield* tq.host("cancel", { taskId: "nope" })).error).toBe('task "nope" not found')
        yield* realSleep(200)
        expect((yield* tq.get(second!)).result).toMatchObject({ status: "pending", attempt: 0 })
        expect(yield* tq.host("clearqueue", { queueName: "spaced" })).toEqual({ result: 2 })
        expect((yield* tq.get(fourth!)).result).toMatchObject({ status: "cancelled" })
        expect(yield* tq.host("clearqueue", { queueName: "spaced" })).toEqual({})
        const fifth = yield* tq.enqueue("spaced", "5")
        expect((yield* tq.settled(fifth, "completed", "10 minutes")).message).toBe(
          `done spaced ${b64("5")} 1`
        )
      })
  )

  it.scoped.skipIf(backend === "postgres")(
    "tasks are durable across loads; a crash's running tasks run again when the queue is re-created",
    () =>
      Effect.gen(function* () {
        const { dataFolder } = yield* HostFunctions
        const file = storeFile(dataFolder, "host-taskqueue")
        const keep = { init_queue: "keep", init_config: JSON.stringify({ delayMs: 3_600_000 }) }
        // First load: one task runs at once, the next waits an hour for its start.
        const scope = yield* Scope.make()
        const first = driver(yield* Scope.extend(load({ config: keep }), scope))
        const done = yield* first.enqueue("keep", "a")
        const waiting = yield* first.enqueue("keep", "b")
        yield* first.settled(done, "completed")
        yield* Scope.close(scope, Exit.void)

        // Second load, no queue defined: both tasks are kept as they were.
        const second = driver(yield* load())
        expect((yield* second.get(done)).result).toEqual({
          status: "completed",
          message: `done keep ${b64("a")} 1`,
          attempt: 1
        })
        expect((yield* second.get(waiting)).result).toEqual({ status: "pending", message: "", attempt: 0 })

        // As if the process had died mid-task: the row says running. Re-creating the queue recovers it.
        yield* withRawDb(
          file,
          (sql) => sql`UPDATE tasks SET status = 'running', attempt = 1 WHERE id = ${waiting}`
        )
        const third = driver(yield* load({ config: keep }))
        expect(yield* third.settled(waiting, "completed")).toEqual({
          status: "completed",
          message: `done keep ${b64("b")} 2`,
          attempt: 2
        })
      }),
    180_000
  )

  it.scoped("a plugin cannot create a queue without the permission, nor load without nd_task_execute", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const without = yield* Effect.flip(
        loader.loadBytes(
          "tq-no-permission",
          repackage("host-taskqueue", (m) => ({ ...m, permissions: {} }))
        )
      )
      expect(without.message).toContain("task_createqueue")
      expect(without.message).toContain("taskqueue")
      const noWorker = yield* Effect.flip(
        loader.loadBytes(
          "tq-no-worker",
          repackage("host-scheduler", (m) => ({
            ...m,
            permissions: { ...(m.permissions as object), taskqueue: {} }
          }))
        )
      )
      expect(noWorker.message).toContain(
        '"taskqueue" permission requires the plugin to export nd_task_execute'
      )
    })
  )
}

layer(testEngine({ runtime: { poolSize: 2 } }))("TaskQueue host service", (it) => suite(it, "sqlite"))

/** The engine as one node of a cluster: its queues in the shared PostgreSQL schema. */
const onPostgres = (options: Parameters<typeof testEngine>[0] = { runtime: { poolSize: 2 } }) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const server = yield* postgresServer
      const sql = yield* PgClient.make({ url: Redacted.make(server.url) })
      yield* TaskStorePg.migrateSchema.pipe(Effect.provideService(SqlClient.SqlClient, sql))
      return testEngine(options).pipe(Layer.provideMerge(Layer.succeed(KvStoreService.SharedDatabase, sql)))
    }).pipe(Effect.provide(Reactivity.layer), Effect.orDie)
  )

layer(onPostgres(), { timeout: 120_000 })("TaskQueue host service on PostgreSQL", (it) => {
  suite(it, "postgres")

  it.scoped(
    "a task whose node stopped renewing its lease is taken again as its next attempt; queues are known to every node",
    () =>
      Effect.gen(function* () {
        const sql = yield* KvStoreService.SharedDatabase
        const tq = driver(yield* load())
        expect(
          yield* tq.host("createqueue", { name: "leased", config: { maxRetries: 2, delayMs: 3_600_000 } })
        ).toEqual({})
        const first = yield* tq.enqueue("leased", "a")
        yield* tq.settled(first, "completed")
        // The next start is an hour away, so this one waits: make it look taken by a node that died.
        const orphan = yield* tq.enqueue("leased", "b")
        yield* sql`UPDATE ndp_tasks SET status = 'running', attempt = 1, lease_until = -1
          WHERE plugin = 'host-taskqueue' AND id = ${orphan}`
        expect(yield* tq.settled(orphan, "completed", "10 minutes")).toEqual({
          status: "completed",
          message: `done leased ${b64("b")} 2`,
          attempt: 2
        })
        // Another node, which never created the queue, enqueues into it; this node's worker runs it.
        const otherNode = testEngine({ runtime: { poolSize: 1 } }).pipe(
          Layer.provide(Layer.succeed(KvStoreService.SharedDatabase, sql))
        )
        const third = yield* Effect.gen(function* () {
          const other = driver(yield* load())
          const id = yield* other.enqueue("leased", "c")
          expect((yield* other.get(id)).result).toMatchObject({ status: "pending" })
          return id
        }).pipe(Effect.provide(otherNode), Effect.scoped)
        expect((yield* tq.settled(third, "completed", "10 minutes")).message).toBe(
          `done leased ${b64("c")} 1`
        )
      }),
    180_000
  )
})

const floodLimits = {
  runtime: { poolSize: 2 },
  taskqueue: { maxPendingPerQueue: 50, maxPendingBytes: 3 * 1024 * 1024, maxQueues: 2 }
}

const floodSuite = (it: Vitest.MethodsNonLive<Layer.Layer.Success<ReturnType<typeof testEngine>>>) => {
  it.scoped(
    "a flood stops at the per-queue bound while a healthy plugin keeps answering",
    () =>
      Effect.gen(function* () {
        const healthy = yield* loadHealthy
        const tq = driver(yield* load())
        expect(yield* tq.host("createqueue", { name: "held", config: { delayMs: 3_600_000 } })).toEqual({})
        const outcome = yield* alongsideHealthy(
          healthy,
          tq.call("flood", { queueName: "held", count: 100_000 })
        )
        if (outcome._tag === "Left") return expect.fail(outcome.left.message)
        const { enqueued, error } = outcome.right as { enqueued: number; error: string }
        // 50 pending, plus the first if it had already started (at once: its slot was free).
        expect(enqueued).toBeGreaterThanOrEqual(50)
        expect(enqueued).toBeLessThanOrEqual(51)
        expect(error).toContain('queue \\"held\\" already holds 50 pending tasks')
        // Bounds on queues per plugin and pending payload bytes.
        expect(yield* tq.host("createqueue", { name: "bulk", config: { delayMs: 3_600_000 } })).toEqual({})
        expect((yield* tq.host("createqueue", { name: "third", config: {} })).error).toContain(
          "already has 2 queues"
        )
        const cleared = (yield* tq.host("clearqueue", { queueName: "held" })).result as number
        expect(cleared).toBeGreaterThanOrEqual(49)
        expect(cleared).toBeLessThanOrEqual(50)
        const mib = Buffer.alloc(1024 * 1024).toString("base64")
        let refusal = ""
        for (let i = 0; i < 10 && refusal === ""; i++) {
          refusal = (yield* tq.host("enqueue", { queueName: "bulk", payload: mib })).error ?? ""
        }
        expect(refusal).toContain(`would pass the limit of ${3 * 1024 * 1024}`)
      }),
    180_000
  )
}

layer(testEngine(floodLimits))("TaskQueue limits against a flooding plugin", floodSuite)

// The same bounds hold when the queues are the cluster's, in PostgreSQL.
layer(onPostgres(floodLimits), { timeout: 120_000 })(
  "TaskQueue limits against a flooding plugin, on PostgreSQL",
  floodSuite
)

// Real time here: the grace must pass while the task really runs.
layer(testEngine({ runtime: { poolSize: 2 }, taskqueue: { shutdownGrace: "500 millis" } }), {
  excludeTestServices: true
})("TaskQueue unload with a task still running", (it) => {
  it.scoped(
    "after the grace the running task goes back to pending, its attempt uncounted, and runs on the next load",
    () =>
      Effect.gen(function* () {
        const { dataFolder } = yield* HostFunctions
        const file = storeFile(dataFolder, "host-taskqueue")
        const loopQueue = { init_queue: "loop", init_config: "{}" }
        const healthy = yield* loadHealthy
        const scope = yield* Scope.make()
        // A call timeout far past the test's own: the unload must not wait for it.
        const first = driver(yield* Scope.extend(load({ config: loopQueue, timeoutMs: 600_000 }), scope))
        const id = yield* first.enqueue("loop", "p")
        const row = () =>
          Effect.map(
            withRawDb(
              file,
              (sql) =>
                sql<{ status: string; attempt: number }>`SELECT status, attempt FROM tasks WHERE id = ${id}`
            ),
            (rows) => rows[0]
          )
        // Read from the store itself: the looping task holds the one worker this plugin may use.
        const deadline = Date.now() + 60_000
        while ((yield* row())?.status !== "running") {
          if (Date.now() > deadline) return expect.fail("the task never started")
          yield* realSleep(20)
        }
        expect((yield* row())?.attempt).toBe(1)
        const outcome = yield* alongsideHealthy(healthy, Scope.close(scope, Exit.void))
        expect(outcome._tag).toBe("Right")
        expect(yield* row()).toEqual({ status: "pending", attempt: 0 })
        // The looping call itself ends with its plugin, instead of holding a worker to its timeout.
        const runtime = yield* WasmRuntime
        const freed = Date.now() + 60_000
        while ((yield* runtime.poolStats).busy > 0) {
          if (Date.now() > freed) return expect.fail("the unloaded plugin's call still holds a worker")
          yield* realSleep(20)
        }

        const second = driver(yield* load({ config: { ...loopQueue, no_loop: "true" } }))
        expect(yield* second.settled(id, "completed")).toEqual({
          status: "completed",
          message: `done loop ${b64("p")} 1`,
          attempt: 1
        })
      }),
    180_000
  )
})

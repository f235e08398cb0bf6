/**
 * The TaskQueue host service (`taskqueue`): durable named queues per plugin whose tasks the host
 * runs by calling the plugin's `nd_task_execute {queueName, taskId, payload (base64), attempt}`; the
 * JSON string it returns is stored as the task's message, an error makes the task retry or fail.
 *
 * Tasks persist in the plugin's `TaskStore`; queue definitions do not outlive a load: the plugin
 * re-creates its queues on each load (usually in `nd_on_init`), which also puts tasks a crash left
 * `running` back to `pending`. Each queue runs `concurrency` worker fibers in the plugin's services
 * scope; the concurrencies of a plugin's queues add up to at most `taskqueue.maxConcurrency` (a
 * request is cut to what is left, nothing left is an error). Retries back off
 * `backoffMs · 2^(attempt−1)`, at most 1 h; `delayMs` spaces the starts of a queue's tasks (a task
 * waiting for its start stays pending); finished
 * tasks are kept `retentionMs` (1 min … 1 week), then cleaned up periodically.
 *
 * Against flooding: at most `maxQueues` queues per plugin, `maxPendingPerQueue` pending tasks per
 * queue, `maxPendingBytes` of pending payloads per plugin, payloads of at most 1 MiB.
 *
 * On unload, workers take no new task and running ones get `shutdownGrace` to finish; what still
 * runs then is interrupted and put back to `pending` without counting the attempt.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { identity } from "effect/Function"
import * as Layer from "effect/Layer"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { join } from "node:path"
import { randomBase62 } from "../../internal/Ids.js"
import {
  Bytes,
  encodeError,
  encodeResponseAsIs,
  type HostFunctionHandler,
  hostFunction,
  toBase64
} from "../HostCodec.js"
import * as KvStoreService from "../kvstore/KvStoreService.js"
import { define, type HostServiceProvider, type PluginContext } from "../HostProvider.js"
import { TaskQueueError } from "./TaskQueueError.js"
import * as TaskStore from "./TaskStore.js"
import * as TaskStorePg from "./TaskStorePg.js"

/** Limits of the task queue, per plugin. */
export interface TaskQueueOptions {
  /** The most queues one plugin may define in one load. */
  readonly maxQueues: number
  /** The most pending tasks one queue may hold. */
  readonly maxPendingPerQueue: number
  /** The most payload bytes the plugin's pending tasks may hold together. */
  readonly maxPendingBytes: number
  /** How long unloading waits for running tasks before putting them back to pending. */
  readonly shutdownGrace: Duration.DurationInput
  /** How often finished tasks past their retention are deleted. */
  readonly cleanupInterval: Duration.DurationInput
  /** The longest an idle worker sleeps before looking at its queue again (a missed wake-up costs this). */
  readonly pollInterval: Duration.DurationInput
}

/** 20 queues, 10,000 pending tasks per queue, 64 MiB of pending payloads, 10 s grace on unload. */
export const defaultTaskQueueOptions: TaskQueueOptions = {
  maxQueues: 20,
  maxPendingPerQueue: 10_000,
  maxPendingBytes: 64 * 1024 * 1024,
  shutdownGrace: Duration.seconds(10),
  cleanupInterval: Duration.minutes(5),
  pollInterval: Duration.seconds(5)
}

/** Navidrome's fixed limits and defaults. */
export const maxPayloadBytes = 1024 * 1024
export const maxQueueNameBytes = 128
export const maxBackoffMs = 3_600_000
export const defaultBackoffMs = 1000
export const defaultRetentionMs = 3_600_000
export const minRetentionMs = 60_000
export const maxRetentionMs = 604_800_000
/** The longest message kept for a task; a longer one is cut. */
export const maxMessageBytes = 64 * 1024

/** The functions of the TaskQueue service and the permission they need. */
export const definition = define({
  grant: "taskqueue",
  functions: ["task_createqueue", "task_enqueue", "task_get", "task_cancel", "task_clearqueue"]
})

/** The host functions of this service. */
export const functionNames = definition.functions

// Missing or null fields read as Go's zero values, as Navidrome's decoder has them.
const Int = Schema.optionalWith(Schema.Number.pipe(Schema.finite()), { default: () => 0, nullable: true })
const Text = Schema.optionalWith(Schema.String, { default: () => "", nullable: true })
const QueueConfig = Schema.Struct({
  concurrency: Int,
  maxRetries: Int,
  backoffMs: Int,
  delayMs: Int,
  retentionMs: Int
})
const CreateQueue = Schema.Struct({
  name: Text,
  config: Schema.optionalWith(QueueConfig, { default: () => QueueConfig.make({}), nullable: true })
})
const Enqueue = Schema.Struct({
  queueName: Text,
  payload: Schema.optionalWith(Bytes, { default: () => new Uint8Array(0), nullable: true })
})
const TaskId = Schema.Struct({ taskId: Text })
const QueueName = Schema.Struct({ queueName: Text })

/** What `nd_task_execute` returns: a JSON string (its message); no output is an empty message. */
const ExecuteOutput = Schema.parseJson(Schema.String)

/** The backoff before attempt `attempt + 1`: `backoffMs · 2^(attempt−1)`, at most 1 h. */
export const backoffFor = (backoffMs: number, attempt: number): number =>
  Math.min(backoffMs * 2 ** Math.max(attempt - 1, 0), maxBackoffMs)

/** A queue's settings from a request: Navidrome's defaults for zero values, retention clamped. */
export const settingsOf = (config: typeof QueueConfig.Type): TaskStore.QueueSettings => ({
  concurrency: config.concurrency > 0 ? Math.floor(config.concurrency) : 1,
  maxRetries: Math.max(Math.floor(config.maxRetries), 0),
  backoffMs: config.backoffMs > 0 ? Math.floor(config.backoffMs) : defaultBackoffMs,
  delayMs: Math.max(Math.floor(config.delayMs), 0),
  retentionMs: Math.min(
    Math.max(config.retentionMs > 0 ? Math.floor(config.retentionMs) : defaultRetentionMs, minRetentionMs),
    maxRetentionMs
  )
})

const cut = (text: string): string =>
  Buffer.byteLength(text, "utf8") <= maxMessageBytes
    ? text
    : Buffer.from(text, "utf8").subarray(0, maxMessageBytes).toString("utf8")

interface Queue {
  readonly settings: TaskStore.QueueSettings
  /** Completed once per enqueue or retry, to wake an idle worker; replaced when taken. */
  wake: Deferred.Deferred<void>
  /** The earliest time the next task of the queue may start (`delayMs` spacing). */
  nextStart: number
  readonly starting: Effect.Semaphore
}

/** The service of one plugin over an open store. */
export const makeService = (context: PluginContext, store: TaskStore.TaskStore, options: TaskQueueOptions) =>
  Effect.gen(function* () {
    const maxConcurrency = context.manifest.permissions.taskqueue?.maxConcurrency ?? 1
    const queues = new Map<string, Queue>()
    // The tasks this load is running: only these are put back on unload (during a reload the next
    // load of the plugin may already run tasks of its own from the same store).
    const running = new Set<string>()
    const defining = yield* Effect.makeSemaphore(1)
    const stopping = yield* Deferred.make<void>()
    const pollMs = Duration.toMillis(options.pollInterval)
    const log = Effect.annotateLogs("plugin", context.pluginId)

    // Finalizers run last-added first: stop and drain the workers, interrupt what still runs, then
    // put its tasks back to pending (the store itself closes after all of this).
    yield* Effect.addFinalizer(() =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.reduce(running, 0, (n, id) => Effect.map(store.revert(Option.some(id), now), (m) => n + m))
      ).pipe(
        Effect.tap((n) =>
          n > 0 ? Effect.logInfo(`task queue: ${n} running tasks put back to pending`) : Effect.void
        ),
        Effect.catchAll((error) => Effect.logWarning("task queue: cannot put running tasks back", error)),
        log
      )
    )
    const workers = yield* FiberSet.make()
    // Completed when the last running task ends after `stopping`: what the unload waits for.
    const drained = yield* Deferred.make<void>()
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        yield* Deferred.succeed(stopping, undefined)
        // Idle workers and those waiting for a start slot hold no task: they are simply interrupted.
        if (running.size === 0) return
        // Finalizers run uninterruptibly, and a timeout waits for an uninterruptible effect to end:
        // without this the grace would last as long as the task itself.
        yield* Effect.interruptible(Deferred.await(drained)).pipe(
          Effect.timeoutTo({
            duration: options.shutdownGrace,
            onTimeout: () =>
              Effect.logWarning(`task queue: ${running.size} tasks still running at unload are interrupted`),
            onSuccess: () => Effect.void
          })
        )
      }).pipe(log)
    )

    const execute = (name: string, queue: Queue, task: TaskStore.DequeuedTask) =>
      Effect.gen(function* () {
        const input = JSON.stringify({
          queueName: name,
          taskId: task.id,
          payload: toBase64(task.payload),
          attempt: task.attempt
        })
        // On a shared store the task stays with this node while its lease is renewed.
        const execute = context.callPlugin("nd_task_execute", input).pipe(
          Effect.flatMap((output) =>
            output === null || output.byteLength === 0
              ? Effect.succeed("")
              : Schema.decodeUnknown(ExecuteOutput)(new TextDecoder().decode(output)).pipe(
                  Effect.mapError(() => ({ message: "nd_task_execute must return a JSON string" }))
                )
          ),
          Effect.either
        )
        // On a shared store the task stays with this node while its lease is renewed; a local
        // store has no leases, so the call runs without a fiber beside it.
        const result = yield* Option.match(store.leaseRenewal, {
          onNone: () => execute,
          onSome: (every) =>
            Effect.raceFirst(
              execute,
              Effect.flatMap(Clock.currentTimeMillis, (now) => store.renew(task.id, now)).pipe(
                Effect.catchAll((error) => Effect.logWarning(`task ${task.id}: lease not renewed`, error)),
                Effect.delay(every),
                Effect.forever
              )
            )
        })
        const now = yield* Clock.currentTimeMillis
        if (result._tag === "Right") return yield* store.complete(task.id, cut(result.right), now)
        const message = cut(result.left.message)
        if (task.attempt > task.maxRetries) {
          yield* Effect.logWarning(
            `task ${task.id} of queue ${name} failed after ${task.attempt} attempts: ${message}`
          )
          return yield* store.fail(task.id, message, now)
        }
        const backoff = backoffFor(queue.settings.backoffMs, task.attempt)
        yield* store.retryAt(task.id, message, now + backoff, now)
      })

    /** Waits for the queue's next start slot (`delayMs` after the previous start). */
    /** Waits for the queue's next start slot (`delayMs` after the previous start); returns the slot's end. */
    const startSlot = (queue: Queue) =>
      queue.starting.withPermits(1)(
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const at = Math.max(now, queue.nextStart)
          queue.nextStart = at + queue.settings.delayMs
          if (at > now) yield* Effect.sleep(Duration.millis(at - now))
          return queue.nextStart
        })
      )

    const idle = (name: string, queue: Queue) =>
      Effect.gen(function* () {
        const due = yield* store.nextDue(name)
        const now = yield* Clock.currentTimeMillis
        const waitMs = Option.match(due, {
          onNone: () => pollMs,
          onSome: (at) => Math.min(Math.max(at - now, 0), pollMs)
        })
        if (waitMs === 0) return
        const wake = queue.wake
        yield* Deferred.await(wake).pipe(Effect.timeout(Duration.millis(waitMs)), Effect.ignore)
        // Taken: the next enqueue wakes whoever waits next.
        if ((yield* Deferred.isDone(wake)) && queue.wake === wake) queue.wake = yield* Deferred.make<void>()
      })

    /** Takes and runs one due task, or waits for one. */
    /**
     * Runs one due task, or waits for one. The start slot is taken before the task, so a task
     * waiting out `delayMs` stays pending (cancellable) and an unload need not wait for it; a slot
     * that finds no task (another worker took it) is given back.
     */
    const step = (name: string, queue: Queue) =>
      Effect.gen(function* () {
        const due = yield* store.nextDue(name)
        if (Option.isNone(due) || due.value > (yield* Clock.currentTimeMillis))
          return yield* idle(name, queue)
        const slot = yield* startSlot(queue)
        // Unloading: no new task starts.
        if (yield* Deferred.isDone(stopping)) return
        const task = yield* store.dequeue(name, yield* Clock.currentTimeMillis)
        if (Option.isNone(task)) {
          if (queue.nextStart === slot) queue.nextStart = slot - queue.settings.delayMs
          return
        }
        const id = task.value.id
        running.add(id)
        yield* execute(name, queue, task.value).pipe(
          // Interrupted (unload after the grace): the attempt does not count.
          Effect.onInterrupt(() =>
            Effect.flatMap(Clock.currentTimeMillis, (now) => store.revert(Option.some(id), now)).pipe(
              Effect.ignore
            )
          ),
          Effect.ensuring(
            Effect.gen(function* () {
              running.delete(id)
              if (running.size === 0 && (yield* Deferred.isDone(stopping)))
                yield* Deferred.succeed(drained, undefined)
            })
          )
        )
      })

    const worker = (name: string, queue: Queue) =>
      Effect.gen(function* () {
        while (!(yield* Deferred.isDone(stopping))) {
          yield* step(name, queue).pipe(
            // A storage failure must not end the worker: log it and look again later.
            Effect.catchAll((error) =>
              Effect.logWarning(`task queue ${name}: ${error.message}`).pipe(
                Effect.zipRight(Effect.sleep(options.pollInterval))
              )
            )
          )
        }
      }).pipe(
        Effect.catchAllDefect((defect) =>
          Effect.logError(`task queue ${name}: worker ended unexpectedly`, defect)
        ),
        log
      )

    yield* Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      for (const [name, queue] of queues) {
        const n = yield* store.cleanup(name, queue.settings.retentionMs, now)
        if (n > 0) yield* Effect.logDebug(`task queue ${name}: ${n} finished tasks cleaned up`)
      }
    }).pipe(
      Effect.catchAll((error) => Effect.logWarning("task queue: clean-up failed", error)),
      Effect.delay(options.cleanupInterval),
      Effect.forever,
      log,
      Effect.forkScoped
    )

    const notFound = (name: string) =>
      new TaskQueueError({
        reason: "QueueNotFound",
        message: `queue "${name}" does not exist: create it with task_createqueue when the plugin loads`
      })

    /**
     * A queue this load defined, or on a shared store one another node defined (its owner runs the
     * plugin's `nd_on_init`): tasks can be enqueued from any node, the defining node's workers run them.
     */
    const queueOf = (name: string): Effect.Effect<Pick<Queue, "settings" | "wake">, TaskQueueError> => {
      const queue = queues.get(name)
      if (queue !== undefined) return Effect.succeed(queue)
      if (!store.shared) return Effect.fail(notFound(name))
      return Effect.flatMap(store.queueSettings(name), (settings) =>
        Option.match(settings, {
          onNone: () => Effect.fail(notFound(name)),
          onSome: (settings) => Effect.map(Deferred.make<void>(), (wake) => ({ settings, wake }))
        })
      )
    }

    const createQueue = (name: string, config: typeof QueueConfig.Type) =>
      defining
        .withPermits(1)(
          Effect.gen(function* () {
            const nameBytes = Buffer.byteLength(name, "utf8")
            if (nameBytes === 0 || nameBytes > maxQueueNameBytes) {
              return yield* new TaskQueueError({
                reason: "InvalidRequest",
                message: `queue name must be 1 to ${maxQueueNameBytes} bytes long, got ${nameBytes}`
              })
            }
            if (yield* Deferred.isDone(stopping)) {
              return yield* new TaskQueueError({
                reason: "ShuttingDown",
                message: "the plugin is being unloaded"
              })
            }
            if (queues.has(name)) {
              return yield* new TaskQueueError({
                reason: "QueueExists",
                message: `queue "${name}" already exists`
              })
            }
            if (queues.size >= options.maxQueues) {
              return yield* new TaskQueueError({
                reason: "LimitReached",
                message: `the plugin already has ${queues.size} queues, the most allowed: reuse one of them`
              })
            }
            const requested = settingsOf(config)
            let allocated = 0
            for (const queue of queues.values()) allocated += queue.settings.concurrency
            const available = maxConcurrency - allocated
            if (available <= 0) {
              return yield* new TaskQueueError({
                reason: "ConcurrencyExhausted",
                message:
                  `concurrency budget exhausted (${allocated}/${maxConcurrency} allocated): ` +
                  `raise taskqueue.maxConcurrency in the manifest or use fewer queues`
              })
            }
            if (requested.concurrency > available) {
              yield* Effect.logWarning(
                `task queue ${name}: concurrency ${requested.concurrency} cut to ${available} (maxConcurrency ${maxConcurrency})`
              )
            }
            const settings = { ...requested, concurrency: Math.min(requested.concurrency, available) }
            const recovered = yield* store.defineQueue(name, settings, yield* Clock.currentTimeMillis)
            if (recovered > 0)
              yield* Effect.logInfo(`task queue ${name}: ${recovered} interrupted tasks will run again`)
            const queue: Queue = {
              settings,
              wake: yield* Deferred.make<void>(),
              nextStart: 0,
              starting: yield* Effect.makeSemaphore(1)
            }
            queues.set(name, queue)
            for (let i = 0; i < settings.concurrency; i++) yield* FiberSet.run(workers, worker(name, queue))
            return {}
          })
        )
        .pipe(log)

    const enqueue = (name: string, payload: Uint8Array) =>
      Effect.gen(function* () {
        const queue = yield* queueOf(name)
        if (payload.byteLength > maxPayloadBytes) {
          return yield* new TaskQueueError({
            reason: "InvalidRequest",
            message:
              `payload size ${payload.byteLength} exceeds the maximum of ${maxPayloadBytes} bytes: ` +
              `keep large data in the KV store or /storage and enqueue its key`
          })
        }
        const id = randomBase62()
        yield* store.insert(
          { id, queue: name, payload, maxRetries: queue.settings.maxRetries },
          { maxPendingPerQueue: options.maxPendingPerQueue, maxPendingBytes: options.maxPendingBytes },
          yield* Clock.currentTimeMillis
        )
        yield* Deferred.succeed(queue.wake, undefined)
        return { result: id }
      })

    const get = (taskId: string) =>
      Effect.flatMap(store.get(taskId), (info) =>
        Option.match(info, {
          onNone: () =>
            Effect.fail(
              new TaskQueueError({ reason: "TaskNotFound", message: `task "${taskId}" not found` })
            ),
          onSome: (result) => Effect.succeed({ result })
        })
      )

    const cancel = (taskId: string) =>
      Effect.gen(function* () {
        const before = yield* store.cancel(taskId, yield* Clock.currentTimeMillis)
        if (Option.isNone(before)) {
          return yield* new TaskQueueError({ reason: "TaskNotFound", message: `task "${taskId}" not found` })
        }
        if (before.value !== "pending") {
          return yield* new TaskQueueError({
            reason: "NotCancellable",
            message: `task "${taskId}" cannot be cancelled (status: ${before.value})`
          })
        }
        return {}
      })

    const clearQueue = (name: string) =>
      Effect.gen(function* () {
        yield* queueOf(name)
        return { result: yield* store.clear(name, yield* Clock.currentTimeMillis) }
      })

    return { createQueue, enqueue, get, cancel, clearQueue }
  })

/** The host functions over one plugin's service. */
const functions = (
  service: Effect.Effect.Success<ReturnType<typeof makeService>>
): Record<string, HostFunctionHandler> => ({
  task_createqueue: hostFunction("task_createqueue", CreateQueue, ({ config, name }) =>
    service.createQueue(name, config)
  ),
  task_enqueue: hostFunction("task_enqueue", Enqueue, ({ payload, queueName }) =>
    service.enqueue(queueName, payload)
  ),
  // Navidrome's TaskInfo has no omitempty: an empty message and attempt 0 are sent as they are.
  task_get: hostFunction("task_get", TaskId, ({ taskId }) => service.get(taskId), encodeResponseAsIs),
  task_cancel: hostFunction("task_cancel", TaskId, ({ taskId }) => service.cancel(taskId)),
  task_clearqueue: hostFunction("task_clearqueue", QueueName, ({ queueName }) =>
    service.clearQueue(queueName)
  )
})

/** Every function answering `{"error"}`: what a plugin gets when its task store cannot be opened. */
const unavailable = (error: TaskQueueError): Record<string, HostFunctionHandler> =>
  Object.fromEntries(functionNames.map((name) => [name, () => Effect.succeed(encodeError(error.message))]))

/** Where a plugin's tasks are kept. */
export const storeFile = (dataFolder: string, pluginId: string): string =>
  join(dataFolder, "plugins", pluginId, "taskqueue.db")

/** The TaskQueue host service: durable queues per plugin, run by fibers in the plugin's scope. */
export class TaskQueueService extends Context.Tag("ndp-engine/host/TaskQueueService")<
  TaskQueueService,
  HostServiceProvider
>() {}

/** The TaskQueue service with these limits (missing ones take `defaultTaskQueueOptions`). */
export const make = Effect.fn("TaskQueueService.make")(function* (options: Partial<TaskQueueOptions> = {}) {
  const limits = { ...defaultTaskQueueOptions, ...options }
  // In a cluster every node shares the queues in PostgreSQL; alone, a SQLite file per plugin.
  const shared = yield* Effect.serviceOption(KvStoreService.SharedDatabase)
  const open = (context: PluginContext) =>
    Option.match(shared, {
      onNone: () => TaskStore.sqlite(storeFile(context.dataFolder, context.pluginId)),
      onSome: (sql) => Effect.succeed(TaskStorePg.make(sql, context.pluginId))
    })
  return identity<HostServiceProvider>({
    ...definition,
    make: (context) =>
      open(context).pipe(
        Effect.flatMap((store) => makeService(context, store, limits)),
        Effect.map(functions),
        // A store that cannot open must not keep the plugin from loading: its calls fail in-band.
        Effect.catchAll((error) =>
          Effect.logError(`task queue of plugin ${context.pluginId} cannot be opened`, error).pipe(
            Effect.as(unavailable(error))
          )
        ),
        Effect.annotateLogs("plugin", context.pluginId)
      )
  })
})

/** The TaskQueue service as a layer. */
export const layer = (options: Partial<TaskQueueOptions> = {}): Layer.Layer<TaskQueueService> =>
  Layer.effect(TaskQueueService, make(options))

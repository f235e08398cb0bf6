/**
 * The Scheduler host service (`scheduler`): one-time and recurring schedules that call the
 * plugin's `nd_scheduler_callback {scheduleId, payload, isRecurring}`.
 *
 * Each schedule is a fiber in a `FiberMap` owned by the plugin's scope, keyed by schedule ID, so
 * unloading the plugin cancels every schedule. A schedule's fiber runs its callbacks one after
 * another; when a callback overruns the next tick, missed ticks are skipped, never queued, so a
 * slow plugin cannot pile up runs.
 *
 * Limits, all checked before a schedule exists (a refused request leaves nothing behind): at most
 * `maxSchedules` live schedules per plugin, recurring intervals of at least `minInterval`, a first
 * run within `horizon`, IDs of at most 256 bytes and payloads of at most `maxPayloadBytes`. The
 * first run is computed at creation with a bounded search; an ID is returned only once the
 * schedule's fiber is in the map. At most `maxCallbacksInFlight` callbacks of one plugin are on
 * their way to it at once: schedules that come due together (hundreds of `@every 1s`) wait their
 * turn instead of all going to the pool in one event-loop turn.
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as PluginMetrics from "../../metrics/PluginMetrics.js"
import * as PluginOwnership from "../../cluster/PluginOwnership.js"
import { randomBase62 } from "../../internal/Ids.js"
import { hostFunction } from "../HostCodec.js"
import { define, type HostServiceProvider, type PluginContext } from "../HostProvider.js"
import { nextRun, parseRecurrence, type Recurrence } from "./Recurrence.js"
import { SchedulerError } from "./SchedulerError.js"

export { nextRun, parseGoDuration, parseRecurrence, type Recurrence } from "./Recurrence.js"

/** The functions of the Scheduler service and the permission they need. */
export const definition = define({
  grant: "scheduler",
  functions: ["scheduler_scheduleonetime", "scheduler_schedulerecurring", "scheduler_cancelschedule"]
})

/** Limits of the Scheduler, per plugin. */
export interface SchedulerOptions {
  /** The most live schedules (one-time and recurring together) one plugin may have. */
  readonly maxSchedules: number
  /** The shortest interval of an `@every` schedule. */
  readonly minInterval: Duration.DurationInput
  /** How far ahead a schedule's next run may be; an expression that does not fire within it is refused. */
  readonly horizon: Duration.DurationInput
  /** The largest payload of one schedule, in bytes of UTF-8. */
  readonly maxPayloadBytes: number
  /** Callbacks of one plugin submitted and not finished at once; due schedules beyond it wait. */
  readonly maxCallbacksInFlight: number
}

/** 200 schedules, `@every` of 1 s at least, a 5-year horizon, 64 KiB payloads, 8 callbacks in flight. */
export const defaultSchedulerOptions: SchedulerOptions = {
  maxSchedules: 200,
  minInterval: Duration.seconds(1),
  horizon: Duration.days(5 * 365 + 2),
  maxPayloadBytes: 64 * 1024,
  maxCallbacksInFlight: 8
}

/** The longest schedule ID, in bytes of UTF-8. */
export const maxScheduleIdBytes = 256

/** A random 22-character base62 ID (about 131 bits, unbiased). */
export const generateScheduleId = (): string => randomBase62()

// Node's timers treat delays above 2^31 - 1 ms (about 24.8 days) as "never", so long waits are cut.
const MAX_SLEEP_MS = 20 * 86_400_000

/** Sleeps until the clock reads `target`, in steps short enough for the platform's timers. */
const sleepUntil = (target: number) =>
  Effect.gen(function* () {
    for (;;) {
      const now = yield* Clock.currentTimeMillis
      if (now >= target) return
      yield* Effect.sleep(Duration.millis(Math.min(target - now, MAX_SLEEP_MS)))
    }
  })

const OneTime = Schema.Struct({
  delaySeconds: Schema.Number.pipe(Schema.finite(), Schema.nonNegative()),
  payload: Schema.optionalWith(Schema.String, { default: () => "" }),
  scheduleId: Schema.optionalWith(Schema.String, { default: () => "" })
})
const Recurring = Schema.Struct({
  cronExpression: Schema.String,
  payload: Schema.optionalWith(Schema.String, { default: () => "" }),
  scheduleId: Schema.optionalWith(Schema.String, { default: () => "" })
})
const Cancel = Schema.Struct({ scheduleId: Schema.String })

/** "5 years" for the default horizon, "2 days" for two days, otherwise Effect's format ("36h"). */
const describeHorizon = (horizon: Duration.Duration): string => {
  const days = Duration.toDays(horizon)
  if (days >= 365) return `${Math.floor(days / 365)} years`
  return Number.isInteger(days) ? `${days} day${days === 1 ? "" : "s"}` : Duration.format(horizon)
}

/** One plugin's scheduler functions; its schedules live in the current scope (the plugin's). */
// On a cluster only the plugin's owner fires, once per tick cluster-wide (decision 0038).
const forPlugin = (options: SchedulerOptions, ownership: PluginOwnership.PluginOwnershipShape) =>
  Effect.fn("SchedulerService.forPlugin")(function* (context: PluginContext) {
    const schedules = yield* FiberMap.make<string>()
    // Creation is check-then-start: one at a time, so concurrent calls cannot overshoot the cap.
    const creating = yield* Effect.makeSemaphore(1)
    const horizon = Duration.decode(options.horizon)
    const horizonMs = Duration.toMillis(horizon)
    const horizonText = describeHorizon(horizon)
    const minIntervalMs = Duration.toMillis(options.minInterval)

    // Due schedules wait here, suspended, rather than each building and submitting its call in the
    // same turn; a permit is held only while the call is in the pool.
    const inFlight = yield* Effect.makeSemaphore(Math.max(1, options.maxCallbacksInFlight))
    const callback = (scheduleId: string, payload: string, isRecurring: boolean) =>
      inFlight
        .withPermits(1)(
          context.callPlugin("nd_scheduler_callback", JSON.stringify({ scheduleId, payload, isRecurring }))
        )
        .pipe(
          Effect.catchTag("PluginNotImplementedError", () =>
            Effect.logWarning(
              `schedule ${scheduleId} fired but the plugin does not export nd_scheduler_callback`
            )
          ),
          Effect.catchAll((error) =>
            Effect.logWarning(`scheduler callback for ${scheduleId} failed: ${error.message}`)
          ),
          Effect.asVoid
        )

    const checkRequest = (scheduleId: string, payload: string) => {
      const idBytes = Buffer.byteLength(scheduleId, "utf8")
      if (idBytes > maxScheduleIdBytes) {
        return new SchedulerError({
          reason: "InvalidSchedule",
          message: `scheduleId is ${idBytes} bytes long; the limit is ${maxScheduleIdBytes} bytes: use a shorter ID`
        })
      }
      const payloadBytes = Buffer.byteLength(payload, "utf8")
      if (payloadBytes > options.maxPayloadBytes) {
        return new SchedulerError({
          reason: "InvalidSchedule",
          message:
            `payload is ${payloadBytes} bytes long; the limit is ${options.maxPayloadBytes} bytes: ` +
            `keep large data in the KV store and pass its key as the payload`
        })
      }
      return undefined
    }

    /**
     * Starts `run` under the requested ID (or a generated one) if the plugin may have one more
     * schedule; answers the ID only when the schedule's fiber is in the map.
     */
    // Live schedules for the `ndp_plugin_schedules` gauge: counted by the schedules' own fibers,
    // so one that ends, is cancelled or is closed with the plugin is subtracted alike.
    let live = 0
    const report = Effect.suspend(() =>
      PluginMetrics.setGauge(PluginMetrics.schedules, context.pluginId, live)
    )
    const counted = (schedule: Effect.Effect<void>) =>
      Effect.acquireUseRelease(
        Effect.zipRight(
          Effect.sync(() => live++),
          report
        ),
        () => schedule,
        () =>
          Effect.zipRight(
            Effect.sync(() => live--),
            report
          )
      )

    const create = (requested: string, run: (id: string) => Effect.Effect<void>) =>
      creating.withPermits(1)(
        Effect.gen(function* () {
          if (requested !== "" && (yield* FiberMap.has(schedules, requested))) {
            return yield* new SchedulerError({
              reason: "DuplicateId",
              message: `schedule ${requested} already exists`
            })
          }
          const live = yield* FiberMap.size(schedules)
          if (live >= options.maxSchedules) {
            return yield* new SchedulerError({
              reason: "TooManySchedules",
              message:
                `plugin ${context.pluginId} already has ${live} live schedules, the most allowed: ` +
                `cancel the ones it no longer needs (scheduler_cancelschedule) before creating more`
            })
          }
          let id = requested
          while (id === "" || (yield* FiberMap.has(schedules, id))) id = generateScheduleId()
          yield* FiberMap.run(schedules, id, counted(run(id)), { onlyIfMissing: true })
          // A new fiber starts asynchronously, so it is still in the map unless the map is closed.
          if (!(yield* FiberMap.has(schedules, id))) {
            return yield* new SchedulerError({
              reason: "ShuttingDown",
              message: `plugin ${context.pluginId} is being unloaded; no new schedule can start`
            })
          }
          return { newScheduleId: id }
        })
      )

    const recurringLoop = (
      id: string,
      expression: string,
      recurrence: Recurrence,
      payload: string,
      first: number
    ) =>
      Effect.gen(function* () {
        let next = first
        let previous = yield* Clock.currentTimeMillis
        for (;;) {
          yield* sleepUntil(next)
          // Half a period after the last claimed tick: two nodes' clocks never make one tick fire twice.
          const notBefore = next - Math.floor((next - previous) / 2)
          if (yield* ownership.claimTick(context.pluginId, id, next, notBefore))
            yield* callback(id, payload, true)
          previous = next
          const now = yield* Clock.currentTimeMillis
          const following = nextRun(recurrence, now, next, horizonMs)
          if (Option.isNone(following)) {
            return yield* Effect.logWarning(
              `schedule ${id} ended: "${expression}" does not fire again within ${horizonText}`
            )
          }
          next = following.value
        }
      }).pipe(
        // A bug of ours must end the schedule visibly, not leave a dead fiber behind an ID.
        Effect.catchAllDefect((defect) => Effect.logError(`schedule ${id} ended unexpectedly`, defect))
      )

    return {
      scheduler_scheduleonetime: hostFunction("scheduler_scheduleonetime", OneTime, (request) =>
        Effect.gen(function* () {
          const problem = checkRequest(request.scheduleId, request.payload)
          if (problem !== undefined) return yield* problem
          const delayMs = request.delaySeconds * 1000
          if (delayMs > horizonMs) {
            return yield* new SchedulerError({
              reason: "NeverFires",
              message:
                `delaySeconds ${request.delaySeconds} is more than ${horizonText} ahead: ` +
                `schedule a nearer time and schedule again from its callback`
            })
          }
          const target = (yield* Clock.currentTimeMillis) + delayMs
          return yield* create(request.scheduleId, (id) =>
            sleepUntil(target).pipe(
              Effect.zipRight(ownership.claimTick(context.pluginId, id, target, target - 1)),
              Effect.flatMap((claimed) => (claimed ? callback(id, request.payload, false) : Effect.void))
            )
          )
        })
      ),
      scheduler_schedulerecurring: hostFunction("scheduler_schedulerecurring", Recurring, (request) =>
        Effect.gen(function* () {
          const problem = checkRequest(request.scheduleId, request.payload)
          if (problem !== undefined) return yield* problem
          const recurrence = parseRecurrence(request.cronExpression, minIntervalMs)
          if (Either.isLeft(recurrence)) return yield* new SchedulerError(recurrence.left)
          const now = yield* Clock.currentTimeMillis
          const first = nextRun(recurrence.right, now, now, horizonMs)
          if (Option.isNone(first)) {
            return yield* new SchedulerError({
              reason: "NeverFires",
              message:
                `schedule "${request.cronExpression}" does not fire within the next ${horizonText} ` +
                `(a day that does not exist in its month, such as February 30?): fix the expression`
            })
          }
          return yield* create(request.scheduleId, (id) =>
            recurringLoop(id, request.cronExpression, recurrence.right, request.payload, first.value)
          )
        })
      ),
      scheduler_cancelschedule: hostFunction("scheduler_cancelschedule", Cancel, ({ scheduleId }) =>
        Effect.gen(function* () {
          if (!(yield* FiberMap.has(schedules, scheduleId))) {
            return yield* new SchedulerError({
              reason: "NotFound",
              message: `schedule ${scheduleId} not found`
            })
          }
          // Safe from inside the schedule's own callback: that fiber is only awaiting the pool, and
          // interrupting it leaves the running callback to finish on its worker.
          yield* FiberMap.remove(schedules, scheduleId)
          return {}
        })
      )
    }
  })

/** The Scheduler host service: a `FiberMap` of schedules per plugin, in the plugin's scope. */
export class SchedulerService extends Context.Tag("ndp-engine/host/SchedulerService")<
  SchedulerService,
  HostServiceProvider
>() {}

/** The Scheduler service with these limits (missing ones take `defaultSchedulerOptions`). */
export const make = Effect.fn("SchedulerService.make")(
  (options: Partial<SchedulerOptions> = {}): Effect.Effect<HostServiceProvider> =>
    Effect.map(PluginOwnership.current, (ownership) => ({
      ...definition,
      make: forPlugin({ ...defaultSchedulerOptions, ...options }, ownership)
    }))
)

/** The Scheduler service as a layer. */
export const layer = (options: Partial<SchedulerOptions> = {}): Layer.Layer<SchedulerService> =>
  Layer.effect(SchedulerService, make(options))

/** The Scheduler service with its limits read from `Config`. */
export const layerConfig = (
  config: Config.Config.Wrap<Partial<SchedulerOptions>>
): Layer.Layer<SchedulerService, ConfigError.ConfigError> =>
  Layer.effect(SchedulerService, Effect.flatMap(Config.unwrap(config), make))

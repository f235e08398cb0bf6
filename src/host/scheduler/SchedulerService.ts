/**
 * The Scheduler host service (`scheduler`): one-time and recurring schedules that call the
 * plugin's `nd_scheduler_callback {scheduleId, payload, isRecurring}`.
 *
 * Each schedule is a fiber in a `FiberMap` owned by the plugin's scope, keyed by schedule ID, so
 * unloading the plugin cancels every schedule. A schedule's fiber runs its callbacks one after
 * another; when a callback overruns the next tick, missed ticks are skipped, never queued, so a
 * slow plugin cannot pile up runs.
 */
import * as Clock from "effect/Clock"
import * as Cron from "effect/Cron"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberMap from "effect/FiberMap"
import * as Schema from "effect/Schema"
import { randomBytes } from "node:crypto"
import { HostCallError, hostFunction } from "../HostCodec.js"
import type { HostServiceProvider, PluginContext } from "../HostFunctions.js"

/** A recurring schedule's timing: a cron expression, or a fixed interval (`@every`). */
export type Recurrence =
  | { readonly _tag: "Cron"; readonly cron: Cron.Cron }
  | { readonly _tag: "Every"; readonly interval: Duration.Duration }

const MACROS: Readonly<Record<string, string>> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *"
}

const GO_DURATION = /^((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)$/
const GO_UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000
}

/** Parses a Go duration such as `90s`, `1h30m` or `250ms` into milliseconds. */
export const parseGoDuration = (text: string): number | undefined => {
  if (!GO_DURATION.test(text)) return undefined
  let total = 0
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(amount) * GO_UNIT_MS[unit!]!
  }
  return total
}

/**
 * Parses the schedule syntax plugins use: 5 cron fields, `@every <duration>`, the `@hourly`
 * family, with an optional `CRON_TZ=<zone>` or `TZ=<zone>` prefix.
 */
export const parseRecurrence = (expression: string): Either.Either<Recurrence, string> => {
  let text = expression.trim()
  let zone: string | undefined
  const prefix = /^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$/.exec(text)
  if (prefix !== null) {
    zone = prefix[1]
    text = prefix[2]!.trim()
  }
  if (text.startsWith("@every")) {
    const duration = text.slice("@every".length).trim()
    const ms = parseGoDuration(duration)
    if (ms === undefined || ms < 1000) {
      return Either.left(
        `invalid @every interval "${duration}": use a Go duration of at least 1s, e.g. "@every 90s"`
      )
    }
    return Either.right({ _tag: "Every", interval: Duration.millis(ms) })
  }
  const fields = MACROS[text] ?? text
  if (fields.startsWith("@")) return Either.left(`unknown schedule "${text}"`)
  if (fields.split(/\s+/).length !== 5) {
    return Either.left(`cron expression "${text}" must have 5 fields (minute hour day month weekday)`)
  }
  return Cron.parse(fields, zone).pipe(
    Either.map((cron): Recurrence => ({ _tag: "Cron", cron })),
    Either.mapLeft((error) => `invalid cron expression "${expression}": ${error.message}`)
  )
}

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/** A random 22-character base62 ID (about 131 bits). */
export const generateScheduleId = (): string =>
  Array.from(randomBytes(22), (byte) => BASE62[byte % 62]).join("")

const OneTime = Schema.Struct({
  delaySeconds: Schema.Number.pipe(Schema.nonNegative()),
  payload: Schema.optionalWith(Schema.String, { default: () => "" }),
  scheduleId: Schema.optionalWith(Schema.String, { default: () => "" })
})
const Recurring = Schema.Struct({
  cronExpression: Schema.String,
  payload: Schema.optionalWith(Schema.String, { default: () => "" }),
  scheduleId: Schema.optionalWith(Schema.String, { default: () => "" })
})
const Cancel = Schema.Struct({ scheduleId: Schema.String })

/** The next time a recurrence fires after `now`, given when it last fired (for `@every`). */
export const nextRun = (recurrence: Recurrence, now: number, previous: number): number => {
  if (recurrence._tag === "Cron") return Cron.next(recurrence.cron, now).getTime()
  const step = Duration.toMillis(recurrence.interval)
  let next = previous + step
  // Overran: skip the missed ticks rather than firing them back to back.
  while (next <= now) next += step
  return next
}

const make = (context: PluginContext) =>
  Effect.gen(function* () {
    const schedules = yield* FiberMap.make<string>()

    const callback = (scheduleId: string, payload: string, isRecurring: boolean) =>
      context.callPlugin("nd_scheduler_callback", JSON.stringify({ scheduleId, payload, isRecurring })).pipe(
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

    const claim = (requested: string) =>
      Effect.gen(function* () {
        const id = requested === "" ? generateScheduleId() : requested
        if (yield* FiberMap.has(schedules, id)) {
          return yield* new HostCallError({ message: `schedule ${id} already exists` })
        }
        return id
      })

    const start = (id: string, run: Effect.Effect<void>) =>
      FiberMap.run(schedules, id, run, { onlyIfMissing: true }).pipe(Effect.as({ newScheduleId: id }))

    return {
      scheduler_scheduleonetime: hostFunction("scheduler_scheduleonetime", OneTime, (request) =>
        Effect.flatMap(claim(request.scheduleId), (id) =>
          start(
            id,
            Effect.sleep(Duration.seconds(request.delaySeconds)).pipe(
              Effect.zipRight(callback(id, request.payload, false))
            )
          )
        )
      ),
      scheduler_schedulerecurring: hostFunction("scheduler_schedulerecurring", Recurring, (request) =>
        Effect.gen(function* () {
          const recurrence = parseRecurrence(request.cronExpression)
          if (Either.isLeft(recurrence)) return yield* new HostCallError({ message: recurrence.left })
          const id = yield* claim(request.scheduleId)
          const loop = Effect.gen(function* () {
            let previous = yield* Clock.currentTimeMillis
            for (;;) {
              const now = yield* Clock.currentTimeMillis
              const next = nextRun(recurrence.right, now, previous)
              yield* Effect.sleep(Duration.millis(next - now))
              previous = next
              yield* callback(id, request.payload, true)
            }
          })
          return yield* start(id, loop)
        })
      ),
      scheduler_cancelschedule: hostFunction("scheduler_cancelschedule", Cancel, ({ scheduleId }) =>
        Effect.gen(function* () {
          if (!(yield* FiberMap.has(schedules, scheduleId))) {
            return yield* new HostCallError({ message: `schedule ${scheduleId} not found` })
          }
          // Safe from inside the schedule's own callback: that fiber is only awaiting the pool, and
          // interrupting it leaves the running callback to finish on its worker.
          yield* FiberMap.remove(schedules, scheduleId)
          return {}
        })
      )
    }
  })

export const provider: HostServiceProvider = {
  grant: "scheduler",
  functions: ["scheduler_scheduleonetime", "scheduler_schedulerecurring", "scheduler_cancelschedule"],
  make
}

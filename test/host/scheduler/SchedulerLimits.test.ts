import { describe, expect, it, layer } from "@effect/vitest"
import * as Cron from "effect/Cron"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { generateConnectionId } from "../../../src/host/websocket/WebSocketService.js"
import { nextRun, parseRecurrence } from "../../../src/host/scheduler/Recurrence.js"
import { defaultSchedulerOptions, generateScheduleId } from "../../../src/host/scheduler/SchedulerService.js"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import { WasmRuntime } from "../../../src/runtime/WasmRuntime.js"
import { testEngine } from "../../support/engine.js"
import { fixture } from "../../support/fixtures.js"
import { captureLogs } from "../../support/logs.js"
import { eventually } from "../../support/wait.js"

const decoder = new TextDecoder()

type Answer = Record<string, unknown>

/** What `scheduler-abuser`'s `flood` reports. */
interface Flood {
  readonly accepted: number
  readonly refused: number
  readonly both: number
  readonly neither: number
  readonly firstError: string
  readonly lastError: string
  readonly lastId: string
}

/** Loads a fixture with `logs` as its logger; `call(export, request)` answers the parsed JSON output. */
const load = (id: string, logs: ReturnType<typeof captureLogs>) =>
  Effect.gen(function* () {
    const loader = yield* PluginLoader
    const plugin = yield* logs.provide(loader.loadFile(fixture(id)))
    const call = <A = Answer>(fn: string, request: unknown) =>
      Effect.map(
        Effect.orDie(plugin.call(fn, typeof request === "string" ? request : JSON.stringify(request))),
        (bytes) => JSON.parse(decoder.decode(bytes!)) as A
      )
    return { plugin, call }
  })

/** The abuser and a healthy plugin using the same service, loaded side by side. */
const neighbours = Effect.gen(function* () {
  const logs = captureLogs()
  const abuser = yield* load("scheduler-abuser", logs)
  const healthy = yield* load("host-scheduler", logs)
  const flood = (request: Record<string, unknown>) => abuser.call<Flood>("flood", request)
  const healthyCallbacks = () =>
    logs.lines
      .filter((l) => l.annotations.plugin === "host-scheduler" && l.message.startsWith("callback "))
      .map((l) => l.message)
  /** The healthy plugin schedules a one-time job and sees it fire: the service still works for it. */
  const healthyStillServed = (id: string) =>
    Effect.gen(function* () {
      expect(
        yield* healthy.call("call_scheduler_scheduleonetime", {
          delaySeconds: 5,
          payload: "ok",
          scheduleId: id
        })
      ).toEqual({ newScheduleId: id })
      yield* TestClock.adjust("5 seconds")
      yield* eventually(`the healthy callback ${id}`, () =>
        healthyCallbacks().includes(`callback ${id} ok once`)
      )
    })
  return { logs, abuser, healthy, flood, healthyStillServed }
})

layer(testEngine({ runtime: { poolSize: 2 } }))("Scheduler limits (defaults)", (it) => {
  it.scoped(
    "cron expressions that never fire are refused at once, with no ID, while a neighbour is served",
    () =>
      Effect.gen(function* () {
        const { abuser, flood, healthy, healthyStillServed } = yield* neighbours
        // Before the fix each of these walked Cron.next's 10,000 time-zone steps on the main thread.
        const [never, echo] = yield* Effect.all(
          [
            flood({ count: 60, expression: "CRON_TZ=America/New_York 0 0 31 2 *" }),
            healthy.call("call_scheduler_schedulerecurring", {
              cronExpression: "@every 1h",
              scheduleId: "healthy-hourly"
            })
          ],
          { concurrency: "unbounded" }
        )
        expect(echo).toEqual({ newScheduleId: "healthy-hourly" })
        expect(never).toMatchObject({ accepted: 0, refused: 60, both: 0, neither: 0 })
        expect(never.firstError).toBe(
          'schedule "CRON_TZ=America/New_York 0 0 31 2 *" does not fire within the next 5 years ' +
            "(a day that does not exist in its month, such as February 30?): fix the expression"
        )
        for (const expression of [
          "0 0 30 2 *",
          "TZ=Europe/Berlin 0 0 31 4 *",
          "CRON_TZ=UTC 0 0 31 2,4,6,9,11 *"
        ]) {
          const answer = yield* abuser.call("call_scheduler_schedulerecurring", {
            cronExpression: expression,
            scheduleId: "never"
          })
          expect(answer.newScheduleId, expression).toBeUndefined()
          expect(String(answer.error), expression).toContain("does not fire within the next 5 years")
        }
        // Too far ahead for a one-time schedule too.
        const far = yield* abuser.call("call_scheduler_scheduleonetime", {
          delaySeconds: 1e10,
          scheduleId: "far"
        })
        expect(far).toEqual({
          error:
            "delaySeconds 10000000000 is more than 5 years ahead: schedule a nearer time and schedule again from its callback"
        })
        // Nothing was left behind under the refused IDs, and rare-but-real expressions still pass.
        expect((yield* abuser.call("call_scheduler_cancelschedule", { scheduleId: "never" })).error).toBe(
          "schedule never not found"
        )
        for (const expression of ["0 0 29 2 *", "CRON_TZ=Asia/Tokyo 0 0 31 12 *", "0 0 13 * 5"]) {
          const answer = yield* abuser.call("call_scheduler_schedulerecurring", {
            cronExpression: expression
          })
          expect(answer.newScheduleId, expression).toMatch(/^[0-9A-Za-z]{22}$/)
        }
        yield* healthyStillServed("after-never")
      }),
    120_000
  )

  it.scoped(
    "a plugin holds at most 200 live schedules; the rest are refused and leave nothing behind",
    () =>
      Effect.gen(function* () {
        const { abuser, flood, healthyStillServed } = yield* neighbours
        const first = yield* flood({ count: 5000, expression: "@every 1m" })
        expect(first).toMatchObject({ accepted: 200, refused: 4800, both: 0, neither: 0 })
        expect(first.lastError).toBe(
          "plugin scheduler-abuser already has 200 live schedules, the most allowed: cancel the ones it " +
            "no longer needs (scheduler_cancelschedule) before creating more"
        )
        // One-time schedules count too.
        const once = yield* flood({ count: 10, delaySeconds: 60 })
        expect(once).toMatchObject({ accepted: 0, refused: 10 })
        // The cap is on live schedules: cancelling one makes room for exactly one.
        expect(yield* abuser.call("call_scheduler_cancelschedule", { scheduleId: first.lastId })).toEqual({})
        const again = yield* flood({ count: 3, expression: "@every 1m", idPrefix: "again-" })
        expect(again).toMatchObject({ accepted: 1, refused: 2, lastId: "again-0" })
        // The neighbour has its own budget.
        yield* healthyStillServed("beside-the-cap")
      }),
    120_000
  )

  it.scoped("intervals under 1 s are refused, 1 s is accepted", () =>
    Effect.gen(function* () {
      const { abuser } = yield* neighbours
      for (const interval of ["500ms", "999ms", "1ns", "0s"]) {
        const answer = yield* abuser.call("call_scheduler_schedulerecurring", {
          cronExpression: `@every ${interval}`
        })
        expect(answer).toEqual({
          error: `@every interval "${interval}" is shorter than the minimum of 1s: use a longer interval, e.g. "@every 1s"`
        })
      }
      const ok = yield* abuser.call("call_scheduler_schedulerecurring", { cronExpression: "@every 1s" })
      expect(ok.newScheduleId).toMatch(/^[0-9A-Za-z]{22}$/)
    })
  )

  it.scoped("over-long IDs and payloads are refused", () =>
    Effect.gen(function* () {
      const { abuser } = yield* neighbours
      const longId = yield* abuser.call("call_scheduler_scheduleonetime", {
        delaySeconds: 1,
        scheduleId: "i".repeat(257)
      })
      expect(longId).toEqual({
        error: "scheduleId is 257 bytes long; the limit is 256 bytes: use a shorter ID"
      })
      const bigPayload = yield* abuser.call("call_scheduler_schedulerecurring", {
        cronExpression: "@hourly",
        payload: "p".repeat(64 * 1024 + 1)
      })
      expect(String(bigPayload.error)).toBe(
        "payload is 65537 bytes long; the limit is 65536 bytes: keep large data in the KV store and pass its key as the payload"
      )
    })
  )
})

layer(testEngine({ runtime: { poolSize: 2 }, scheduler: { maxSchedules: 3, minInterval: "1 minute" } }))(
  "Scheduler limits (configured)",
  (it) => {
    it.scoped("the cap and the minimum interval come from the engine options", () =>
      Effect.gen(function* () {
        const { abuser, flood, healthyStillServed } = yield* neighbours
        const tooShort = yield* abuser.call("call_scheduler_schedulerecurring", {
          cronExpression: "@every 59s"
        })
        expect(tooShort.error).toBe(
          '@every interval "59s" is shorter than the minimum of 60s: use a longer interval, e.g. "@every 60s"'
        )
        const capped = yield* flood({ count: 10, expression: "@every 1m" })
        expect(capped).toMatchObject({ accepted: 3, refused: 7, both: 0 })
        expect(capped.lastError).toContain("already has 3 live schedules")
        yield* healthyStillServed("configured")
      })
    )
  }
)

layer(testEngine({ runtime: { poolSize: 2 }, scheduler: { horizon: "2 days" } }))(
  "Scheduler horizon (configured)",
  (it) => {
    it.scoped("a schedule whose next run leaves the horizon ends cleanly, logged, and frees its slot", () =>
      Effect.gen(function* () {
        const { abuser, logs } = yield* neighbours
        // The TestClock starts at 1970-01-01T00:00Z: this fires at noon, then not for a year.
        expect(
          yield* abuser.call("call_scheduler_schedulerecurring", {
            cronExpression: "CRON_TZ=UTC 0 12 1 1 *",
            payload: "abuse",
            scheduleId: "yearly"
          })
        ).toEqual({ newScheduleId: "yearly" })
        yield* TestClock.adjust("12 hours")
        yield* eventually("the warning", () =>
          logs.lines.some(
            (l) =>
              l.level === "WARN" &&
              l.message ===
                'schedule yearly ended: "CRON_TZ=UTC 0 12 1 1 *" does not fire again within 2 days'
          )
        )
        expect(
          logs.lines.some(
            (l) => l.annotations.plugin === "scheduler-abuser" && l.message === "callback yearly abuse"
          )
        ).toBe(true)
        expect(yield* abuser.call("call_scheduler_cancelschedule", { scheduleId: "yearly" })).toEqual({
          error: "schedule yearly not found"
        })
        expect(logs.lines.filter((l) => l.level === "ERROR")).toEqual([])
      })
    )
  }
)

describe("bounded next-run search", () => {
  const horizon = (5 * 365 + 2) * 86_400_000
  const field = (min: number, max: number) =>
    FastCheck.oneof(
      FastCheck.constant("*"),
      FastCheck.integer({ min, max }).map(String),
      FastCheck.integer({ min: 1, max: max - min }).map((step) => `*/${step}`),
      FastCheck.tuple(FastCheck.integer({ min, max }), FastCheck.integer({ min, max })).map(
        ([a, b]) => `${Math.min(a, b)}-${Math.max(a, b)}`
      ),
      FastCheck.tuple(FastCheck.integer({ min, max }), FastCheck.integer({ min, max })).map(
        ([a, b]) => `${a},${b}`
      )
    )

  it.prop(
    "agrees with Cron.next whenever that finds a run within the horizon",
    [
      field(0, 59),
      field(0, 23),
      field(1, 31),
      field(1, 12),
      field(0, 6),
      FastCheck.constantFrom(
        "",
        "CRON_TZ=UTC ",
        "CRON_TZ=America/New_York ",
        "TZ=Europe/Berlin ",
        "CRON_TZ=Australia/Lord_Howe "
      ),
      FastCheck.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2035, 0, 1) })
    ],
    ([minute, hour, day, month, weekday, zone, after]) => {
      const expression = `${zone}${minute} ${hour} ${day} ${month} ${weekday}`
      const parsed = parseRecurrence(expression)
      if (Either.isLeft(parsed) || parsed.right._tag !== "Cron") return
      let expected: number | undefined
      try {
        expected = Cron.next(parsed.right.cron, after).getTime()
      } catch {
        expected = undefined
      }
      if (expected !== undefined && expected > after + horizon) expected = undefined
      expect(Option.getOrUndefined(nextRun(parsed.right, after, after, horizon)), expression).toBe(expected)
    },
    { fastCheck: { numRuns: 500 } }
  )

  it("refuses expressions that never fire, and @every beyond the horizon", () => {
    const now = Date.UTC(2026, 5, 1)
    for (const expression of [
      "CRON_TZ=America/New_York 0 0 31 2 *",
      "0 0 30 2 *",
      "0 0 31 11 *",
      "@every 50000h"
    ]) {
      const parsed = parseRecurrence(expression)
      if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
      expect(nextRun(parsed.right, now, now, horizon), expression).toEqual(Option.none())
    }
    const leap = parseRecurrence("CRON_TZ=UTC 0 0 29 2 *")
    if (Either.isLeft(leap)) throw new Error(leap.left.message)
    expect(nextRun(leap.right, now, now, horizon)).toEqual(Option.some(Date.UTC(2028, 1, 29)))
  })
})

describe("random IDs", () => {
  // `byte % 62` over all 256 byte values makes `0`-`7` 5/4 as likely as the other characters.
  for (const [name, generate] of [
    ["schedule", generateScheduleId],
    ["connection", generateConnectionId]
  ] as const) {
    it(`${name} IDs are 22 base62 characters, every character equally likely`, () => {
      const counts = new Map<string, number>()
      const malformed: Array<string> = []
      for (let i = 0; i < 20_000; i++) {
        const id = generate()
        if (!/^[0-9A-Za-z]{22}$/.test(id)) malformed.push(id)
        for (const c of id) counts.set(c, (counts.get(c) ?? 0) + 1)
      }
      expect(malformed).toEqual([])
      expect(counts.size).toBe(62)
      const low = Array.from("01234567", (c) => counts.get(c) ?? 0).reduce((a, b) => a + b) / 8
      const rest = (20_000 * 22 - low * 8) / 54
      // Expected 1.0; the biased version gives 1.25. Sampling noise here is under 1%.
      expect(low / rest).toBeGreaterThan(0.95)
      expect(low / rest).toBeLessThan(1.05)
    })
  }
})

// Live clock: the test clock wakes sleepers one after another, so schedules never come due together.
describe("Scheduler callbacks in flight", () => {
  it.scopedLive(
    "200 schedules due at once reach the pool at most maxCallbacksInFlight at a time, and every one fires",
    () =>
      Effect.gen(function* () {
        const context = yield* Layer.build(testEngine({ runtime: { poolSize: 2 } }))
        const runtime = Context.get(context, WasmRuntime)
        const { flood, healthy, logs } = yield* Effect.provide(neighbours, context)
        const due = yield* flood({ count: 200, expression: "@every 1s", idPrefix: "due-" })
        expect(due).toMatchObject({ accepted: 200, refused: 0 })
        const fired = () =>
          logs.lines.filter(
            (l) => l.annotations.plugin === "scheduler-abuser" && l.message.startsWith("callback due-")
          ).length
        // Sampled once per event-loop turn: without the cap all 200 calls were submitted in one
        // turn and waited in the pool's queue.
        let mostQueued = 0
        const sampler = yield* Effect.acquireRelease(
          Effect.sync(() => {
            const state = { timer: undefined as ReturnType<typeof setImmediate> | undefined }
            const sample = () => {
              mostQueued = Math.max(mostQueued, Effect.runSync(runtime.poolStats).queued)
              state.timer = setImmediate(sample)
            }
            sample()
            return state
          }),
          (state) => Effect.sync(() => clearImmediate(state.timer))
        )
        yield* eventually("every due schedule's callback", () => fired() >= 200, 60_000)
        clearImmediate(sampler.timer)
        expect(mostQueued).toBeLessThanOrEqual(defaultSchedulerOptions.maxCallbacksInFlight)
        // The neighbour is answered meanwhile (the schedules keep firing every second).
        expect(
          yield* healthy.call("call_scheduler_schedulerecurring", {
            cronExpression: "@every 1h",
            scheduleId: "beside-due-schedules"
          })
        ).toEqual({ newScheduleId: "beside-due-schedules" })
      }),
    120_000
  )
})

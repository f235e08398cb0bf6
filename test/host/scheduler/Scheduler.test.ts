import { describe, expect, it, layer } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import {
  generateScheduleId,
  nextRun,
  parseGoDuration,
  parseRecurrence
} from "../../../src/host/scheduler/SchedulerService.js"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import { testEngine } from "../../support/engine.js"
import { fixture } from "../../support/fixtures.js"
import { captureLogs } from "../../support/logs.js"
import { eventually, realSleep } from "../../support/wait.js"

const decoder = new TextDecoder()

/** Loads host-scheduler in `scope`, logging into `logs`; returns a driver and the callback lines. */
const scheduler = (logs: ReturnType<typeof captureLogs>, scope?: Scope.Scope) =>
  Effect.gen(function* () {
    const loader = yield* PluginLoader
    const load = loader.loadFile(fixture("host-scheduler"))
    const plugin = yield* logs.provide(scope === undefined ? load : Scope.extend(load, scope))
    const call = (fn: string, request: unknown) =>
      Effect.map(
        plugin.call(`call_${fn}`, JSON.stringify(request)),
        (b) => JSON.parse(decoder.decode(b!)) as Record<string, unknown>
      )
    const lines = () =>
      logs.lines.filter((l) => l.annotations.plugin === "host-scheduler").map((l) => l.message)
    const callbacks = () => lines().filter((l) => l.startsWith("callback "))
    return { call, lines, callbacks }
  })

layer(testEngine({ runtime: { poolSize: 2 } }))("Scheduler host service", (it) => {
  it.scoped("a one-time schedule fires once after its delay, then disappears", () =>
    Effect.gen(function* () {
      const logs = captureLogs()
      const { call, callbacks } = yield* scheduler(logs)
      expect(
        yield* call("scheduler_scheduleonetime", { delaySeconds: 30, payload: "hello", scheduleId: "once" })
      ).toEqual({
        newScheduleId: "once"
      })
      yield* TestClock.adjust("29 seconds")
      yield* realSleep(50)
      expect(callbacks()).toEqual([])
      yield* TestClock.adjust("1 second")
      yield* eventually("the callback", () => callbacks().length === 1)
      expect(callbacks()).toEqual(["callback once hello once"])
      // Gone after its callback: cancelling it now is "not found", and the ID can be reused.
      const cancelled = yield* call("scheduler_cancelschedule", { scheduleId: "once" })
      expect(cancelled.error).toContain("not found")
      expect(yield* call("scheduler_scheduleonetime", { delaySeconds: 1, scheduleId: "once" })).toEqual({
        newScheduleId: "once"
      })
    })
  )

  it.scoped("a recurring schedule fires on every tick until cancelled", () =>
    Effect.gen(function* () {
      const logs = captureLogs()
      const { call, callbacks } = yield* scheduler(logs)
      yield* call("scheduler_schedulerecurring", {
        cronExpression: "@every 10s",
        payload: "tick",
        scheduleId: "rec"
      })
      for (let i = 1; i <= 3; i++) {
        yield* TestClock.adjust("10 seconds")
        yield* eventually(`tick ${i}`, () => callbacks().length === i)
      }
      expect(callbacks()).toEqual(Array(3).fill("callback rec tick recurring"))
      expect(yield* call("scheduler_cancelschedule", { scheduleId: "rec" })).toEqual({})
      yield* TestClock.adjust("60 seconds")
      yield* realSleep(50)
      expect(callbacks()).toHaveLength(3)
    })
  )

  it.scoped("cron expressions fire at their times, in the given time zone", () =>
    Effect.gen(function* () {
      const logs = captureLogs()
      const { call, callbacks } = yield* scheduler(logs)
      // Aim 30 minutes ahead, written as Tokyo wall-clock time (UTC+9, no daylight saving).
      const now = yield* Clock.currentTimeMillis
      const target = new Date(Math.floor(now / 60_000) * 60_000 + 30 * 60_000 + 9 * 3_600_000)
      const expression = `CRON_TZ=Asia/Tokyo ${target.getUTCMinutes()} ${target.getUTCHours()} * * *`
      yield* call("scheduler_schedulerecurring", { cronExpression: expression, scheduleId: "tz" })
      const waitMs = Math.floor(now / 60_000) * 60_000 + 30 * 60_000 - now
      yield* TestClock.adjust(Duration.millis(waitMs - 60_000))
      yield* realSleep(50)
      expect(callbacks()).toEqual([])
      yield* TestClock.adjust("1 minute")
      yield* eventually("the Tokyo run", () => callbacks().length === 1)
      expect(callbacks()).toEqual(["callback tz  recurring"])
      // Daily: nothing more for the next 23 hours.
      yield* TestClock.adjust("23 hours")
      yield* realSleep(50)
      expect(callbacks()).toHaveLength(1)
    })
  )

  it.scoped("IDs are shared by both kinds; empty IDs are generated; duplicates and unknowns are errors", () =>
    Effect.gen(function* () {
      const { call } = yield* scheduler(captureLogs())
      const generated = yield* call("scheduler_scheduleonetime", { delaySeconds: 100 })
      expect(generated.newScheduleId).toMatch(/^[0-9A-Za-z]{22}$/)
      yield* call("scheduler_scheduleonetime", { delaySeconds: 100, scheduleId: "dup" })
      const duplicate = yield* call("scheduler_schedulerecurring", {
        cronExpression: "@daily",
        scheduleId: "dup"
      })
      expect(duplicate.error).toBe("schedule dup already exists")
      expect((yield* call("scheduler_cancelschedule", { scheduleId: "nope" })).error).toBe(
        "schedule nope not found"
      )
      const bad = yield* call("scheduler_schedulerecurring", {
        cronExpression: "61 * * * *",
        scheduleId: "bad"
      })
      expect(bad.error).toContain("invalid cron expression")
      const snake = yield* call("scheduler_scheduleonetime", { delay_seconds: 5, schedule_id: "snake" })
      expect(snake).toEqual({ newScheduleId: "snake" })
    })
  )

  it.scoped("a callback may cancel its own schedule or schedule another, without deadlock", () =>
    Effect.gen(function* () {
      const logs = captureLogs()
      const { call, callbacks, lines } = yield* scheduler(logs)
      yield* call("scheduler_schedulerecurring", {
        cronExpression: "@every 5s",
        payload: "cancel-self",
        scheduleId: "selfish"
      })
      yield* call("scheduler_scheduleonetime", {
        delaySeconds: 5,
        payload: "chain:next",
        scheduleId: "first"
      })
      yield* TestClock.adjust("5 seconds")
      yield* eventually(
        "both callbacks",
        () =>
          lines().some((l) => l.startsWith("cancel selfish")) && lines().some((l) => l.startsWith("chain "))
      )
      expect(lines()).toContain("cancel selfish {}")
      expect(lines()).toContain('chain {"newScheduleId":"next"}')
      yield* TestClock.adjust("5 seconds")
      yield* eventually("the chained run", () => callbacks().includes("callback next chained once"))
      yield* realSleep(50)
      expect(callbacks().filter((c) => c.startsWith("callback selfish"))).toHaveLength(1)
    })
  )

  it.scoped("a failing callback is logged and the recurring schedule keeps running", () =>
    Effect.gen(function* () {
      const logs = captureLogs()
      const { call, callbacks } = yield* scheduler(logs)
      yield* call("scheduler_schedulerecurring", {
        cronExpression: "@every 1m",
        payload: "fail",
        scheduleId: "flaky"
      })
      yield* TestClock.adjust("1 minute")
      yield* eventually("first run", () => callbacks().length === 1)
      yield* TestClock.adjust("1 minute")
      yield* eventually("second run", () => callbacks().length === 2)
      yield* eventually("the warning", () =>
        logs.lines.some((l) => l.level === "WARN" && l.message.includes("callback failed on purpose"))
      )
    })
  )

  it.scoped("a slow callback makes the schedule skip missed ticks, not pile them up", () =>
    Effect.gen(function* () {
      const logs = captureLogs()
      const { call, callbacks, lines } = yield* scheduler(logs)
      yield* call("scheduler_schedulerecurring", {
        cronExpression: "@every 1s",
        payload: "spin:30000000",
        scheduleId: "slow"
      })
      yield* TestClock.adjust("1 second")
      yield* eventually("the first run to start", () => callbacks().length === 1)
      // While it is still busy, 100 ticks' worth of time passes.
      yield* TestClock.adjust("100 seconds")
      yield* eventually("the first run to end", () => lines().some((l) => l.startsWith("spun ")), 20_000)
      yield* realSleep(100)
      expect(callbacks()).toHaveLength(1)
      yield* TestClock.adjust("1 second")
      yield* eventually("the next tick", () => callbacks().length === 2, 20_000)
    })
  )

  it.scoped("unloading the plugin cancels all its schedules", () =>
    Effect.gen(function* () {
      const logs = captureLogs()
      const scope = yield* Scope.make()
      const { call, callbacks } = yield* scheduler(logs, scope)
      yield* call("scheduler_schedulerecurring", { cronExpression: "@every 1s", scheduleId: "r" })
      yield* call("scheduler_scheduleonetime", { delaySeconds: 2, scheduleId: "o" })
      yield* Scope.close(scope, Exit.void)
      yield* TestClock.adjust("10 seconds")
      yield* realSleep(100)
      expect(callbacks()).toEqual([])
    })
  )
})

describe("schedule syntax", () => {
  it("parses cron fields, macros, @every and time-zone prefixes", () => {
    for (const ok of [
      "*/5 * * * *",
      "0 0 1 1 *",
      "@hourly",
      "@daily",
      "@weekly",
      "@monthly",
      "@yearly",
      "@every 1h30m",
      "@every 90s",
      "TZ=America/New_York 0 9 * * 1-5",
      "CRON_TZ=UTC @daily"
    ]) {
      expect(Either.isRight(parseRecurrence(ok)), ok).toBe(true)
    }
    for (const bad of [
      "",
      "* * * *",
      "* * * * * *",
      "@sometimes",
      "@every",
      "@every 10",
      "@every 500ms",
      "99 * * * *",
      "TZ=Not/AZone 0 0 * * *"
    ]) {
      expect(Either.isLeft(parseRecurrence(bad)), bad).toBe(true)
    }
    expect(parseGoDuration("1h30m")).toBe(Duration.toMillis("90 minutes"))
    expect(parseGoDuration("1.5s")).toBe(1500)
    expect(parseGoDuration("abc")).toBeUndefined()
  })

  it("@every skips ticks it has missed instead of replaying them", () => {
    const every = parseRecurrence("@every 1s")
    if (Either.isLeft(every)) throw new Error(every.left.message)
    const horizon = Duration.toMillis("1 day")
    expect(nextRun(every.right, 100_500, 0, horizon)).toEqual(Option.some(101_000))
    expect(nextRun(every.right, 500, 0, horizon)).toEqual(Option.some(1_000))
    expect(nextRun(every.right, 1_000, 0, horizon)).toEqual(Option.some(2_000))
  })

  it("generates 22-character base62 IDs", () => {
    const ids = new Set(Array.from({ length: 1000 }, generateScheduleId))
    expect(ids.size).toBe(1000)
    for (const id of ids) expect(id).toMatch(/^[0-9A-Za-z]{22}$/)
  })
})

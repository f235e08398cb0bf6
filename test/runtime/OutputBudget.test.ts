/**
 * Guest output budgets: log and WASI stdout/stderr floods and multi-megabyte lines are cut in the
 * worker, so the main thread only ever sees a bounded number of bounded lines plus one summary of
 * what was dropped, while a healthy plugin keeps answering.
 */
import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { type LoadedPlugin, PluginLoader } from "../../src/loader/PluginLoader.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { type CapturedLog, captureLogs } from "../support/logs.js"
import { alongsideHealthy, loadHealthy } from "../support/neighbour.js"
import { realSleep } from "../support/wait.js"

const bio = JSON.stringify({ id: "ar-1", name: "Hostile" })
const SUMMARY = /^plugin ([\w-]+): (\d+) lines \/ (\d+) bytes of log output dropped over its budget of /

const load = (id: string, options: Parameters<PluginLoader["Type"]["loadFile"]>[1] = {}) =>
  Effect.flatMap(PluginLoader, (loader) => loader.loadFile(fixture(id), options))

const ofPlugin = (lines: ReadonlyArray<CapturedLog>, id: string) =>
  lines.filter((line) => line.annotations.plugin === id)

/** Lines dropped according to the summaries among `lines`. */
const droppedIn = (lines: ReadonlyArray<CapturedLog>) =>
  lines.reduce((sum, line) => sum + Number(SUMMARY.exec(line.message)?.[2] ?? 0), 0)

/**
 * Waits until the summaries and the lines that passed account for all `total` lines, running
 * `nudge` between looks (by default a `quiet` call: calls end, which flushes a due summary).
 */
const untilAllReported = (
  plugin: LoadedPlugin,
  lines: ReadonlyArray<CapturedLog>,
  total: number,
  nudge: Effect.Effect<unknown, unknown> = plugin.call("quiet")
) =>
  Effect.gen(function* () {
    // A summary is due at most once a second per worker.
    const deadline = Date.now() + 30_000
    for (;;) {
      const own = ofPlugin(lines, plugin.id)
      const reported = droppedIn(own) + own.filter((l) => !SUMMARY.test(l.message)).length
      if (reported === total || reported > total || Date.now() > deadline) {
        expect(reported).toBe(total)
        return
      }
      yield* nudge
      yield* realSleep(200)
    }
  })

const budget = { linesPerSecond: 100, burstLines: 200 }

layer(testEngine({ runtime: { poolSize: 3, defaultTimeoutMs: 120_000 } }), { excludeTestServices: true })(
  "guest output budgets",
  (it) => {
    it.scoped(
      "five million log lines: a bounded number reaches the main thread, the rest is summarised",
      () =>
        Effect.gen(function* () {
          const logs = captureLogs()
          yield* logs.provide(
            Effect.gen(function* () {
              const flood = yield* load("log-flood", { logBudget: budget })
              const started = Date.now()
              const result = yield* alongsideHealthy(
                yield* loadHealthy,
                flood.call("nd_get_artist_biography", bio)
              )
              const seconds = (Date.now() - started) / 1000
              expect(result).toMatchObject({ _tag: "Right", right: null })
              const passed = ofPlugin(logs.lines, "log-flood").filter((l) => !SUMMARY.test(l.message))
              expect(passed.length).toBeGreaterThan(0)
              expect(passed.length).toBeLessThanOrEqual(
                budget.burstLines + budget.linesPerSecond * seconds + 1
              )
              expect(passed.every((l) => l.message === "flooding" && l.level === "INFO")).toBe(true)
              yield* untilAllReported(flood, logs.lines, 5_000_000)
              const summary = ofPlugin(logs.lines, "log-flood").find((l) => SUMMARY.test(l.message))
              expect(summary?.level).toBe("WARN")
              expect(summary?.message).toContain("100 lines/s (burst 200)")
              expect(summary?.message).toContain("raise logBudget in its LoadOptions or in RuntimeOptions")
            })
          )
        }),
      120_000
    )

    it.scoped(
      "dropped lines are reported by the idle worker itself, with no later call of the plugin",
      () =>
        Effect.gen(function* () {
          const logs = captureLogs()
          yield* logs.provide(
            Effect.gen(function* () {
              const flood = yield* load("log-flood", { logBudget: budget })
              expect(yield* flood.call("nd_get_artist_biography", bio)).toBeNull()
              // No call follows: the worker's own timer must account for every line.
              yield* untilAllReported(flood, logs.lines, 5_000_000, Effect.void)
            })
          )
        }),
      120_000
    )

    it.scoped(
      "two floods on two workers share one budget",
      () =>
        Effect.gen(function* () {
          const logs = captureLogs()
          yield* logs.provide(
            Effect.gen(function* () {
              const flood = yield* load("log-flood", { logBudget: budget })
              const started = Date.now()
              const results = yield* alongsideHealthy(
                yield* loadHealthy,
                Effect.all(
                  [1, 2].map(() => flood.call("nd_get_artist_biography", bio)),
                  {
                    concurrency: "unbounded"
                  }
                )
              )
              const seconds = (Date.now() - started) / 1000
              expect(results).toMatchObject({ _tag: "Right", right: [null, null] })
              const passed = ofPlugin(logs.lines, "log-flood").filter((l) => !SUMMARY.test(l.message))
              expect(passed.length).toBeLessThanOrEqual(
                budget.burstLines + budget.linesPerSecond * seconds + 2
              )
            })
          )
        }),
      120_000
    )

    it.scoped(
      "multi-megabyte log lines are cut to 4 KiB with a marker",
      () =>
        Effect.gen(function* () {
          const logs = captureLogs()
          yield* logs.provide(
            Effect.gen(function* () {
              const long = yield* load("log-long-line")
              const result = yield* alongsideHealthy(
                yield* loadHealthy,
                long.call("nd_get_artist_biography", bio)
              )
              expect(result).toMatchObject({ _tag: "Right", right: null })
              const lines = ofPlugin(logs.lines, "log-long-line")
              // 64 lines of 4 KiB fit the default byte burst (1 MiB): all arrive, each cut.
              expect(lines).toHaveLength(64)
              for (const line of lines) {
                expect(line.level).toBe("WARN")
                expect(line.message).toBe(
                  `${"\u0000".repeat(4096)} … [truncated ${8 * 1024 * 1024 - 4096} bytes]`
                )
              }
            })
          )
        }),
      120_000
    )

    it.scoped(
      "a WASI stdout/stderr flood is budgeted like logs",
      () =>
        Effect.gen(function* () {
          const logs = captureLogs()
          yield* logs.provide(
            Effect.gen(function* () {
              const flood = yield* load("stdout-flood", { logBudget: budget })
              const started = Date.now()
              const result = yield* alongsideHealthy(
                yield* loadHealthy,
                flood.call("nd_get_artist_biography", bio)
              )
              const seconds = (Date.now() - started) / 1000
              expect(result).toMatchObject({ _tag: "Right", right: null })
              const passed = ofPlugin(logs.lines, "stdout-flood").filter((l) => !SUMMARY.test(l.message))
              expect(passed.length).toBeGreaterThan(0)
              expect(passed.length).toBeLessThanOrEqual(
                budget.burstLines + budget.linesPerSecond * seconds + 1
              )
              expect(passed.every((l) => l.message === "stdout line")).toBe(true)
              expect(new Set(passed.map((l) => l.level))).toEqual(new Set(["INFO", "WARN"]))
              yield* untilAllReported(flood, logs.lines, 2_000_000)
            })
          )
        }),
      120_000
    )

    it.scoped(
      "a 64 MiB stderr line without a newline is cut to 4 KiB",
      () =>
        Effect.gen(function* () {
          const logs = captureLogs()
          yield* logs.provide(
            Effect.gen(function* () {
              const flood = yield* load("stdout-flood")
              const result = yield* alongsideHealthy(yield* loadHealthy, flood.call("long_line"))
              expect(result).toMatchObject({ _tag: "Right", right: null })
              const lines = ofPlugin(logs.lines, "stdout-flood")
              expect(lines.map((l) => [l.level, l.message])).toEqual([
                ["WARN", `${"x".repeat(4096)} … [truncated ${64 * 1024 * 1024 - 4096} bytes]`]
              ])
            })
          )
        }),
      120_000
    )
  }
)

layer(
  testEngine({
    runtime: { poolSize: 1, logBudget: { linesPerSecond: 0, maxLineBytes: 100 } }
  }),
  { excludeTestServices: true }
)("guest output budgets set for the whole runtime", (it) => {
  it.scoped("a runtime budget of 0 lines/s drops every line and says so once", () =>
    Effect.gen(function* () {
      const logs = captureLogs()
      yield* logs.provide(
        Effect.gen(function* () {
          const flood = yield* load("log-flood")
          expect(yield* flood.call("nd_get_artist_biography", bio)).toBeNull()
          yield* realSleep(10)
          const lines = ofPlugin(logs.lines, "log-flood")
          expect(lines).toHaveLength(1)
          expect(lines[0]!.message).toMatch(SUMMARY)
          expect(droppedIn(lines)).toBe(5_000_000)
          expect(lines[0]!.message).toContain("0 lines/s")
        })
      )
    })
  )

  it.scoped(
    "a plugin's own budget overrides the runtime's, and its line cap applies to stdout",
    () =>
      Effect.gen(function* () {
        const logs = captureLogs()
        yield* logs.provide(
          Effect.gen(function* () {
            const flood = yield* load("stdout-flood", { logBudget: { linesPerSecond: 10 } })
            expect(yield* flood.call("long_line")).toBeNull()
            const lines = ofPlugin(logs.lines, "stdout-flood")
            expect(lines.map((l) => l.message)).toEqual([
              `${"x".repeat(100)} … [truncated ${64 * 1024 * 1024 - 100} bytes]`
            ])
          })
        )
      }),
    120_000
  )
})

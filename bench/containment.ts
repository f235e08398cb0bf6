/**
 * The containment harness shared by `npm run bench` (its `containment` section), `npm run soak` and
 * the short soak test in `npm test`: a healthy plugin is called at a steady pace while hostile
 * plugins attack, one class at a time or all at once, and the healthy plugin's latency, the
 * process's memory, event-loop lag, threads and file descriptors are recorded.
 *
 * An attack is a fixture plus what drives it; the classes live in `bench/attacks.ts`.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { existsSync, readdirSync } from "node:fs"
import { monitorEventLoopDelay } from "node:perf_hooks"
import type { LoadedPlugin, PluginLoader } from "../src/loader/PluginLoader.js"
import { percentile, rssMb } from "./stats.js"

/** What an attack did: calls `Started`, and by outcome (`Done`, or the error tag of the hostile calls). */
export type Outcomes = Record<string, number>

export interface Attack<R = Scope.Scope | PluginLoader> {
  /** Short name, used as the key in reports (`log-flood`, `pool-sleepers`, …). */
  readonly name: string
  /** One line for the report: what the hostile side does. */
  readonly description: string
  /**
   * Measured alone only (the bench's per-class section), left out of the all-at-once soak: set for
   * the scheduler floods, whose hundreds of callbacks queued behind every other class make the
   * soak's scope take minutes to close (a known limit, see docs/security.md).
   */
  readonly aloneOnly?: boolean
  /** Starts the attack in the current scope; its fibers end when the scope closes. */
  readonly start: Effect.Effect<Outcomes, unknown, R>
}

/** Calls `exportName` of `plugin` from `fibers` fibers, over and over, counting outcomes. */
export const hammer = (
  plugin: LoadedPlugin,
  exportName: string,
  input: string,
  options: { readonly fibers: number; readonly timeoutMs?: number; readonly pauseMs?: number }
): Effect.Effect<Outcomes, never, Scope.Scope> =>
  Effect.gen(function* () {
    const outcomes: Outcomes = {}
    const count = (tag: string) => {
      outcomes[tag] = (outcomes[tag] ?? 0) + 1
    }
    const once = Effect.sync(() => count("Started")).pipe(
      Effect.zipRight(
        plugin
          .call(
            exportName,
            input,
            options.timeoutMs === undefined ? undefined : { timeoutMs: options.timeoutMs }
          )
          .pipe(
            Effect.matchCause({
              onSuccess: () => count("Done"),
              onFailure: (cause) =>
                count(
                  cause._tag === "Fail" && typeof cause.error === "object" && cause.error !== null
                    ? String((cause.error as { _tag?: unknown })._tag ?? "Failure")
                    : cause._tag
                )
            }),
            Effect.zipRight(options.pauseMs ? Effect.sleep(options.pauseMs) : Effect.yieldNow())
          )
      )
    )
    for (let i = 0; i < options.fibers; i++) yield* Effect.forkScoped(Effect.forever(once))
    return outcomes
  })

export interface HealthyProbe {
  readonly calls: number
  readonly failures: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
}

/**
 * Calls the healthy plugin sequentially, pausing `intervalMs` between calls, for `durationMs`
 * (and at least `minCalls` calls). A failed or wrong answer counts as a failure.
 */
export const probeHealthy = (
  call: Effect.Effect<boolean, unknown>,
  options: { readonly durationMs: number; readonly intervalMs: number; readonly minCalls: number }
): Effect.Effect<HealthyProbe> =>
  Effect.gen(function* () {
    const latencies: Array<number> = []
    let failures = 0
    const end = performance.now() + options.durationMs
    while (performance.now() < end || latencies.length < options.minCalls) {
      const started = performance.now()
      const ok = yield* call.pipe(Effect.orElseSucceed(() => false))
      latencies.push(performance.now() - started)
      if (!ok) failures++
      yield* Effect.sleep(options.intervalMs)
    }
    return {
      calls: latencies.length,
      failures,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      maxMs: Math.max(...latencies)
    }
  })

/** Threads and open file descriptors of this process (Linux; `undefined` elsewhere). */
export const processHandles = (): { readonly threads?: number; readonly fds?: number } =>
  existsSync("/proc/self/task")
    ? { threads: readdirSync("/proc/self/task").length, fds: readdirSync("/proc/self/fd").length }
    : {}

export interface ProcessWatch {
  /** Peak RSS (MiB) seen since the watch began, sampled every 50 ms. */
  readonly peakRssMb: () => number
  /** Event-loop delay percentiles (ms) since the watch began. */
  readonly eventLoopLag: () => { readonly p50Ms: number; readonly p99Ms: number; readonly maxMs: number }
}

/** Samples RSS and event-loop delay for as long as the scope is open. */
export const watchProcess: Effect.Effect<ProcessWatch, never, Scope.Scope> = Effect.gen(function* () {
  let peak = rssMb()
  const histogram = monitorEventLoopDelay({ resolution: 10 })
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      histogram.enable()
      return setInterval(() => {
        peak = Math.max(peak, rssMb())
      }, 50)
    }),
    (timer) =>
      Effect.sync(() => {
        clearInterval(timer)
        histogram.disable()
      })
  )
  const ms = (ns: number) => ns / 1e6
  return {
    peakRssMb: () => Math.max(peak, rssMb()),
    eventLoopLag: () => ({
      p50Ms: ms(histogram.percentile(50)),
      p99Ms: ms(histogram.percentile(99)),
      maxMs: ms(histogram.max)
    })
  }
})

export interface ClassResult {
  readonly name: string
  readonly description: string
  readonly healthy: HealthyProbe
  /** Healthy p99 under this attack ÷ healthy p99 alone. */
  readonly p99Ratio: number
  readonly outcomes: Outcomes
}

export interface ContainmentOptions {
  readonly attacks: ReadonlyArray<Attack<Scope.Scope>>
  /** The healthy plugin's call; `true` when the answer is right. */
  readonly healthy: Effect.Effect<boolean, unknown>
  readonly durationMs: number
  readonly intervalMs: number
  readonly minCalls: number
  /** How long to wait after the attacks' scopes close before counting threads and descriptors. */
  readonly settleMs?: number
  /**
   * After `settleMs`, how long to keep polling until threads and descriptors are back (default 0:
   * count once). The count is still compared by the caller.
   */
  readonly settleDeadlineMs?: number
  /** Called before and after each stage, for progress lines. */
  readonly progress?: (line: string) => void
}

/** The healthy plugin alone, then under each attack class alone (each in its own scope). */
export const perClass = (options: ContainmentOptions) =>
  Effect.gen(function* () {
    const probe = probeHealthy(options.healthy, options)
    const alone = yield* probe
    options.progress?.(`alone: p50 ${alone.p50Ms.toFixed(3)} ms, p99 ${alone.p99Ms.toFixed(3)} ms`)
    const classes: Array<ClassResult> = []
    for (const attack of options.attacks) {
      const result = yield* Effect.scoped(
        Effect.gen(function* () {
          const outcomes = yield* attack.start
          const healthy = yield* probe
          return { outcomes: { ...outcomes }, healthy }
        })
      )
      const entry = {
        name: attack.name,
        description: attack.description,
        healthy: result.healthy,
        p99Ratio: result.healthy.p99Ms / alone.p99Ms,
        outcomes: result.outcomes
      }
      classes.push(entry)
      options.progress?.(
        `${attack.name}: healthy p99 ${entry.healthy.p99Ms.toFixed(3)} ms (${entry.p99Ratio.toFixed(2)}× alone), ` +
          `${entry.healthy.failures} failed of ${entry.healthy.calls}; hostile ${JSON.stringify(entry.outcomes)}`
      )
    }
    return { alone, classes }
  })

export interface SoakResult {
  readonly alone: HealthyProbe
  readonly underAttack: HealthyProbe
  readonly outcomes: Record<string, Outcomes>
  readonly peakRssMb: number
  readonly rssBeforeMb: number
  readonly eventLoopLag: { readonly p50Ms: number; readonly p99Ms: number; readonly maxMs: number }
  readonly handlesBefore: { readonly threads?: number; readonly fds?: number }
  readonly handlesAfter: { readonly threads?: number; readonly fds?: number }
}

/** Every attack class at once for `durationMs`, beside the healthy plugin. */
export const soak = (options: ContainmentOptions) =>
  Effect.gen(function* () {
    const alone = yield* probeHealthy(options.healthy, {
      ...options,
      durationMs: Math.min(options.durationMs, 3_000)
    })
    const together = options.attacks.filter((attack) => !attack.aloneOnly)
    const handlesBefore = processHandles()
    const rssBeforeMb = rssMb()
    const watched = yield* Effect.scoped(
      Effect.gen(function* () {
        const watch = yield* watchProcess
        const outcomes: Record<string, Outcomes> = {}
        for (const attack of together) outcomes[attack.name] = yield* attack.start
        options.progress?.(`all ${together.length} attack classes running`)
        const underAttack = yield* probeHealthy(options.healthy, options)
        const snapshot: Record<string, Outcomes> = {}
        for (const [name, counts] of Object.entries(outcomes)) snapshot[name] = { ...counts }
        return {
          underAttack,
          outcomes: snapshot,
          peakRssMb: watch.peakRssMb(),
          eventLoopLag: watch.eventLoopLag()
        }
      })
    )
    // Attack scopes are closed: replaced workers and closed sockets should come back to where they
    // were. Poll until they do (a busy machine stops threads late), up to the deadline.
    yield* Effect.sleep(options.settleMs ?? 500)
    const settled = (h: ReturnType<typeof processHandles>) =>
      h.threads === undefined ||
      (h.threads <= (handlesBefore.threads ?? 0) + 2 && (h.fds ?? 0) <= (handlesBefore.fds ?? 0) + 8)
    const deadline = Date.now() + (options.settleDeadlineMs ?? 0)
    let handlesAfter = processHandles()
    while (!settled(handlesAfter) && Date.now() < deadline) {
      yield* Effect.sleep(250)
      handlesAfter = processHandles()
    }
    return {
      alone,
      rssBeforeMb,
      handlesBefore,
      handlesAfter,
      ...watched
    } satisfies SoakResult
  })

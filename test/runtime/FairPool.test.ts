/**
 * Fair sharing of the worker pool: hostile plugins whose calls sleep (WASI `poll_oneoff`) or wait
 * on a slow host call just under their timeout saturate the pool, and a healthy plugin loaded in
 * the same engine keeps answering fast. Also: queued calls fail at their own deadline, idle extra
 * workers are reclaimed, workers that cannot start are retried with back-off and surface a typed
 * error.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import { readFileSync } from "node:fs"
import * as MetadataAgent from "../../src/capabilities/MetadataAgent.js"
import { type LoadedPlugin, PluginLoader } from "../../src/loader/PluginLoader.js"
import { WorkerPool } from "../../src/runtime/internal/WorkerPool.js"
import { defaultLogBudget, makeLogBudget } from "../../src/runtime/abi/protocol.js"
import { WasmRuntime } from "../../src/runtime/WasmRuntime.js"
import { testServer } from "../host/http/support.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { eventually, realSleep } from "../support/wait.js"

const POOL_SIZE = 2
/** Hostile calls wait this long, just under their timeout. */
const HOSTILE_WAIT_MS = 1_200
const HOSTILE_TIMEOUT_MS = 1_500
const CALLERS_PER_HOSTILE = 4
const HEALTHY_CALLS = 100

const artist = { id: "ar-1", name: "Healthy" }

/** What the hostile callers got back. */
interface Tally {
  ok: number
  readonly errors: Map<string, number>
}

/** `callers` fibers per plugin, each calling again as soon as its last call ended. */
const saturate = (plugins: ReadonlyArray<LoadedPlugin>, input: string, tally: Tally) =>
  Effect.forEach(
    plugins.flatMap((plugin) => Array.from({ length: CALLERS_PER_HOSTILE }, () => plugin)),
    (plugin) =>
      Effect.fork(
        Effect.forever(
          Effect.either(plugin.call("nd_get_artist_biography", input)).pipe(
            Effect.map((result) => {
              if (result._tag === "Right") tally.ok++
              else {
                const error = result.left
                const tag = error._tag === "PluginTimeoutError" ? `${error._tag}:${error.phase}` : error._tag
                tally.errors.set(tag, (tally.errors.get(tag) ?? 0) + 1)
              }
            })
          )
        )
      )
  )

const percentile = (values: ReadonlyArray<number>, p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!
}

/** Loads `count` copies of a fixture under distinct IDs (each is a plugin of its own for the pool). */
const loadCopies = (id: string, count: number) =>
  Effect.flatMap(PluginLoader, (loader) =>
    Effect.forEach(
      Array.from({ length: count }, (_, i) => i),
      // The slow test server is on loopback, which takes the operator's grant.
      (i) =>
        loader.loadBytes(`${id}-${i}`, readFileSync(fixture(id)), {
          timeoutMs: HOSTILE_TIMEOUT_MS,
          allowedNetworks: ["127.0.0.1/32"]
        })
    )
  )

/**
 * Saturates the pool with `hostiles`, then times `HEALTHY_CALLS` calls of a healthy agent one after
 * the other; checks the pool stayed saturated throughout and returns the healthy latencies.
 */
const healthyLatenciesUnder = (hostiles: ReadonlyArray<LoadedPlugin>, input: string) =>
  Effect.gen(function* () {
    const runtime = yield* WasmRuntime
    const loader = yield* PluginLoader
    const agent = MetadataAgent.fromPlugin(yield* loader.loadFile(fixture("agent-full")))
    const tally: Tally = { ok: 0, errors: new Map() }
    const fibers = yield* saturate(hostiles, input, tally)
    // Saturated: every worker of the pool proper is busy and calls wait.
    yield* eventually(
      "the hostile plugins to saturate the pool",
      () => {
        const stats = Effect.runSync(runtime.poolStats)
        return stats.busy >= POOL_SIZE && stats.queued > 0
      },
      10_000
    )
    const latencies: Array<number> = []
    for (let i = 0; i < HEALTHY_CALLS; i++) {
      const started = performance.now()
      expect(yield* agent.getArtistBiography(artist)).toEqual(Option.some("Biography for Healthy"))
      latencies.push(performance.now() - started)
      // More slow calls than p99 allows: no need to wait for the rest.
      if (latencies.filter((ms) => ms >= 1_000).length > HEALTHY_CALLS / 100) break
      yield* realSleep(15)
    }
    const after = yield* runtime.poolStats
    yield* Fiber.interruptAll(fibers)
    // Still saturated at the end, and the hostile plugins were served too (not starved).
    expect(after.queued).toBeGreaterThan(0)
    expect(after.busy).toBeGreaterThanOrEqual(POOL_SIZE)
    expect(tally.ok).toBeGreaterThan(0)
    // Their calls may reach their deadline, waiting or (with jitter) running: typed timeouts only.
    expect([...tally.errors.keys()].filter((tag) => !tag.startsWith("PluginTimeoutError:"))).toEqual([])
    return latencies
  })

layer(testEngine({ runtime: { poolSize: POOL_SIZE, burstIdleMs: 400 } }), { excludeTestServices: true })(
  "fair worker pool",
  (it) => {
    it.scoped(
      "plugins sleeping in WASI poll_oneoff just under their timeout do not starve a healthy plugin",
      () =>
        Effect.gen(function* () {
          const sleepers = yield* loadCopies("sleeper", 3)
          const latencies = yield* healthyLatenciesUnder(sleepers, String(HOSTILE_WAIT_MS))
          // Unfixed, every healthy call queued behind the sleepers: ~1.3 s each, 19 s in the issue.
          expect(percentile(latencies, 99)).toBeLessThan(1_000)
        }),
      60_000
    )

    it.scoped(
      "plugins blocked in slow host calls just under their timeout do not starve a healthy plugin",
      () =>
        Effect.gen(function* () {
          const server = yield* testServer((_request, response) => {
            const timer = setTimeout(() => response.end("late"), HOSTILE_WAIT_MS)
            response.on("close", () => clearTimeout(timer))
          })
          const slow = yield* loadCopies("slow-host", 3)
          const latencies = yield* healthyLatenciesUnder(slow, server.url("/slow"))
          expect(percentile(latencies, 99)).toBeLessThan(1_000)
          expect(server.received.length).toBeGreaterThan(3)
        }),
      60_000
    )

    it.scoped("a call still queued at its deadline fails with a typed timeout and the pool goes on", () =>
      Effect.gen(function* () {
        const runtime = yield* WasmRuntime
        const [sleeper] = yield* loadCopies("sleeper", 1)
        // The sleeper may hold one worker (its cap), so its second call can only wait.
        const first = yield* Effect.fork(sleeper!.call("nd_get_artist_biography", "1200"))
        yield* eventually("the first call to run", () => Effect.runSync(runtime.poolStats).busy === 1)
        const started = Date.now()
        const second = yield* Effect.flip(sleeper!.call("nd_get_artist_biography", "0", { timeoutMs: 200 }))
        expect(Date.now() - started).toBeLessThan(1_100)
        expect(second).toMatchObject({ _tag: "PluginTimeoutError", phase: "Queued", timeoutMs: 200 })
        expect(second.message).toContain("never started")
        expect(second.message).toContain("poolSize")
        expect(yield* Fiber.join(first)).toBeNull()
        expect(yield* sleeper!.call("ping")).toBeNull()
      })
    )

    it.scoped("extra workers lent during a burst are stopped once idle", () =>
      Effect.gen(function* () {
        const runtime = yield* WasmRuntime
        const sleepers = yield* loadCopies("sleeper", POOL_SIZE + 2)
        // One sleeping call per plugin: two on the pool proper, the others on extra workers.
        yield* Effect.forEach(sleepers, (plugin) => plugin.call("nd_get_artist_biography", "300"), {
          concurrency: "unbounded"
        })
        const stats = yield* runtime.poolStats
        expect(stats.workers).toBeGreaterThan(POOL_SIZE)
        yield* eventually(
          "idle extra workers to be reclaimed",
          () => {
            const now = Effect.runSync(runtime.poolStats)
            return now.burstWorkers === 0 && now.workers === POOL_SIZE
          },
          10_000
        )
        expect((yield* runtime.workerThreadIds).length).toBe(POOL_SIZE)
      })
    )
  }
)

describe("workers that cannot start", () => {
  const warnings: Array<string> = []
  const recordWarnings = Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Warning") warnings.push((Array.isArray(message) ? message : [message]).join(" "))
    })
  )
  // A 1 MB heap cannot even load the worker's code: every start dies with ERR_WORKER_OUT_OF_MEMORY.
  const starved = testEngine({ runtime: { poolSize: 1, workerHeapMb: 1, defaultTimeoutMs: 2_500 } }).pipe(
    Layer.provide(recordWarnings)
  )

  layer(starved, { excludeTestServices: true })("a worker heap limit too small to start", (it) => {
    it.scoped("a load fails with a typed error at its deadline, and every failed start is logged", () =>
      Effect.gen(function* () {
        const loader = yield* PluginLoader
        const started = Date.now()
        const error = yield* Effect.flip(loader.loadFile(fixture("agent-full")))
        expect(Date.now() - started).toBeLessThan(15_000)
        expect(error).toMatchObject({ _tag: "PluginLoadError", reason: "Start" })
        expect(error.message).toContain("could not start a plugin worker thread")
        expect(error.message).toContain("workerHeapMb")
        const delays = warnings.map((line) => Number(/next try in (\d+) ms/.exec(line)?.[1]))
        expect(delays.length).toBeGreaterThanOrEqual(3)
        expect(delays.slice(0, 3)).toEqual([100, 200, 400])
        expect(warnings[0]).toContain("ERR_WORKER_OUT_OF_MEMORY")
      })
    )
  })

  it.live(
    "a call of a registered plugin fails as WorkerStartError at its deadline, never hangs",
    () =>
      Effect.gen(function* () {
        const failures: Array<{ at: number; retryInMs: number }> = []
        const pool = yield* Effect.promise(() =>
          WorkerPool.make({
            size: 1,
            maxWorkersPerPlugin: 1,
            workerHeapMb: 1,
            maxBurstWorkers: 2,
            onStartFailure: (failure) => failures.push({ at: Date.now(), retryInMs: failure.retryInMs })
          })
        )
        yield* Effect.addFinalizer(() => Effect.promise(() => pool.close()))
        pool.register("p#1", { host: () => undefined, log: () => undefined })
        const module = yield* Effect.promise(() =>
          WebAssembly.compile(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]))
        )
        const outcome = yield* Effect.promise(() =>
          pool.call(
            {
              key: "p#1",
              id: "p",
              module,
              config: {},
              userFunctions: [],
              workerFunctions: [],
              envHttp: false,
              logLevel: 2,
              freshInstance: false,
              mounts: [],
              limits: { maxHostMemoryBytes: 1, maxOutputBytes: 1, maxVarBytes: 1, maxLinearMemoryBytes: 1 },
              logBudget: makeLogBudget(defaultLogBudget)
            },
            "run",
            new Uint8Array(0),
            1_500
          )
        )
        expect(outcome).toMatchObject({ _tag: "WorkerStart" })
        expect(outcome._tag === "WorkerStart" && outcome.message).toContain("ERR_WORKER_OUT_OF_MEMORY")
        // Back-off: each retry waited at least what the previous failure announced, doubling.
        expect(failures.length).toBeGreaterThanOrEqual(3)
        for (let i = 1; i < failures.length; i++) {
          expect(failures[i]!.retryInMs).toBe(Math.min(failures[i - 1]!.retryInMs * 2, 10_000))
          expect(failures[i]!.at - failures[i - 1]!.at).toBeGreaterThanOrEqual(failures[i - 1]!.retryInMs - 5)
        }
        expect(pool.size).toBeLessThanOrEqual(1)
      }).pipe(Effect.scoped),
    20_000
  )
})

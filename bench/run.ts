/**
 * `npm run bench`: throughput, latency, fault recovery and memory figures of the engine, against
 * the stock Extism JS SDK as a baseline. Prints progress, a table, and writes
 * `bench/results/latest.json`. It reports; it never fails on a missed target.
 * See docs/benchmarks.md for what each figure means.
 */
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs"
import { footprint } from "./footprint.js"
import { type HostCallFigures, hostCalls, manager as managerBench } from "./services.js"
import { availableParallelism, cpus, loadavg } from "node:os"
import { fileURLToPath } from "node:url"
import * as Engine from "../src/Engine.js"
import { PluginLoader } from "../src/loader/PluginLoader.js"
import { WasmRuntime } from "../src/runtime/WasmRuntime.js"
import { postMessageRoundTrips, sharedMemoryRoundTrips } from "./reference.js"
import { attackEnvironment, healthyCall } from "./attacks.js"
import { measureCliStart } from "./cliStart.js"
import { measureCluster } from "./cluster.js"
import { perClass } from "./containment.js"
import {
  callAndReset,
  callOnly,
  closeAll,
  createSdkPlugins,
  sdkSequentialThroughput,
  sdkThroughput,
  wasmOf
} from "./sdk.js"
import {
  collectGarbage,
  foreignCpu,
  formatNumber,
  idleShare,
  median,
  percentile,
  round,
  rssMb,
  table
} from "./stats.js"

const IN_FLIGHT = 64
const WARMUP_MS = 1_000
const MEASURE_MS = 3_000
const LATENCY_WARMUP_CALLS = 500
const LATENCY_CALLS = 5_000
const HEALTHY_MIN_CALLS = 2_000
const HEALTHY_MIN_MS = 2_500
const LOOPERS = 2
const LOOP_TIMEOUT_MS = 300
const RECOVERY_TIMEOUT_MS = 200
const RECOVERY_SAMPLES = 5
const RSS_CALLS = 100_000
/** Above this share of the CPU taken by other processes during a stage, its figures are suspect. */
const BUSY_SHARE = 0.05

const root = new URL("../", import.meta.url)
const fixture = (id: string): string => fileURLToPath(new URL(`build/fixtures/${id}.ndp`, root))
const resultsDir = fileURLToPath(new URL("bench/results/", root))
const resultsFile = `${resultsDir}latest.json`

const artistInput = '{"id":"1","name":"X"}'
const configInput = '{"key":"k"}'

// The SDK loads `node:wasi`, which prints an ExperimentalWarning; keep every other warning.
process.removeAllListeners("warning")
process.on("warning", (warning) => {
  if (warning.name !== "ExperimentalWarning") console.warn(`${warning.name}: ${warning.message}`)
})

/** Threads of this process (Linux only): a worker the engine fails to end shows up here. */
const osThreads = (): number | undefined =>
  existsSync("/proc/self/task") ? readdirSync("/proc/self/task").length : undefined

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`

/** Each stage's duration and the CPU share other processes took meanwhile (0..1 of all cores). */
const stages: Array<{ readonly name: string; readonly seconds: number; readonly otherProcessesCpu: number }> =
  []

/** Runs one stage, printing its name, its duration and a one-line summary of its result. */
const stage = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>, summary: (a: A) => string) =>
  Effect.gen(function* () {
    yield* Effect.sync(() => process.stdout.write(`▸ ${name} … `))
    const start = performance.now()
    const others = foreignCpu()
    const result = yield* effect
    yield* Effect.sync(() => {
      const elapsed = performance.now() - start
      const share = others()
      stages.push({ name, seconds: round(elapsed / 1000, 2), otherProcessesCpu: round(share, 2) })
      const busy = share >= BUSY_SHARE ? `, other processes took ${Math.round(share * 100)}% of the CPU` : ""
      console.log(`${summary(result)} (${seconds(elapsed)}${busy})`)
    })
    return result
  })

/** Calls per second of `op` with `inFlight` fibers each calling it in a loop for `durationMs`. */
const throughput = (op: Effect.Effect<unknown>, inFlight: number, durationMs: number) =>
  Effect.gen(function* () {
    let calls = 0
    const start = performance.now()
    const deadline = start + durationMs
    yield* Effect.forEach(
      Array.from({ length: inFlight }),
      () =>
        Effect.gen(function* () {
          while (performance.now() < deadline) {
            yield* op
            calls++
          }
        }),
      { concurrency: "unbounded", discard: true }
    )
    return (calls / (performance.now() - start)) * 1000
  })

/** Warm-up, then the measured run. */
const warmThroughput = (op: Effect.Effect<unknown>) =>
  Effect.zipRight(throughput(op, IN_FLIGHT, WARMUP_MS), throughput(op, IN_FLIGHT, MEASURE_MS))

/** Exactly `total` calls of `op`, `inFlight` at a time. */
const runCalls = (op: Effect.Effect<unknown>, total: number, inFlight: number) =>
  Effect.gen(function* () {
    let started = 0
    yield* Effect.forEach(
      Array.from({ length: inFlight }),
      () =>
        Effect.gen(function* () {
          while (started < total) {
            started++
            yield* op
          }
        }),
      { concurrency: "unbounded", discard: true }
    )
  })

/** Latency in ms of each of `count` strictly sequential calls (one in flight). */
const latencies = (op: Effect.Effect<unknown>, count: number) =>
  Effect.gen(function* () {
    const samples: Array<number> = []
    for (let i = 0; i < count; i++) {
      const start = performance.now()
      yield* op
      samples.push(performance.now() - start)
    }
    return samples
  })

/** Sequential latencies until both `minCalls` calls and `minMs` have passed. */
const latenciesFor = (op: Effect.Effect<unknown>, minCalls: number, minMs: number) =>
  Effect.gen(function* () {
    const samples: Array<number> = []
    const deadline = performance.now() + minMs
    while (samples.length < minCalls || performance.now() < deadline) {
      const start = performance.now()
      yield* op
      samples.push(performance.now() - start)
    }
    return samples
  })

const program = Effect.gen(function* () {
  const benchStart = performance.now()
  const loader = yield* PluginLoader
  const { options } = yield* WasmRuntime
  const poolSize = options.poolSize
  const quiet = { logLevel: LogLevel.Warning } as const
  console.log(
    `ndp-engine bench: Node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? "unknown CPU"}), pool of ${poolSize} workers, ${IN_FLIGHT} calls in flight`
  )

  const idleAtStart = yield* Effect.promise(() => idleShare(1_000))
  const loadAverage = loadavg()[0] ?? 0
  console.log(
    `  machine ${Math.round(idleAtStart * 100)}% idle over 1 s before starting (1-min load average ${loadAverage.toFixed(2)})`
  )
  if (idleAtStart < 0.9) {
    console.log("  warning: something else is using the CPU; the figures below will be skewed")
  }

  const agent = yield* loader.loadFile(fixture("agent-full"), { ...quiet, config: { k: "v" } })
  const loop = yield* loader.loadFile(fixture("loop-export"), { ...quiet, timeoutMs: RECOVERY_TIMEOUT_MS })

  const noop = agent.call("noop").pipe(Effect.orDie)
  const hostCall = agent.call("config_value", configInput).pipe(Effect.orDie)
  const healthy = agent.call("nd_get_artist_biography", artistInput).pipe(Effect.orDie)

  // Sanity: the host call really crosses the channel, the agent really answers.
  const decoder = new TextDecoder()
  const hostAnswer = decoder.decode((yield* hostCall) ?? new Uint8Array(0))
  const bioAnswer = decoder.decode((yield* healthy) ?? new Uint8Array(0))
  console.log(`  config_value → ${hostAnswer}; nd_get_artist_biography → ${bioAnswer}`)

  // ── Engine throughput and latency ────────────────────────────────────────────────────────────
  const callsPerSec = yield* stage(
    "engine: noop throughput",
    warmThroughput(noop),
    (r) => `${formatNumber(r)} calls/s`
  )
  const noopLatency = yield* stage(
    "engine: sequential noop latency",
    Effect.zipRight(latencies(noop, LATENCY_WARMUP_CALLS), latencies(noop, LATENCY_CALLS)),
    (s) => `p50 ${formatNumber(percentile(s, 0.5))} ms, p99 ${formatNumber(percentile(s, 0.99))} ms`
  )
  const hostCallCallsPerSec = yield* stage(
    "engine: config_value (one host call) throughput",
    warmThroughput(hostCall),
    (r) => `${formatNumber(r)} calls/s`
  )

  // ── Memory: RSS growth over 100k calls ───────────────────────────────────────────────────────
  const rss = yield* stage(
    `engine: RSS over ${RSS_CALLS.toLocaleString("en-US")} noop calls`,
    Effect.gen(function* () {
      collectGarbage()
      collectGarbage()
      yield* Effect.sleep("200 millis")
      const beforeMb = rssMb()
      yield* runCalls(noop, RSS_CALLS, IN_FLIGHT)
      collectGarbage()
      collectGarbage()
      yield* Effect.sleep("200 millis")
      const afterMb = rssMb()
      return { beforeMb, afterMb, growthMb: ((afterMb - beforeMb) * 100_000) / RSS_CALLS }
    }),
    (r) => `${formatNumber(r.beforeMb)} → ${formatNumber(r.afterMb)} MB`
  )

  // ── Fault isolation: timeout recovery, healthy latency next to a looping plugin ──────────────
  const threadsBeforeTimeouts = osThreads()
  const recoverySamples = yield* stage(
    `engine: timeout recovery (${RECOVERY_SAMPLES} × ${RECOVERY_TIMEOUT_MS} ms timeouts)`,
    Effect.gen(function* () {
      const samples: Array<number> = []
      for (let i = 0; i < RECOVERY_SAMPLES; i++) {
        const error = yield* Effect.flip(loop.call("nd_get_artist_biography", artistInput))
        const failedAt = performance.now()
        if (error._tag !== "PluginTimeoutError") {
          return yield* Effect.dieMessage(`expected a timeout, got ${error._tag}: ${error.message}`)
        }
        yield* loop.call("ping").pipe(Effect.orDie)
        samples.push(performance.now() - failedAt)
        // Let the stopped worker's replacement come up, so every sample starts from the same state.
        yield* Effect.sleep("300 millis")
      }
      return samples
    }),
    (s) => `median ${formatNumber(median(s))} ms`
  )

  const healthyAlone = yield* stage(
    "engine: healthy biography latency, alone",
    Effect.zipRight(
      latencies(healthy, LATENCY_WARMUP_CALLS),
      latenciesFor(healthy, HEALTHY_MIN_CALLS, HEALTHY_MIN_MS)
    ),
    (s) => `p99 ${formatNumber(percentile(s, 0.99))} ms over ${s.length} calls`
  )
  let timeouts = 0
  const healthyLooping = yield* stage(
    `engine: healthy biography latency, ${LOOPERS} loopers (${LOOP_TIMEOUT_MS} ms timeouts)`,
    Effect.scoped(
      Effect.gen(function* () {
        const looper = loop.call("nd_get_artist_biography", artistInput, { timeoutMs: LOOP_TIMEOUT_MS }).pipe(
          Effect.catchTag("PluginTimeoutError", () => Effect.sync(() => timeouts++)),
          Effect.orDie,
          Effect.forever
        )
        for (let i = 0; i < LOOPERS; i++) yield* Effect.forkScoped(looper)
        yield* Effect.sleep("20 millis")
        return yield* latenciesFor(healthy, HEALTHY_MIN_CALLS, HEALTHY_MIN_MS)
      })
    ).pipe(Effect.zipLeft(Effect.sleep(`${LOOP_TIMEOUT_MS + 200} millis`))),
    (s) => `p99 ${formatNumber(percentile(s, 0.99))} ms over ${s.length} calls, ${timeouts} timeouts`
  )

  const threadsAfterTimeouts = osThreads()

  // ── Baseline: the stock Extism JS SDK ────────────────────────────────────────────────────────
  const wasm = wasmOf(fixture("agent-full"))
  // The SDK in worker mode over `plugins` separate SDK plugins (each its own worker), call + reset.
  const sdkWorkerStage = (plugins: number, name: string) =>
    stage(
      name,
      Effect.acquireUseRelease(
        Effect.promise(() => createSdkPlugins(wasm, plugins, true)),
        (created) =>
          Effect.promise(async () => {
            const op = callAndReset("noop")
            await sdkThroughput(created, op, IN_FLIGHT, WARMUP_MS)
            return sdkThroughput(created, op, IN_FLIGHT, MEASURE_MS)
          }),
        (created) => Effect.promise(() => closeAll(created))
      ),
      (r) => `${formatNumber(r)} calls/s`
    )
  const sdkWorker = yield* sdkWorkerStage(poolSize, `sdk: ${poolSize} runInWorker plugins, noop call + reset`)
  // The issue's baseline: one bare SDK plugin in a worker, as a user of the SDK would create it.
  const sdkWorkerSingle = yield* sdkWorkerStage(1, "sdk: 1 runInWorker plugin, noop call + reset")
  const sdkForeground = yield* stage(
    "sdk: one foreground plugin, sequential noop calls",
    Effect.acquireUseRelease(
      Effect.promise(() => createSdkPlugins(wasm, 1, false)),
      ([plugin]) =>
        Effect.promise(async () => {
          const op = callOnly("noop")
          await sdkSequentialThroughput(plugin!, op, WARMUP_MS)
          return sdkSequentialThroughput(plugin!, op, MEASURE_MS)
        }),
      (plugins) => Effect.promise(() => closeAll(plugins))
    ),
    (r) => `${formatNumber(r)} calls/s`
  )

  const referenceWorkers = options.maxWorkersPerPlugin
  const roundTripsPerSec = yield* stage(
    `reference: bare postMessage round trips, ${referenceWorkers} workers`,
    Effect.promise(() => postMessageRoundTrips(referenceWorkers, WARMUP_MS / 2, MEASURE_MS / 1.5)),
    (r) => `${formatNumber(r)} round trips/s`
  )

  const hostCallSummary = (r: HostCallFigures) =>
    `cache ${formatNumber(r.cacheGetPerSec)}/s, kv ${formatNumber(r.kvGetPerSec)}/s, config ${formatNumber(r.configGetPerSec)}/s`
  const sharedRoundTripsPerSec = yield* stage(
    `reference: shared-memory round trips (Atomics.waitAsync), ${referenceWorkers} workers`,
    Effect.promise(() => sharedMemoryRoundTrips(referenceWorkers, WARMUP_MS / 2, MEASURE_MS / 1.5)),
    (r) => `${formatNumber(r)} round trips/s`
  )

  const services = yield* stage(
    "host calls from Wasm: exports making 100 cache / KV store / config gets, 4 in flight",
    hostCalls(true),
    hostCallSummary
  )
  // The same with every host call answered on the main thread (hostCallsInWorker: false).
  const servicesOnMain = yield* stage(
    "host calls from Wasm, all on the main thread (hostCallsInWorker: false)",
    hostCalls(false),
    hostCallSummary
  )
  const footprintFigures = yield* stage(
    "footprint: RSS of 200 loaded idle plugins (default pool), load of 50, a 5 MB module's load",
    footprint(200),
    (r) =>
      `${formatNumber(r.rssPerPluginMb)} MB per plugin (${formatNumber(r.rssPerPluginBeyondLinearMemoryMb)} beyond linear memory); ${r.loadSmallPlugins} loaded in ${r.loadSmallMs} ms; large module ${r.large.coldLoadMs} ms cold`
  )
  const managerFigures = yield* stage(
    "manager: load 50 plugins, then 100 reloads under 4 continuous callers",
    managerBench(50, 100),
    (r) => `${r.loadAllMs} ms to load all; ${r.reloadUnderLoadFailedCalls} failed calls during reloads`
  )

  const cliStart = yield* stage(
    "cli: start of the compiled ndp (--help, inspect) against node -e 0",
    Effect.sync(() => measureCliStart()),
    (r) => `--help ${r.helpVsNode}× node -e 0, inspect ${r.inspectVsNode}× (node -e 0: ${r.nodeMs} ms)`
  )

  const cluster = yield* stage(
    "cluster: PostgreSQL KV store (2 nodes, 8 in flight) and failover of 3 ndp serve nodes",
    measureCluster,
    (r) =>
      `kv set ${formatNumber(r.kvSetPerSec)}/s, get ${formatNumber(r.kvGetPerSec)}/s; failover ${r.failoverMs} ms`
  )

  // ── Containment: the healthy plugin's p99 under each hostile class alone ÷ its p99 alone ──────
  const containment = yield* stage(
    "containment: a healthy plugin beside each hostile class of bench/attacks.ts (own engine)",
    Effect.scoped(
      Effect.gen(function* () {
        const { attacks, healthy } = yield* attackEnvironment()
        return yield* perClass({
          attacks,
          healthy: healthyCall(healthy),
          // ~400 calls per class: a p99 of 140 (the earlier setting) was its second-worst call, so one
          // GC pause decided a class's ratio.
          durationMs: 5_000,
          intervalMs: 10,
          minCalls: 400,
          progress: (line) => console.log(`    ${line}`)
        })
      })
    ),
    (r) =>
      `worst p99 ratio ${formatNumber(Math.max(...r.classes.map((c) => c.p99Ratio)))}× ` +
      `(${r.classes.filter((c) => c.p99Ratio < 2).length} of ${r.classes.length} classes under 2×)`
  )

  // ── Results ──────────────────────────────────────────────────────────────────────────────────
  const p50Ms = percentile(noopLatency, 0.5)
  const p99Ms = percentile(noopLatency, 0.99)
  const healthyP99Ms = percentile(healthyAlone, 0.99)
  const healthyP99WhileLoopingMs = percentile(healthyLooping, 0.99)
  const timeoutRecoveryMs = median(recoverySamples)
  const ratios = {
    engineVsSdkWorker: callsPerSec / sdkWorker,
    engineVsSingleSdkWorker: callsPerSec / sdkWorkerSingle,
    hostCallVsTrivial: hostCallCallsPerSec / callsPerSec,
    healthyP99Slowdown: healthyP99WhileLoopingMs / healthyP99Ms,
    engineVsPostMessage: callsPerSec / roundTripsPerSec,
    // Each against the main-thread path measured in the same run.
    configGetVsMainThread: services.configGetPerSec / servicesOnMain.configGetPerSec,
    kvGetVsMainThread: services.kvGetPerSec / servicesOnMain.kvGetPerSec,
    cacheGetVsMainThread: services.cacheGetPerSec / servicesOnMain.cacheGetPerSec
  }
  const targets = {
    engineVsSdkWorker: {
      target: ">= 4",
      actual: round(ratios.engineVsSdkWorker),
      pass: ratios.engineVsSdkWorker >= 4
    },
    engineVsSingleSdkWorker: {
      target: ">= 4",
      actual: round(ratios.engineVsSingleSdkWorker),
      pass: ratios.engineVsSingleSdkWorker >= 4
    },
    engineP50Ms: { target: "<= 0.1", actual: round(p50Ms), pass: p50Ms <= 0.1 },
    hostCallCallsPerSec: {
      target: ">= 15000",
      actual: Math.round(hostCallCallsPerSec),
      pass: hostCallCallsPerSec >= 15_000
    },
    healthyP99WhileLooping: {
      target: "< 2 × healthyP99Ms",
      actual: round(ratios.healthyP99Slowdown),
      pass: healthyP99WhileLoopingMs < 2 * healthyP99Ms
    },
    rssGrowthMbPer100kCalls: { target: "< 30", actual: round(rss.growthMb, 2), pass: rss.growthMb < 30 },
    engineVsPostMessage: {
      target: ">= 1.5",
      actual: round(ratios.engineVsPostMessage),
      pass: ratios.engineVsPostMessage >= 1.5
    },
    configGetVsMainThread: {
      target: ">= 10",
      actual: round(ratios.configGetVsMainThread),
      pass: ratios.configGetVsMainThread >= 10
    },
    kvGetVsMainThread: {
      target: ">= 5",
      actual: round(ratios.kvGetVsMainThread),
      pass: ratios.kvGetVsMainThread >= 5
    },
    cacheGetVsMainThread: {
      target: ">= 2",
      actual: round(ratios.cacheGetVsMainThread),
      pass: ratios.cacheGetVsMainThread >= 2
    },
    rssPerIdlePluginBeyondLinearMemoryMb: {
      target: "<= 2",
      actual: footprintFigures.rssPerPluginBeyondLinearMemoryMb,
      pass: footprintFigures.rssPerPluginBeyondLinearMemoryMb <= 2
    },
    reloadUnderLoadFailedCalls: {
      target: "= 0",
      actual: managerFigures.reloadUnderLoadFailedCalls,
      pass: managerFigures.reloadUnderLoadFailedCalls === 0
    }
  }
  const results = {
    node: process.version,
    cores: availableParallelism(),
    cpu: cpus()[0]?.model ?? "unknown",
    date: new Date().toISOString(),
    machineIdleAtStart: round(idleAtStart, 2),
    loadAverageAtStart: round(loadAverage, 2),
    engine: {
      poolSize,
      inFlight: IN_FLIGHT,
      callsPerSec: Math.round(callsPerSec),
      p50Ms: round(p50Ms),
      p99Ms: round(p99Ms),
      latencyCalls: noopLatency.length,
      hostCallCallsPerSec: Math.round(hostCallCallsPerSec)
    },
    sdkWorker: {
      plugins: poolSize,
      inFlight: IN_FLIGHT,
      resetAfterEachCall: true,
      callsPerSec: Math.round(sdkWorker)
    },
    sdkWorkerSingle: {
      plugins: 1,
      inFlight: IN_FLIGHT,
      resetAfterEachCall: true,
      callsPerSec: Math.round(sdkWorkerSingle)
    },
    sdkForeground: { callsPerSec: Math.round(sdkForeground) },
    reference: {
      workers: referenceWorkers,
      postMessageRoundTripsPerSec: Math.round(roundTripsPerSec),
      sharedMemoryRoundTripsPerSec: Math.round(sharedRoundTripsPerSec)
    },
    timeoutRecoveryMs: round(timeoutRecoveryMs),
    timeoutRecoverySamplesMs: recoverySamples.map((s) => round(s)),
    healthyP50Ms: round(percentile(healthyAlone, 0.5)),
    healthyP99Ms: round(healthyP99Ms),
    healthyCalls: healthyAlone.length,
    healthyP50WhileLoopingMs: round(percentile(healthyLooping, 0.5)),
    healthyP99WhileLoopingMs: round(healthyP99WhileLoopingMs),
    healthyCallsWhileLooping: healthyLooping.length,
    loopTimeoutsWhileMeasuring: timeouts,
    rssGrowthMbPer100kCalls: round(rss.growthMb, 2),
    rssMb: { before: round(rss.beforeMb, 1), after: round(rss.afterMb, 1) },
    hostCalls: services,
    hostCallsOnMainThread: servicesOnMain,
    footprint: footprintFigures,
    manager: managerFigures,
    cliStart,
    cluster,
    containment: {
      healthyAloneP99Ms: round(containment.alone.p99Ms),
      healthyAloneCalls: containment.alone.calls,
      classes: Object.fromEntries(
        containment.classes.map((c) => [
          c.name,
          {
            description: c.description,
            healthyP99Ms: round(c.healthy.p99Ms),
            healthyP50Ms: round(c.healthy.p50Ms),
            healthyCalls: c.healthy.calls,
            healthyFailures: c.healthy.failures,
            p99Ratio: round(c.p99Ratio, 2),
            hostileOutcomes: c.outcomes
          }
        ])
      )
    },
    ratios: {
      engineVsSdkWorker: round(ratios.engineVsSdkWorker),
      engineVsSingleSdkWorker: round(ratios.engineVsSingleSdkWorker),
      hostCallVsTrivial: round(ratios.hostCallVsTrivial),
      healthyP99Slowdown: round(ratios.healthyP99Slowdown),
      engineVsPostMessage: round(ratios.engineVsPostMessage),
      configGetVsMainThread: round(ratios.configGetVsMainThread),
      kvGetVsMainThread: round(ratios.kvGetVsMainThread),
      cacheGetVsMainThread: round(ratios.cacheGetVsMainThread)
    },
    targets,
    diagnostics: {
      // Threads of the process before and after the two timeout stages (Linux; null elsewhere).
      // Every timeout ends one worker and starts one, so the two should be equal.
      osThreadsBeforeTimeouts: threadsBeforeTimeouts ?? null,
      osThreadsAfterTimeouts: threadsAfterTimeouts ?? null,
      timeoutsCaused: RECOVERY_SAMPLES + timeouts
    },
    stages,
    totalSeconds: round((performance.now() - benchStart) / 1000, 1)
  }

  mkdirSync(resultsDir, { recursive: true })
  writeFileSync(resultsFile, `${JSON.stringify(results, null, 2)}\n`)

  const mark = (pass: boolean) => (pass ? "pass" : "MISS")
  console.log("\nFigures")
  console.log(
    table(
      ["figure", "value", "how"],
      [
        [
          "engine.callsPerSec",
          formatNumber(callsPerSec),
          `noop, ${IN_FLIGHT} in flight, ${seconds(MEASURE_MS)}`
        ],
        ["engine.p50Ms", formatNumber(p50Ms), `noop, 1 in flight (unloaded), ${LATENCY_CALLS} calls`],
        ["engine.p99Ms", formatNumber(p99Ms), "same"],
        [
          "engine.hostCallCallsPerSec",
          formatNumber(hostCallCallsPerSec),
          `config_value, ${IN_FLIGHT} in flight`
        ],
        ["sdkWorker.callsPerSec", formatNumber(sdkWorker), `${poolSize} SDK worker plugins, call + reset`],
        ["sdkForeground.callsPerSec", formatNumber(sdkForeground), "1 SDK plugin on the main thread"],
        [
          "reference.postMessageRoundTripsPerSec",
          formatNumber(roundTripsPerSec),
          `bare ping-pong, ${referenceWorkers} workers, no Wasm`
        ],
        [
          "reference.sharedMemoryRoundTripsPerSec",
          formatNumber(sharedRoundTripsPerSec),
          "same through shared memory and Atomics.waitAsync"
        ],
        ["timeoutRecoveryMs", formatNumber(timeoutRecoveryMs), "timeout error → ping answered, median"],
        ["healthyP99Ms", formatNumber(healthyP99Ms), `biography, sequential, ${healthyAlone.length} calls`],
        [
          "healthyP99WhileLoopingMs",
          formatNumber(healthyP99WhileLoopingMs),
          `same, ${LOOPERS} loopers, ${healthyLooping.length} calls`
        ],
        ["rssGrowthMbPer100kCalls", formatNumber(rss.growthMb), `noop, ${IN_FLIGHT} in flight, after GC`],
        [
          "hostCalls.cacheGetPerSec",
          formatNumber(services.cacheGetPerSec),
          "cache_getstring × 100 per export"
        ],
        ["hostCalls.kvGetPerSec", formatNumber(services.kvGetPerSec), "kvstore_get × 100 per export"],
        ["hostCalls.configGetPerSec", formatNumber(services.configGetPerSec), "config_get × 100 per export"],
        [
          "hostCallsOnMainThread.configGetPerSec",
          formatNumber(servicesOnMain.configGetPerSec),
          "same, hostCallsInWorker: false"
        ],
        [
          "footprint.rssPerPluginMb",
          formatNumber(footprintFigures.rssPerPluginMb),
          `${footprintFigures.plugins} idle plugins, pool of ${footprintFigures.poolSize}`
        ],
        [
          "footprint.loadSmallMs",
          formatNumber(footprintFigures.loadSmallMs),
          `${footprintFigures.loadSmallPlugins} small plugins, each compiled`
        ],
        [
          "footprint.large.coldLoadMs",
          formatNumber(footprintFigures.large.coldLoadMs),
          `${(footprintFigures.large.wasmBytes / 1e6).toFixed(1)} MB module, ${footprintFigures.large.functions} functions`
        ],
        [
          "manager.loadAllMs",
          formatNumber(managerFigures.loadAllMs),
          `${managerFigures.plugins} enabled plugins`
        ],
        [
          "manager.reloadUnderLoadFailedCalls",
          String(managerFigures.reloadUnderLoadFailedCalls),
          `${managerFigures.reloads} reloads, ${managerFigures.callsDuringReloads} calls`
        ],
        [
          "manager.p99MsDuringReloads",
          formatNumber(managerFigures.p99MsDuringReloads),
          `vs ${formatNumber(managerFigures.p99MsWithoutReloads)} without reloads`
        ]
      ]
    )
  )
  console.log("\nRatios and targets")
  console.log(
    table(
      ["ratio / target", "value", "against", "target", "result"],
      [
        [
          "engine vs sdkWorker",
          `${ratios.engineVsSdkWorker.toFixed(2)}×`,
          `sdkWorker ${formatNumber(sdkWorker)} calls/s`,
          "≥ 4×",
          mark(targets.engineVsSdkWorker.pass)
        ],
        [
          "engine vs one sdkWorker plugin",
          `${ratios.engineVsSingleSdkWorker.toFixed(2)}×`,
          `1 SDK worker plugin ${formatNumber(sdkWorkerSingle)} calls/s`,
          "≥ 4×",
          mark(targets.engineVsSingleSdkWorker.pass)
        ],
        [
          "engine vs sdkForeground",
          `${(callsPerSec / sdkForeground).toFixed(2)}×`,
          `sdkForeground ${formatNumber(sdkForeground)} calls/s`,
          "-",
          "-"
        ],
        [
          "engine vs bare postMessage",
          `${ratios.engineVsPostMessage.toFixed(2)}×`,
          `${formatNumber(roundTripsPerSec)} round trips/s`,
          "≥ 1.5×",
          mark(targets.engineVsPostMessage.pass)
        ],
        [
          "config get vs main thread",
          `${ratios.configGetVsMainThread.toFixed(2)}×`,
          `${formatNumber(servicesOnMain.configGetPerSec)}/s on the main thread`,
          "≥ 10×",
          mark(targets.configGetVsMainThread.pass)
        ],
        [
          "KV get vs main thread",
          `${ratios.kvGetVsMainThread.toFixed(2)}×`,
          `${formatNumber(servicesOnMain.kvGetPerSec)}/s on the main thread`,
          "≥ 5×",
          mark(targets.kvGetVsMainThread.pass)
        ],
        [
          "cache get vs main thread",
          `${ratios.cacheGetVsMainThread.toFixed(2)}×`,
          `${formatNumber(servicesOnMain.cacheGetPerSec)}/s on the main thread`,
          "≥ 2×",
          mark(targets.cacheGetVsMainThread.pass)
        ],
        [
          "RSS per idle plugin beyond linear memory",
          `${formatNumber(footprintFigures.rssPerPluginBeyondLinearMemoryMb)} MB`,
          `${formatNumber(footprintFigures.rssPerPluginMb)} MB in all`,
          "≤ 2 MB",
          mark(targets.rssPerIdlePluginBeyondLinearMemoryMb.pass)
        ],
        ["engine p50", `${formatNumber(p50Ms)} ms`, "-", "≤ 0.1 ms", mark(targets.engineP50Ms.pass)],
        [
          "host call vs trivial",
          `${ratios.hostCallVsTrivial.toFixed(2)}×`,
          `noop ${formatNumber(callsPerSec)} calls/s`,
          "-",
          "-"
        ],
        [
          "host-call throughput",
          `${formatNumber(hostCallCallsPerSec)} calls/s`,
          "-",
          "≥ 15,000",
          mark(targets.hostCallCallsPerSec.pass)
        ],
        [
          "healthy p99 slowdown",
          `${ratios.healthyP99Slowdown.toFixed(2)}×`,
          `alone ${formatNumber(healthyP99Ms)} ms`,
          "< 2×",
          mark(targets.healthyP99WhileLooping.pass)
        ],
        [
          "RSS growth / 100k calls",
          `${formatNumber(rss.growthMb)} MB`,
          `before ${formatNumber(rss.beforeMb)} MB`,
          "< 30 MB",
          mark(targets.rssGrowthMbPer100kCalls.pass)
        ]
      ]
    )
  )
  if (
    threadsBeforeTimeouts !== undefined &&
    threadsAfterTimeouts !== undefined &&
    threadsAfterTimeouts > threadsBeforeTimeouts
  ) {
    console.log(
      `\nnote: the process had ${threadsAfterTimeouts - threadsBeforeTimeouts} more threads after ${RECOVERY_SAMPLES + timeouts} timeouts than before (workers not ended?)`
    )
  }
  const skewed = stages.filter((s) => s.otherProcessesCpu >= BUSY_SHARE)
  if (skewed.length > 0) {
    console.log(
      `\nwarning: other processes used the CPU during ${skewed.map((s) => `"${s.name}" (${Math.round(s.otherProcessesCpu * 100)}%)`).join(", ")}; run again on an idle machine`
    )
  }
  console.log(`\nwrote ${resultsFile} (${seconds(performance.now() - benchStart)} in all)`)
})

Effect.runPromise(
  Effect.scoped(program).pipe(Effect.provide(Engine.layer()), Logger.withMinimumLogLevel(LogLevel.Warning))
).then(
  () => {
    // Everything is closed now, so node should exit on its own. If something still holds it open
    // (a worker thread the engine did not end), say so and exit anyway: the bench only reports.
    setTimeout(() => {
      const open = new Map<string, number>()
      for (const resource of process.getActiveResourcesInfo()) {
        if (resource !== "Timeout") open.set(resource, (open.get(resource) ?? 0) + 1)
      }
      const list = [...open].map(([resource, count]) => `${count} × ${resource}`).join(", ")
      console.log(`note: still open after the engine closed: ${list}; exiting explicitly`)
      process.exit(0)
    }, 1_000).unref()
  },
  (error: unknown) => {
    console.error("bench failed:", error)
    process.exit(1)
  }
)

/**
 * Benchmarks of host services and of the plugin manager, run by bench/run.ts:
 * - host calls per second from inside Wasm (an export making 100 cache or KV store gets);
 * - loading 50 plugins with the manager, and calls during 100 reloads (failures and latency).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Engine from "../src/Engine.js"
import { PluginLoader } from "../src/loader/PluginLoader.js"
import * as PluginManager from "../src/manager/PluginManager.js"
import * as Registry from "../src/manager/Registry.js"
import { percentile } from "./stats.js"

const fixture = (id: string): string => fileURLToPath(new URL(`../build/fixtures/${id}.ndp`, import.meta.url))

const tempFolder = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "ndp-bench-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** Runs `op` from `inFlight` fibers for `durationMs`; returns completed operations per second. */
const rate = (op: Effect.Effect<unknown, unknown>, inFlight: number, durationMs: number) =>
  Effect.gen(function* () {
    let done = 0
    const end = Date.now() + durationMs
    const started = performance.now()
    yield* Effect.all(
      Array.from({ length: inFlight }, () =>
        Effect.gen(function* () {
          while (Date.now() < end) {
            yield* Effect.orDie(op)
            done++
          }
        })
      ),
      { concurrency: "unbounded", discard: true }
    )
    return done / ((performance.now() - started) / 1000)
  })

export interface HostCallFigures {
  readonly cacheGetPerSec: number
  readonly kvGetPerSec: number
  readonly configGetPerSec: number
}

/**
 * Host calls per second made from inside Wasm: exports doing 100 gets each, 4 in flight. With
 * `hostCallsInWorker` false every call crosses to the main thread (the path before 0035).
 */
export const hostCalls = (hostCallsInWorker = true) =>
  Effect.gen(function* () {
    const dataFolder = yield* tempFolder
    return yield* Effect.gen(function* () {
      const loader = yield* PluginLoader
      const cache = yield* loader.loadFile(fixture("host-cache"))
      const kv = yield* loader.loadFile(fixture("host-kvstore"))
      const config = yield* loader.loadFile(fixture("agent-full"), { config: { k: "v" } })
      yield* cache.call("call_cache_setstring", '{"key":"k","value":"v"}')
      yield* kv.call(
        "call_kvstore_set",
        JSON.stringify({ key: "k", value: Buffer.from("v").toString("base64") })
      )
      const measure = (op: Effect.Effect<unknown, unknown>) =>
        Effect.zipRight(rate(op, 4, 500), rate(op, 4, 2_000)).pipe(
          Effect.map((perSec) => Math.round(perSec * 100))
        )
      return {
        cacheGetPerSec: yield* measure(cache.call("bench_cache_get100", '{"key":"k"}')),
        kvGetPerSec: yield* measure(kv.call("bench_kv_get100", '{"key":"k"}')),
        configGetPerSec: yield* measure(config.call("host_calls", '{"key":"k","n":100}'))
      } satisfies HostCallFigures
    }).pipe(
      Effect.scoped,
      Effect.provide(Layer.fresh(Engine.layer({ dataFolder, runtime: { hostCallsInWorker } })))
    )
  }).pipe(Effect.scoped)

export interface ManagerFigures {
  readonly plugins: number
  readonly loadAllMs: number
  readonly reloads: number
  readonly callsDuringReloads: number
  readonly reloadUnderLoadFailedCalls: number
  readonly p99MsDuringReloads: number
  readonly p99MsWithoutReloads: number
}

const managerLayer = (folder: string, dataFolder: string, live: boolean) =>
  PluginManager.layer({ ...PluginManager.defaultManagerOptions(folder), live }).pipe(
    Layer.provideMerge(Registry.layer),
    Layer.provideMerge(Engine.layer({ dataFolder })),
    Layer.orDie,
    Layer.fresh
  )

/** Calls a plugin's biography from `callers` fibers until `stop()`; records each call's latency. */
const callers = (manager: PluginManager.PluginManager["Type"], id: string, count: number) => {
  const latencies: Array<number> = []
  let failures = 0
  let stopped = false
  const one = Effect.gen(function* () {
    while (!stopped) {
      const started = performance.now()
      const result = yield* Effect.either(
        manager.use(id, (p) => p.call("nd_get_artist_biography", '{"id":"1","name":"X"}'))
      )
      latencies.push(performance.now() - started)
      if (result._tag === "Left") failures++
      // A short pause, as real clients have; four callers without one would starve everything else.
      yield* Effect.sleep("1 millis")
    }
  })
  return {
    fork: Effect.forkAll(Array.from({ length: count }, () => one)),
    stop: () => {
      stopped = true
    },
    latencies,
    failures: () => failures
  }
}

/** Loading 50 plugins at start, and 100 reloads under continuous calls. */
export const manager = (plugins = 50, reloads = 100) =>
  Effect.gen(function* () {
    const root = yield* tempFolder
    const folder = join(root, "plugins")
    const dataFolder = join(root, "data")
    mkdirSync(folder, { recursive: true })
    for (let i = 0; i < plugins; i++) copyFileSync(fixture("agent-full"), join(folder, `agent-${i}.ndp`))

    // Register and enable them without loading, then time a live start that loads all of them.
    yield* Effect.gen(function* () {
      const registry = yield* Registry.Registry
      for (const r of yield* registry.list) yield* registry.update(r.id, { enabled: true })
    }).pipe(Effect.scoped, Effect.provide(managerLayer(folder, dataFolder, false)), Effect.orDie)

    return yield* Effect.gen(function* () {
      const started = performance.now()
      const context = yield* Layer.build(managerLayer(folder, dataFolder, true))
      const loadAllMs = performance.now() - started
      const m = yield* Effect.provide(PluginManager.PluginManager, context)
      const loaded = (yield* m.loadedIds).length
      if (loaded !== plugins) return yield* Effect.dieMessage(`only ${loaded} of ${plugins} plugins loaded`)

      const calm = callers(m, "agent-0", 4)
      const calmFiber = yield* calm.fork
      yield* Effect.sleep("2 seconds")
      calm.stop()
      yield* calmFiber.await

      const busy = callers(m, "agent-0", 4)
      const busyFiber = yield* busy.fork
      for (let i = 0; i < reloads; i++) yield* Effect.orDie(m.setConfig("agent-0", { round: i }))
      busy.stop()
      yield* busyFiber.await
      return {
        plugins,
        loadAllMs: Math.round(loadAllMs),
        reloads,
        callsDuringReloads: busy.latencies.length,
        reloadUnderLoadFailedCalls: busy.failures(),
        p99MsDuringReloads: Number(percentile(busy.latencies, 0.99).toFixed(3)),
        p99MsWithoutReloads: Number(percentile(calm.latencies, 0.99).toFixed(3))
      } satisfies ManagerFigures
    }).pipe(Effect.scoped)
  }).pipe(Effect.scoped)

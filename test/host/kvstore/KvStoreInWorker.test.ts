/**
 * KV store reads answered in the worker over its own read-only connection
 * (docs/decisions/0035-host-calls-in-the-worker.md): the same bytes as the main thread's store for
 * every request, malformed ones included; reads of entries without a TTL never cross; writes, TTL
 * entries and refused keys still do; the host-call metric counts them all; a write is seen by the next read on any worker; unloading
 * closes the worker's connections; no store, no reads.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { strToU8, unzipSync, zipSync } from "fflate"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { HostFunctions } from "../../../src/host/HostFunctions.js"
import * as KvStoreService from "../../../src/host/kvstore/KvStoreService.js"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import * as PluginMetrics from "../../../src/metrics/PluginMetrics.js"
import { testEngine } from "../../support/engine.js"
import { directHandlers, recordingPlugin } from "../../support/direct.js"
import { fixture } from "../../support/fixtures.js"
import { b64, kv, kvPackage, openFilesUnder, put } from "./support.js"

let loaded = 0

const load = (id = `in-worker-${++loaded}`) =>
  Effect.flatMap(PluginLoader, (loader) => loader.loadBytes(id, kvPackage("64KB")))

/** Host calls of the plugin's KV store so far, as the host-call metric counts them. */
const crossed = (pluginId: string) =>
  Effect.map(
    Metric.value(
      Metric.tagged(Metric.tagged(PluginMetrics.hostCalls, "plugin", pluginId), "service", "kvstore")
    ),
    (state) => state.count
  )

/**
 * The fixture instantiated directly over the stock SQLite store, with a main-thread host handler
 * that records every call reaching it.
 */
const counted = Effect.gen(function* () {
  const made = yield* directHandlers("host-kvstore", "kv-direct", yield* KvStoreService.make())
  const reads = KvStoreService.servedInWorker(made.handlers)
  expect(reads.functions).toEqual(["kvstore_get", "kvstore_has"])
  return yield* recordingPlugin(made, {
    pluginId: "kv-direct",
    userFunctions: KvStoreService.definition.functions,
    exportPrefix: "kvstore_",
    local: { workerFunctions: reads.functions, localKvStore: reads.store }
  })
})

/** Requests as raw text: valid keys (live, empty value, missing, TTL), and ones the store or codec refuses. */
const requests: ReadonlyArray<string> = [
  '{"key":"a"}',
  '{"key":"empty"}',
  '{"key":"missing"}',
  '{"key":"ttl"}',
  '{"key":"東京/é"}',
  '{"key":"__proto__"}',
  '{"key":"a","extra":[1]}',
  '{"key":""}',
  "{}",
  "",
  '{"key":null}',
  '{"key":5}',
  '{"key":"\\ud800"}',
  JSON.stringify({ key: "x".repeat(257) }),
  JSON.stringify({ key: "é".repeat(129) }),
  "{not json",
  "[1]"
]

const scenario = Effect.gen(function* () {
  const plugin = yield* load()
  yield* put(plugin, "a", "hello")
  yield* put(plugin, "empty", "")
  yield* put(plugin, "東京/é", new Uint8Array([0, 255, 7]))
  yield* kv(plugin, "setwithttl", { key: "ttl", value: b64("soon"), ttlSeconds: 3600 })
  const out: Array<unknown> = []
  for (const fn of ["get", "has"]) {
    for (const request of requests) out.push(yield* kv(plugin, fn, request))
  }
  yield* kv(plugin, "delete", { key: "a" })
  out.push(yield* kv(plugin, "get", { key: "a" }), yield* kv(plugin, "has", { key: "a" }))
  return out
})

describe("KV store reads in the worker", () => {
  it.scoped(
    "give the same answers as the main thread's store, refused requests included",
    () =>
      Effect.gen(function* () {
        const inWorker = yield* scenario.pipe(
          Effect.provide(testEngine({ runtime: { poolSize: 2, hostCallsInWorker: true } }))
        )
        const onMain = yield* scenario.pipe(
          Effect.provide(testEngine({ runtime: { poolSize: 2, hostCallsInWorker: false } }))
        )
        expect(inWorker).toEqual(onMain)
        // The comparison covers values, absences and in-band errors.
        expect(inWorker).toContainEqual({ value: b64("hello"), exists: true })
        expect(inWorker).toContainEqual({ exists: true })
        expect(inWorker).toContainEqual({ value: b64(new Uint8Array([0, 255, 7])), exists: true })
        expect(inWorker.filter((reply) => "error" in (reply as object)).length).toBeGreaterThan(10)
      }),
    120_000
  )

  it.scoped(
    "reads of entries without a TTL stay in the worker; TTL entries, refused keys and writes cross",
    () =>
      Effect.gen(function* () {
        const direct = yield* counted
        yield* direct.call("set", { key: "a", value: b64("hello") })
        yield* direct.call("setwithttl", { key: "ttl", value: b64("soon"), ttlSeconds: 3600 })
        expect(direct.crossed).toEqual(["kvstore_set", "kvstore_setwithttl"])
        expect(yield* direct.call("get", { key: "a" })).toEqual({ value: b64("hello"), exists: true })
        expect(yield* direct.call("get", { key: "missing" })).toEqual({})
        expect(yield* direct.call("has", { key: "a" })).toEqual({ exists: true })
        expect(direct.crossed).toHaveLength(2)
        // The main thread's clock judges expiry; the store words the refusal.
        expect(yield* direct.call("get", { key: "ttl" })).toEqual({ value: b64("soon"), exists: true })
        expect(String((yield* direct.call("get", { key: "" }))["error"])).toContain("key must not be empty")
        expect(direct.crossed.slice(2)).toEqual(["kvstore_get", "kvstore_get"])
      }).pipe(Effect.provide(testEngine({ runtime: { poolSize: 1 } })))
  )

  it.scoped("the host-call metric still counts every call, answered in the worker or not", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      yield* put(plugin, "a", "hello")
      const before = yield* crossed(plugin.id)
      for (let i = 0; i < 3; i++) yield* kv(plugin, "get", { key: "a" })
      yield* kv(plugin, "has", { key: "missing" })
      yield* kv(plugin, "get", { key: "" })
      expect(yield* crossed(plugin.id)).toBe(before + 5)
    }).pipe(Effect.provide(testEngine({ runtime: { poolSize: 2 } })))
  )

  it.scoped("a write is seen by the next read, whichever worker runs it", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      // Two streams at once, so both workers of the pool serve reads.
      yield* Effect.forEach(
        ["p", "q"],
        (stream) =>
          Effect.forEach(
            Array.from({ length: 25 }, (_, i) => i),
            (i) =>
              Effect.gen(function* () {
                yield* put(plugin, stream, `${stream}${i}`)
                expect(yield* kv(plugin, "get", { key: stream })).toEqual({
                  value: b64(`${stream}${i}`),
                  exists: true
                })
                yield* kv(plugin, "delete", { key: stream })
                expect(yield* kv(plugin, "has", { key: stream })).toEqual({})
              }),
            { discard: true }
          ),
        { concurrency: 2, discard: true }
      )
    }).pipe(Effect.provide(testEngine({ runtime: { poolSize: 2 } })))
  )

  it.live(
    "unloading closes the workers' connections: no file descriptor is left behind",
    () =>
      Effect.gen(function* () {
        const loader = yield* PluginLoader
        const { dataFolder } = yield* HostFunctions
        const folder = join(dataFolder, "plugins")
        for (let cycle = 0; cycle < 5; cycle++) {
          const scope = yield* Scope.make()
          const plugin = yield* loader.loadBytes("fd-cycle", kvPackage()).pipe(Scope.extend(scope))
          yield* put(plugin, "k", "v")
          const mainOnly = openFilesUnder(folder)
          // Enough calls, two at a time, for both workers to open their own connection.
          yield* Effect.forEach(
            Array.from({ length: 20 }, () => "get"),
            (fn) => kv(plugin, fn, { key: "k" }),
            { concurrency: 2, discard: true }
          )
          expect(openFilesUnder(folder)).toBeGreaterThan(mainOnly)
          yield* Scope.close(scope, Exit.void)
          // The workers close theirs when they take the unload message: wait for it.
          yield* Effect.suspend(() =>
            openFilesUnder(folder) === 0 ? Effect.void : Effect.fail("still open")
          ).pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("30 seconds"))))
          expect(openFilesUnder(folder)).toBe(0)
        }
      }).pipe(Effect.provide(testEngine({ runtime: { poolSize: 2 } }))),
    120_000
  )

  it.scoped("a plugin without the kvstore permission gets no store, in the worker or elsewhere", () =>
    Effect.gen(function* () {
      const entries = unzipSync(readFileSync(fixture("host-kvstore")))
      const manifest = JSON.parse(new TextDecoder().decode(entries["manifest.json"])) as {
        permissions: Record<string, unknown>
      }
      manifest.permissions = {}
      const bytes = zipSync({
        "manifest.json": strToU8(JSON.stringify(manifest)),
        "plugin.wasm": entries["plugin.wasm"]!
      })
      // The store of this ID exists on disk, written while the permission was granted.
      yield* Effect.scoped(Effect.flatMap(load("no-grant"), (granted) => put(granted, "secret", "s")))
      const exit = yield* Effect.exit(
        Effect.flatMap(PluginLoader, (loader) => loader.loadBytes("no-grant", bytes))
      )
      if (Exit.isSuccess(exit)) {
        const reply = yield* kv(exit.value, "get", { key: "secret" })
        expect(reply["value"]).toBeUndefined()
        expect(reply["exists"]).toBeUndefined()
      } else {
        expect(String(exit.cause)).toMatch(/kvstore/)
      }
      expect(KvStoreService.servedInWorker({})).toEqual({ functions: [], store: undefined })
    }).pipe(Effect.provide(testEngine({ runtime: { poolSize: 1 } })))
  )

  it("only handlers made over an open SQLite store are read in the worker", () => {
    // An embedder's own kvstore_get (or a PostgreSQL store's) is not the SQLite store's.
    const own = () => Effect.succeed(new Uint8Array(0))
    expect(KvStoreService.servedInWorker({ kvstore_get: own, kvstore_has: own })).toEqual({
      functions: [],
      store: undefined
    })
  })
})

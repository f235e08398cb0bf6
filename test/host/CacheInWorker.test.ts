/**
 * Cache gets answered in the worker from copies of entries (docs/decisions/0035-host-calls-in-the-worker.md):
 * the same bytes as the main thread's cache for every request, malformed ones included; a current
 * copy answers without crossing, a change or an expiry is seen by the next get on any worker; the
 * workers' reads still count for the least-recently-used eviction; the host-call metric counts each
 * call once; an embedder's own cache functions are never bypassed.
 *
 * These run on the live clock: under a `TestClock` the worker cannot tell whether an entry is alive
 * (the engine's time is frozen far from the wall time), so every get asks the main thread, which is
 * what `Cache.test.ts` covers.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import { readFileSync } from "node:fs"
import { lookupFunction } from "../../src/host/cache/CacheAnswers.js"
import { CacheIndex } from "../../src/host/cache/CacheIndex.js"
import * as CacheService from "../../src/host/cache/CacheService.js"
import { PluginCache } from "../../src/host/cache/CacheService.js"
import { PluginLoader, type LoadedPlugin } from "../../src/loader/PluginLoader.js"
import * as PluginMetrics from "../../src/metrics/PluginMetrics.js"
import { makeEngineClock } from "../../src/runtime/abi/EngineClock.js"
import {
  CacheCopies,
  maxCopiedEntryBytes,
  maxCopies,
  maxCopyBytes
} from "../../src/runtime/worker/CacheCopies.js"
import { testEngine } from "../support/engine.js"
import { directHandlers, recordingPlugin } from "../support/direct.js"
import { fixture } from "../support/fixtures.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const call = (plugin: LoadedPlugin, fn: string, request: unknown) =>
  Effect.map(
    Effect.orDie(
      plugin.call(`call_cache_${fn}`, typeof request === "string" ? request : JSON.stringify(request))
    ),
    (bytes) => JSON.parse(decoder.decode(bytes ?? new Uint8Array(0))) as Record<string, unknown>
  )

let loaded = 0
const load = Effect.flatMap(PluginLoader, (loader) =>
  loader.loadBytes(`cache-in-worker-${++loaded}`, new Uint8Array(readFileSync(fixture("host-cache"))))
)

/** Requests as raw text: live keys of every type, zero values, a miss, and ones the codec refuses. */
const requests: ReadonlyArray<string> = [
  '{"key":"s"}',
  '{"key":"empty"}',
  '{"key":"i"}',
  '{"key":"zero"}',
  '{"key":"f"}',
  '{"key":"fzero"}',
  '{"key":"b"}',
  '{"key":"nobytes"}',
  '{"key":"東京/é"}',
  '{"key":"missing"}',
  '{"key":"__proto__"}',
  '{"key":"s","extra":[1]}',
  '{"key":""}',
  "{}",
  "",
  '{"key":null}',
  '{"key":5}',
  "{not json",
  "[1]"
]

const scenario = Effect.gen(function* () {
  const plugin = yield* load
  yield* call(plugin, "setstring", { key: "s", value: "hej då 🎵", ttlSeconds: 3600 })
  yield* call(plugin, "setstring", { key: "empty", value: "" })
  yield* call(plugin, "setint", { key: "i", value: -9007199254740991 })
  yield* call(plugin, "setint", { key: "zero", value: 0 })
  yield* call(plugin, "setfloat", { key: "f", value: 2.5 })
  yield* call(plugin, "setfloat", { key: "fzero", value: 0 })
  yield* call(plugin, "setbytes", { key: "b", value: Buffer.from([0, 255, 7]).toString("base64") })
  yield* call(plugin, "setbytes", { key: "nobytes", value: "" })
  yield* call(plugin, "setstring", { key: "東京/é", value: "x" })
  const out: Array<unknown> = []
  // Twice: the first get of a key asks the main thread, the second reads the worker's copy.
  for (let round = 0; round < 2; round++) {
    for (const fn of ["getstring", "getint", "getfloat", "getbytes", "has"]) {
      for (const request of requests) out.push(yield* call(plugin, fn, request))
    }
  }
  yield* call(plugin, "remove", { key: "s" })
  out.push(yield* call(plugin, "getstring", { key: "s" }), yield* call(plugin, "has", { key: "s" }))
  return out
})

/** The fixture instantiated directly over the stock cache, with a main-thread handler that records what reaches it. */
const counted = Effect.gen(function* () {
  const made = yield* directHandlers("host-cache", "cache-direct", yield* CacheService.make())
  const reads = CacheService.servedInWorker(made.handlers)
  expect(reads.functions).toEqual([
    "cache_getstring",
    "cache_getint",
    "cache_getfloat",
    "cache_getbytes",
    "cache_has"
  ])
  return yield* recordingPlugin(made, {
    pluginId: "cache-direct",
    userFunctions: CacheService.definition.functions,
    exportPrefix: "cache_",
    local: { workerFunctions: reads.functions, localCache: reads.index },
    route: (fn) => (fn === lookupFunction ? reads.lookup! : made.handlers[fn]!)
  })
})

const cacheHostCalls = (pluginId: string) =>
  Effect.map(
    Metric.value(
      Metric.tagged(Metric.tagged(PluginMetrics.hostCalls, "plugin", pluginId), "service", "cache")
    ),
    (state) => state.count
  )

describe("cache gets in the worker", () => {
  it.live(
    "give the same answers as the main thread's cache, refused requests included",
    () =>
      Effect.gen(function* () {
        const inWorker = yield* Effect.scoped(scenario).pipe(
          Effect.provide(testEngine({ runtime: { poolSize: 2, hostCallsInWorker: true } }))
        )
        const onMain = yield* Effect.scoped(scenario).pipe(
          Effect.provide(testEngine({ runtime: { poolSize: 2, hostCallsInWorker: false } }))
        )
        expect(inWorker).toEqual(onMain)
        // The comparison covers values, zero values, absences and in-band errors.
        expect(inWorker).toContainEqual({ value: "hej då 🎵", exists: true })
        expect(inWorker).toContainEqual({ value: -9007199254740991, exists: true })
        expect(inWorker).toContainEqual({ value: Buffer.from([0, 255, 7]).toString("base64"), exists: true })
        expect(inWorker).toContainEqual({ exists: true })
        expect(inWorker.filter((reply) => "error" in (reply as object)).length).toBeGreaterThan(20)
      }),
    120_000
  )

  it.live("a current copy answers in the worker; a miss or a change asks the main thread", () =>
    Effect.gen(function* () {
      const direct = yield* counted
      yield* direct.call("setstring", { key: "a", value: "one" })
      expect(yield* direct.call("getstring", { key: "a" })).toEqual({ value: "one", exists: true })
      expect(direct.crossed).toEqual(["cache_setstring", lookupFunction])
      for (let i = 0; i < 3; i++) {
        expect(yield* direct.call("getstring", { key: "a" })).toEqual({ value: "one", exists: true })
      }
      expect(yield* direct.call("has", { key: "a" })).toEqual({ exists: true })
      expect(yield* direct.call("getint", { key: "a" })).toEqual({})
      expect(direct.crossed).toHaveLength(2)
      // Overwritten: the copy's stamp is stale, so the next get asks again and sees the new value.
      yield* direct.call("setstring", { key: "a", value: "two" })
      expect(yield* direct.call("getstring", { key: "a" })).toEqual({ value: "two", exists: true })
      expect(direct.crossed.slice(2)).toEqual(["cache_setstring", lookupFunction])
      yield* direct.call("remove", { key: "a" })
      expect(yield* direct.call("getstring", { key: "a" })).toEqual({})
      expect(yield* direct.call("getstring", { key: "missing" })).toEqual({})
      expect(direct.crossed.slice(4)).toEqual(["cache_remove", lookupFunction, lookupFunction])
      // A request the codec refuses crosses as it is, for the codec's own error.
      expect(String((yield* direct.call("getstring", { key: "" }))["error"])).toContain(
        "key must not be empty"
      )
      expect(direct.crossed.slice(7)).toEqual(["cache_getstring"])
    }).pipe(Effect.scoped, Effect.provide(testEngine({ runtime: { poolSize: 1 } })))
  )

  it.live("an entry past its TTL is gone in the worker too", () =>
    Effect.gen(function* () {
      const plugin = yield* load
      yield* call(plugin, "setstring", { key: "short", value: "x", ttlSeconds: 1 })
      yield* call(plugin, "setstring", { key: "long", value: "y", ttlSeconds: 3600 })
      expect(yield* call(plugin, "getstring", { key: "short" })).toEqual({ value: "x", exists: true })
      yield* Effect.flatMap(call(plugin, "getstring", { key: "short" }), (reply) =>
        reply["exists"] === true ? Effect.fail("still there") : Effect.void
      ).pipe(Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("30 seconds"))))
      expect(yield* call(plugin, "has", { key: "short" })).toEqual({})
      expect(yield* call(plugin, "getstring", { key: "long" })).toEqual({ value: "y", exists: true })
    }).pipe(Effect.scoped, Effect.provide(testEngine({ runtime: { poolSize: 2 } })))
  )

  it.live("a change is seen by the next get, whichever worker runs it", () =>
    Effect.gen(function* () {
      const plugin = yield* load
      // Two streams at once, so both workers of the pool keep copies.
      yield* Effect.forEach(
        ["p", "q"],
        (stream) =>
          Effect.forEach(
            Array.from({ length: 25 }, (_, i) => i),
            (i) =>
              Effect.gen(function* () {
                yield* call(plugin, "setstring", { key: stream, value: `${stream}${i}` })
                for (let read = 0; read < 2; read++) {
                  expect(yield* call(plugin, "getstring", { key: stream })).toEqual({
                    value: `${stream}${i}`,
                    exists: true
                  })
                }
                yield* call(plugin, "remove", { key: stream })
                expect(yield* call(plugin, "has", { key: stream })).toEqual({})
              }),
            { discard: true }
          ),
        { concurrency: 2, discard: true }
      )
    }).pipe(Effect.scoped, Effect.provide(testEngine({ runtime: { poolSize: 2 } })))
  )

  it.live("reads answered in a worker keep an entry from being evicted first", () =>
    Effect.gen(function* () {
      const evicted = (hostCallsInWorker: boolean) =>
        Effect.gen(function* () {
          const plugin = yield* load
          yield* call(plugin, "setstring", { key: "a", value: "1" })
          yield* call(plugin, "getstring", { key: "a" })
          yield* call(plugin, "setstring", { key: "b", value: "2" })
          yield* call(plugin, "setstring", { key: "c", value: "3" })
          // Read again: in the worker from its copy, or on the main thread.
          expect(yield* call(plugin, "getstring", { key: "a" })).toEqual({ value: "1", exists: true })
          yield* call(plugin, "setstring", { key: "d", value: "4" })
          const left: Array<string> = []
          for (const key of ["a", "b", "c", "d"]) {
            if ((yield* call(plugin, "has", { key }))["exists"] === true) left.push(key)
          }
          return left
        }).pipe(
          Effect.scoped,
          Effect.provide(
            testEngine({ runtime: { poolSize: 1, hostCallsInWorker }, cache: { maxEntries: 3 } })
          )
        )
      expect(yield* evicted(true)).toEqual(["a", "c", "d"])
      expect(yield* evicted(false)).toEqual(["a", "c", "d"])
    })
  )

  it.live("the host-call metric counts each cache call once, answered in the worker or not", () =>
    Effect.gen(function* () {
      const plugin = yield* load
      yield* call(plugin, "setstring", { key: "a", value: "1" })
      const before = yield* cacheHostCalls(plugin.id)
      for (let i = 0; i < 3; i++) yield* call(plugin, "getstring", { key: "a" })
      yield* call(plugin, "has", { key: "missing" })
      yield* call(plugin, "getstring", { key: "" })
      expect(yield* cacheHostCalls(plugin.id)).toBe(before + 5)
    }).pipe(Effect.scoped, Effect.provide(testEngine({ runtime: { poolSize: 2 } })))
  )

  it("only handlers the stock cache made are answered in the worker", () => {
    // An embedder's own cache_getstring is not the stock cache's.
    const own = () => Effect.succeed(new Uint8Array(0))
    expect(CacheService.servedInWorker({ cache_getstring: own, cache_has: own })).toEqual({
      functions: [],
      index: undefined,
      lookup: undefined
    })
  })

  it("a worker's copies of one plugin's entries stay within 1,024 entries and 1 MiB; big entries are not copied", () => {
    // A hostile plugin reading many large entries on every worker: each worker holds a bounded part.
    const index = new CacheIndex(10_000)
    const slots = new Map<string, number>()
    let lookups = 0
    const copies = new CacheCopies(index.buffer, makeEngineClock(), (payload) => {
      lookups++
      const key = (JSON.parse(decoder.decode(payload)) as { key: string }).key
      const slot = slots.get(key) ?? index.assign()
      slots.set(key, slot)
      const value = key.startsWith("big") ? "x".repeat(maxCopiedEntryBytes) : "v".repeat(10_000)
      return encoder.encode(
        JSON.stringify({
          kind: "string",
          value,
          slot,
          stamp: index.stamp(slot),
          expiresAt: Date.now() + 3_600_000
        })
      )
    })
    const get = (key: string) => copies.entry(key, encoder.encode(JSON.stringify({ key })))
    for (let i = 0; i < 2_000; i++) expect(get(`k${i}`)).toMatchObject({ kind: "string" })
    expect(copies.size).toBeLessThanOrEqual(maxCopies)
    expect(copies.usedBytes).toBeLessThanOrEqual(maxCopyBytes)
    expect(copies.size).toBeGreaterThan(0)
    // The last one is copied: read again, it does not ask.
    lookups = 0
    get("k1999")
    expect(lookups).toBe(0)
    // An entry over the copy limit asks every time.
    get("big")
    get("big")
    expect(lookups).toBe(2)
  })

  it("entries beyond the index's slots are still cached, without copies; a freed slot is reused with a new stamp", () => {
    const index = new CacheIndex(2)
    const cache = new PluginCache({ maxEntries: 10, maxBytes: 1024 }, index)
    cache.set("a", "string", "1", 0, 0)
    cache.set("b", "string", "2", 0, 0)
    cache.set("c", "string", "3", 0, 0)
    expect(cache.lookup("c", 0)).toMatchObject({ value: "3", slot: -1 })
    const a = cache.lookup("a", 0)!
    expect(a.slot).toBeGreaterThanOrEqual(0)
    cache.delete("a")
    // Stale for any worker holding a copy of "a".
    expect(index.stamp(a.slot)).not.toBe(a.stamp)
    cache.set("d", "string", "4", 0, 0)
    expect(cache.lookup("d", 0)).toMatchObject({ slot: a.slot, stamp: index.stamp(a.slot) })
  })
})

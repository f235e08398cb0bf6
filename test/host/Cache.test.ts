import { describe, expect, it, layer } from "@effect/vitest"
import { readFileSync } from "node:fs"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import { PluginCache } from "../../src/host/cache/CacheService.js"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"

const decoder = new TextDecoder()

/** Loads host-cache and returns `call(fn, request)` → parsed response, driven from inside Wasm. */
const cachePlugin = (id = "host-cache") =>
  Effect.gen(function* () {
    const loader = yield* PluginLoader
    const plugin =
      id === "host-cache" ? yield* loader.loadFile(fixture(id)) : yield* loader.loadBytes(id, readPackage())
    return {
      plugin,
      call: (fn: string, request: unknown) =>
        Effect.map(
          plugin.call(`call_${fn}`, JSON.stringify(request)),
          (b) => JSON.parse(decoder.decode(b!)) as unknown
        )
    }
  })

const readPackage = () => new Uint8Array(readFileSync(fixture("host-cache")))

layer(testEngine({ runtime: { poolSize: 2 }, cache: { maxEntries: 50, maxBytes: 4096 } }))(
  "Cache host service",
  (it) => {
    it.scoped("every typed setter and getter round-trips from inside Wasm", () =>
      Effect.gen(function* () {
        const { call } = yield* cachePlugin()
        expect(yield* call("cache_setstring", { key: "s", value: "hej då 🎵" })).toEqual({})
        expect(yield* call("cache_getstring", { key: "s" })).toEqual({ value: "hej då 🎵", exists: true })
        yield* call("cache_setint", { key: "i", value: -9007199254740991 })
        expect(yield* call("cache_getint", { key: "i" })).toEqual({ value: -9007199254740991, exists: true })
        yield* call("cache_setfloat", { key: "f", value: 2.5 })
        expect(yield* call("cache_getfloat", { key: "f" })).toEqual({ value: 2.5, exists: true })
        const withNul = Buffer.from([0, 1, 0, 255, 0])
        yield* call("cache_setbytes", { key: "b", value: withNul.toString("base64") })
        expect(yield* call("cache_getbytes", { key: "b" })).toEqual({
          value: withNul.toString("base64"),
          exists: true
        })
        yield* call("cache_setbytes", { key: "arr", value: [7, 0, 7] })
        expect(yield* call("cache_getbytes", { key: "arr" })).toEqual({
          value: Buffer.from([7, 0, 7]).toString("base64"),
          exists: true
        })
        expect(yield* call("cache_setstring", { key: "empty", value: "" })).toEqual({})
        expect(yield* call("cache_getstring", { key: "empty" })).toEqual({ exists: true })
      })
    )

    it.scoped("a getter of the wrong type, a miss and a removed key all report not-exists", () =>
      Effect.gen(function* () {
        const { call, plugin } = yield* cachePlugin()
        const steps = JSON.parse(decoder.decode((yield* plugin.call("cache_scenario"))!)) as Array<unknown>
        expect(steps).toEqual([
          {},
          { value: "hej då", exists: true },
          {},
          { value: 42, exists: true },
          {},
          { exists: true },
          {},
          {}
        ])
        expect(yield* call("cache_getint", { key: "never-set" })).toEqual({})
        expect(yield* call("cache_has", { key: "never-set" })).toEqual({})
      })
    )

    it.scoped("entries expire after their TTL; a TTL of zero or less means 24 hours", () =>
      Effect.gen(function* () {
        const { call } = yield* cachePlugin()
        yield* call("cache_setstring", { key: "short", value: "x", ttlSeconds: 10 })
        yield* call("cache_setstring", { key: "default", value: "y", ttlSeconds: 0 })
        yield* call("cache_setstring", { key: "negative", value: "z", ttl_seconds: -5 })
        yield* TestClock.adjust("9 seconds")
        expect(yield* call("cache_has", { key: "short" })).toEqual({ exists: true })
        yield* TestClock.adjust("2 seconds")
        expect(yield* call("cache_has", { key: "short" })).toEqual({})
        yield* TestClock.adjust("23 hours")
        expect(yield* call("cache_has", { key: "default" })).toEqual({ exists: true })
        expect(yield* call("cache_has", { key: "negative" })).toEqual({ exists: true })
        yield* TestClock.adjust("1 hour")
        expect(yield* call("cache_has", { key: "default" })).toEqual({})
      })
    )

    it.scoped("two plugins have separate namespaces", () =>
      Effect.gen(function* () {
        const a = yield* cachePlugin()
        const b = yield* cachePlugin("other-cache")
        yield* a.call("cache_setstring", { key: "shared-name", value: "a's" })
        expect(yield* b.call("cache_getstring", { key: "shared-name" })).toEqual({})
      })
    )

    it.scoped("the per-plugin budget evicts least recently used entries and refuses oversize values", () =>
      Effect.gen(function* () {
        const { call } = yield* cachePlugin()
        for (let i = 0; i < 50; i++) yield* call("cache_setint", { key: `k${i}`, value: i })
        yield* call("cache_getint", { key: "k0" }) // k0 is now the most recently used
        yield* call("cache_setint", { key: "k50", value: 50 })
        expect(yield* call("cache_has", { key: "k0" })).toEqual({ exists: true })
        expect(yield* call("cache_has", { key: "k1" })).toEqual({})
        const refused = (yield* call("cache_setstring", { key: "huge", value: "x".repeat(5000) })) as {
          error?: string
        }
        expect(refused.error).toContain("larger than the plugin's whole cache")
      })
    )

    it.scoped("bad requests are in-band errors", () =>
      Effect.gen(function* () {
        const { call } = yield* cachePlugin()
        expect(
          ((yield* call("cache_setstring", { key: "", value: "x" })) as { error: string }).error
        ).toContain("key")
        expect(
          ((yield* call("cache_setint", { key: "k", value: 1.5 })) as { error: string }).error
        ).toContain("value")
      })
    )
  }
)

describe("PluginCache", () => {
  it("keeps its byte count exact through overwrites, deletes and evictions", () => {
    const cache = new PluginCache({ maxEntries: 3, maxBytes: 1000 })
    cache.set("a", "string", "12345", 0, 0)
    cache.set("a", "string", "1", 0, 0)
    expect(cache.usedBytes).toBe(2)
    cache.set("b", "int", 1, 0, 0)
    cache.set("c", "bytes", new Uint8Array(10), 0, 0)
    cache.set("d", "float", 1.5, 0, 0)
    expect(cache.size).toBe(3)
    expect(cache.get("a", 0)).toBeUndefined()
    cache.delete("b")
    expect(cache.usedBytes).toBe(11 + 9)
    cache.clear()
    expect(cache.usedBytes).toBe(0)
  })
})

import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { HostFunctions } from "../../../src/host/HostFunctions.js"
import { storePath } from "../../../src/host/kvstore/KvStoreService.js"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import { testEngine } from "../../support/engine.js"
import { b64, kv, kvPackage, put, rawRowCount } from "./support.js"

let loaded = 0

const load = (id = `ttl-${++loaded}`) =>
  Effect.flatMap(PluginLoader, (loader) => loader.loadBytes(id, kvPackage()))

const storeOf = (pluginId: string) =>
  Effect.map(HostFunctions, (registry) => storePath({ dataFolder: registry.dataFolder, pluginId }))

// Test services stay on: every test runs on a TestClock that moves only by `TestClock.adjust`.
layer(testEngine({ runtime: { poolSize: 2 } }))("KvStore TTL", (it) => {
  it.scoped("an entry with a TTL is visible until it expires, then invisible to every read", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      yield* put(plugin, "keep", "forever")
      expect(
        yield* kv(plugin, "setwithttl", { key: "tmp", value: b64("soon gone"), ttlSeconds: 10 })
      ).toEqual({})
      expect(yield* kv(plugin, "get", { key: "tmp" })).toEqual({ value: b64("soon gone"), exists: true })
      // Keys count: "keep" + "forever", "tmp" + "soon gone".
      expect(yield* kv(plugin, "getstorageused")).toEqual({ bytes: 4 + 7 + 3 + 9 })

      yield* TestClock.adjust("9999 millis")
      expect(yield* kv(plugin, "has", { key: "tmp" })).toEqual({ exists: true })

      yield* TestClock.adjust("1 millis")
      expect(yield* kv(plugin, "get", { key: "tmp" })).toEqual({})
      expect(yield* kv(plugin, "has", { key: "tmp" })).toEqual({})
      expect(yield* kv(plugin, "list", { prefix: "" })).toEqual({ keys: ["keep"] })
      expect(yield* kv(plugin, "getmany", { keys: ["tmp", "keep"] })).toEqual({
        values: { keep: b64("forever") }
      })
      expect(yield* kv(plugin, "getstorageused")).toEqual({ bytes: 4 + 7 })
      expect(yield* kv(plugin, "deletebyprefix", { prefix: "tm" })).toEqual({})
    })
  )

  it.scoped("ttlSeconds must be a whole number above 0; the snake_case spelling is accepted", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      for (const ttl of [0, -5, 1.5]) {
        const response = yield* kv(plugin, "setwithttl", { key: "k", value: "", ttlSeconds: ttl })
        expect(String(response["error"])).toContain("ttlSeconds must be a whole number greater than 0")
      }
      expect(String((yield* kv(plugin, "setwithttl", { key: "k", value: "" }))["error"])).toContain(
        "ttlSeconds must be"
      )
      expect(String((yield* kv(plugin, "setwithttl", { key: "k", ttlSeconds: 1e300 }))["error"])).toMatch(
        /ttlSeconds must be|too large/
      )
      expect(yield* kv(plugin, "has", { key: "k" })).toEqual({})
      expect(yield* kv(plugin, "setwithttl", { key: "k", value: b64("v"), ttl_seconds: 3 })).toEqual({})
      yield* TestClock.adjust("3 seconds")
      expect(yield* kv(plugin, "has", { key: "k" })).toEqual({})
    })
  )

  it.scoped("a plain set over an entry with a TTL removes the TTL; setwithttl over a plain one adds it", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      yield* kv(plugin, "setwithttl", { key: "a", value: b64("1"), ttlSeconds: 5 })
      yield* put(plugin, "a", "2")
      yield* put(plugin, "b", "3")
      yield* kv(plugin, "setwithttl", { key: "b", value: b64("4"), ttlSeconds: 5 })
      yield* TestClock.adjust("6 seconds")
      expect(yield* kv(plugin, "get", { key: "a" })).toEqual({ value: b64("2"), exists: true })
      expect(yield* kv(plugin, "get", { key: "b" })).toEqual({})
    })
  )

  it.scoped("expired entries are swept every 60 s while the plugin is loaded, without any call", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      const file = yield* storeOf(plugin.id)
      for (let i = 0; i < 5; i++) {
        yield* kv(plugin, "setwithttl", { key: `t${i}`, value: b64("x"), ttlSeconds: 1 + i })
      }
      yield* put(plugin, "kept", "y")
      yield* TestClock.adjust("30 seconds")
      // Invisible already, but the rows are still there until the sweeper runs.
      expect(yield* kv(plugin, "list", { prefix: "" })).toEqual({ keys: ["kept"] })
      expect(yield* rawRowCount(file)).toBe(6)
      yield* TestClock.adjust("30 seconds")
      expect(yield* rawRowCount(file)).toBe(1)
      expect(yield* kv(plugin, "getstorageused")).toEqual({ bytes: 4 + 1 })
    })
  )

  it.scoped("expired entries are swept when the store opens", () =>
    Effect.gen(function* () {
      const id = `ttl-open-${++loaded}`
      const file = yield* storeOf(id)
      const first = yield* Scope.make()
      const plugin = yield* load(id).pipe(Scope.extend(first))
      yield* kv(plugin, "setwithttl", { key: "old", value: b64("x"), ttlSeconds: 5 })
      yield* put(plugin, "kept", "y")
      yield* Scope.close(first, Exit.void)
      // Unloaded: nobody sweeps while time passes.
      yield* TestClock.adjust("10 seconds")
      expect(yield* rawRowCount(file)).toBe(2)
      const again = yield* load(id)
      expect(yield* rawRowCount(file)).toBe(1)
      expect(yield* kv(again, "list", { prefix: "" })).toEqual({ keys: ["kept"] })
      expect(yield* kv(again, "getstorageused")).toEqual({ bytes: 4 + 1 })
    })
  )

  it.scoped("a write that would exceed the quota sweeps expired entries first", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      const file = yield* storeOf(plugin.id)
      // 4 × (2 + 488) = 1960 bytes, keys included.
      for (let i = 0; i < 4; i++) {
        yield* kv(plugin, "setwithttl", { key: `t${i}`, value: b64("x".repeat(488)), ttlSeconds: 10 })
      }
      expect(
        String((yield* kv(plugin, "set", { key: "big", value: b64("b".repeat(40)) }))["error"])
      ).toContain("storage limit exceeded")
      yield* TestClock.adjust("10 seconds")
      expect(yield* kv(plugin, "getstorageused")).toEqual({})
      expect(yield* rawRowCount(file)).toBe(4)
      // A write that fits even counting the expired rows does not need to sweep.
      yield* put(plugin, "small", "")
      expect(yield* rawRowCount(file)).toBe(5)
      yield* put(plugin, "big", "b".repeat(1992))
      expect(yield* rawRowCount(file)).toBe(2)
      expect(yield* kv(plugin, "getstorageused")).toEqual({ bytes: 2000 })
      expect(yield* kv(plugin, "list", { prefix: "" })).toEqual({ keys: ["big", "small"] })
    })
  )

  it.scoped("overwriting an expired entry counts as a new one", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      yield* kv(plugin, "setwithttl", { key: "k", value: b64("x".repeat(1499)), ttlSeconds: 1 })
      yield* put(plugin, "other", "o".repeat(495))
      yield* TestClock.adjust("1 second")
      // Were the expired 1500 bytes still counted, the refusal would report 2000 bytes in use.
      expect(
        String((yield* kv(plugin, "set", { key: "k", value: b64("y".repeat(1600)) }))["error"])
      ).toContain("500 of 2000 bytes are used")
      yield* put(plugin, "k", "y".repeat(1499))
      expect(yield* kv(plugin, "getstorageused")).toEqual({ bytes: 2000 })
    })
  )
})

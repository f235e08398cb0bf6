import { describe, expect, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Scope from "effect/Scope"
import { writeFileSync, mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { HostFunctions } from "../../../src/host/HostFunctions.js"
import { prefixSuccessor } from "../../../src/host/kvstore/KvStore.js"
import { storePath } from "../../../src/host/kvstore/KvStoreService.js"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import { testEngine } from "../../support/engine.js"
import { b64, kv, kvPackage, openFilesUnder, put, withRawDb } from "./support.js"

let loaded = 0

/** The fixture under a fresh plugin ID (so a fresh store), with the fixture's 2 KB limit unless told. */
const load = (options: { readonly maxSize?: string; readonly id?: string } = {}) =>
  Effect.flatMap(PluginLoader, (loader) =>
    loader.loadBytes(options.id ?? `kv-${++loaded}`, kvPackage(options.maxSize))
  )

const storeOf = (pluginId: string) =>
  Effect.map(HostFunctions, (registry) => storePath({ dataFolder: registry.dataFolder, pluginId }))

layer(testEngine({ runtime: { poolSize: 2 } }))("KvStore", (it) => {
  it.scoped("set, get, has and delete round-trip; a miss is {}", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      expect(yield* kv(plugin, "set", { key: "greeting", value: b64("hello") })).toEqual({})
      expect(yield* kv(plugin, "get", { key: "greeting" })).toEqual({ value: b64("hello"), exists: true })
      expect(yield* kv(plugin, "has", { key: "greeting" })).toEqual({ exists: true })
      expect(yield* kv(plugin, "set", { key: "greeting", value: b64("hej då") })).toEqual({})
      expect(yield* kv(plugin, "get", { key: "greeting" })).toEqual({ value: b64("hej då"), exists: true })
      expect(yield* kv(plugin, "delete", { key: "greeting" })).toEqual({})
      expect(yield* kv(plugin, "get", { key: "greeting" })).toEqual({})
      expect(yield* kv(plugin, "has", { key: "greeting" })).toEqual({})
      // Deleting what is not there is not an error.
      expect(yield* kv(plugin, "delete", { key: "greeting" })).toEqual({})
    })
  )

  it.scoped("values are bytes: NUL and high bytes, JSON arrays of numbers, empty = present-but-empty", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      const binary = Uint8Array.from([0, 255, 0, 1, 128, 0, 0x0a, 0xc3])
      expect(yield* kv(plugin, "set", { key: "bin", value: b64(binary) })).toEqual({})
      expect(yield* kv(plugin, "get", { key: "bin" })).toEqual({ value: b64(binary), exists: true })
      expect(yield* kv(plugin, "set", { key: "arr", value: [104, 105, 0, 255] })).toEqual({})
      expect(yield* kv(plugin, "get", { key: "arr" })).toEqual({
        value: b64(Uint8Array.from([104, 105, 0, 255])),
        exists: true
      })
      expect(yield* kv(plugin, "set", { key: "empty", value: "" })).toEqual({})
      expect(yield* kv(plugin, "get", { key: "empty" })).toEqual({ exists: true })
      expect(yield* kv(plugin, "has", { key: "empty" })).toEqual({ exists: true })
      // A missing or null value is Go's nil slice: stored empty.
      expect(yield* kv(plugin, "set", { key: "nil", value: null })).toEqual({})
      expect(yield* kv(plugin, "get", { key: "nil" })).toEqual({ exists: true })
      // Keys count too: "bin", "arr", "empty", "nil".
      expect(yield* kv(plugin, "getstorageused")).toEqual({ bytes: binary.byteLength + 4 + 3 + 3 + 5 + 3 })
      // Non-ASCII keys and NUL inside a key are just text.
      expect(yield* kv(plugin, "set", { key: "Björk/東京/🎵\u0000x", value: b64("ok") })).toEqual({})
      expect(yield* kv(plugin, "get", { key: "Björk/東京/🎵\u0000x" })).toEqual({
        value: b64("ok"),
        exists: true
      })

      for (const value of ["not base64!", [1, 256], [-1], "aGk"]) {
        const response = yield* kv(plugin, "set", { key: "bad", value })
        expect(String(response["error"])).toMatch(/^invalid request: value/)
      }
      expect(yield* kv(plugin, "has", { key: "bad" })).toEqual({})
      expect(String((yield* kv(plugin, "get", "{not json"))["error"])).toContain("invalid request")
    })
  )

  it.scoped("list is sorted by UTF-8 bytes, and % and _ in a prefix are literal", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      const keys = [
        "z",
        "a_b",
        "é",
        "axb",
        "a%b",
        "a",
        "ab",
        "a%",
        "b",
        "A",
        "x\u{10FFFF}",
        "x\u{10FFFF}a",
        "y"
      ]
      for (const key of keys) yield* put(plugin, key, "")
      const all = [...keys].sort((l, r) => Buffer.compare(Buffer.from(l), Buffer.from(r)))
      expect(yield* kv(plugin, "list", { prefix: "" })).toEqual({ keys: all })
      expect(yield* kv(plugin, "list", {})).toEqual({ keys: all })
      expect(yield* kv(plugin, "list", { prefix: "a%" })).toEqual({ keys: ["a%", "a%b"] })
      expect(yield* kv(plugin, "list", { prefix: "a_" })).toEqual({ keys: ["a_b"] })
      expect(yield* kv(plugin, "list", { prefix: "a" })).toEqual({
        keys: ["a", "a%", "a%b", "a_b", "ab", "axb"]
      })
      expect(yield* kv(plugin, "list", { prefix: "x\u{10FFFF}" })).toEqual({
        keys: ["x\u{10FFFF}", "x\u{10FFFF}a"]
      })
      expect(yield* kv(plugin, "list", { prefix: "%" })).toEqual({})
      expect(yield* kv(plugin, "list", { prefix: "_" })).toEqual({})
      expect(yield* kv(plugin, "list", { prefix: "nothing" })).toEqual({})
      expect(String((yield* kv(plugin, "list", '{"prefix":"a\\ud800"}'))["error"])).toContain(
        "prefix is not valid UTF-8"
      )
    })
  )

  it.scoped("getmany returns only the existing keys, empty values included", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      yield* put(plugin, "a", "alpha")
      yield* put(plugin, "b", "beta")
      yield* put(plugin, "e", "")
      expect(yield* kv(plugin, "getmany", { keys: ["a", "missing", "e", "a"] })).toEqual({
        values: { a: b64("alpha"), e: "" }
      })
      // Keys are data, never object members of ours.
      yield* put(plugin, "__proto__", "p")
      const proto = yield* kv(plugin, "getmany", { keys: ["__proto__", "constructor"] })
      expect(JSON.stringify(proto)).toBe(`{"values":{"__proto__":"${b64("p")}"}}`)
      expect(yield* kv(plugin, "get", { key: "__proto__" })).toEqual({ value: b64("p"), exists: true })
      expect(yield* kv(plugin, "getmany", { keys: ["missing"] })).toEqual({})
      expect(yield* kv(plugin, "getmany", { keys: [] })).toEqual({})
      expect(yield* kv(plugin, "getmany", {})).toEqual({})
      // More keys than one SQL statement takes.
      const many = Array.from({ length: 1200 }, (_, i) => `k${i}`)
      expect(yield* kv(plugin, "getmany", { keys: [...many, "b"] })).toEqual({ values: { b: b64("beta") } })
      expect(String((yield* kv(plugin, "getmany", { keys: ["a", ""] }))["error"])).toBe(
        "key must not be empty"
      )
    })
  )

  it.scoped("deletebyprefix deletes exactly the keys with that literal prefix and counts them", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      for (const key of ["user:1", "user:2", "user_3", "users", "user%", "other"])
        yield* put(plugin, key, "v")
      expect(yield* kv(plugin, "deletebyprefix", { prefix: "user:" })).toEqual({ deletedCount: 2 })
      expect(yield* kv(plugin, "deletebyprefix", { prefix: "user%" })).toEqual({ deletedCount: 1 })
      expect(yield* kv(plugin, "deletebyprefix", { prefix: "user:" })).toEqual({})
      expect(yield* kv(plugin, "list", { prefix: "" })).toEqual({ keys: ["other", "user_3", "users"] })
      // "other", "user_3" and "users", one value byte each.
      expect(yield* kv(plugin, "getstorageused")).toEqual({ bytes: 5 + 6 + 5 + 3 })
      for (const request of [{ prefix: "" }, {}]) {
        expect(String((yield* kv(plugin, "deletebyprefix", request))["error"])).toContain(
          "prefix must not be empty"
        )
      }
      expect(yield* kv(plugin, "list", { prefix: "" })).toEqual({ keys: ["other", "user_3", "users"] })
    })
  )

  it.scoped("keys must be non-empty, at most 256 bytes and valid UTF-8, for every operation", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      const longest = "é".repeat(128) // 256 bytes
      expect(yield* kv(plugin, "set", { key: longest, value: "" })).toEqual({})
      expect(yield* kv(plugin, "has", { key: longest })).toEqual({ exists: true })
      const requests: Array<[string, (key: string) => unknown]> = [
        ["set", (key) => ({ key, value: "" })],
        ["setwithttl", (key) => ({ key, value: "", ttlSeconds: 5 })],
        ["get", (key) => ({ key })],
        ["has", (key) => ({ key })],
        ["delete", (key) => ({ key })],
        ["getmany", (key) => ({ keys: [key] })]
      ]
      for (const [fn, request] of requests) {
        expect((yield* kv(plugin, fn, request("")))["error"]).toBe("key must not be empty")
        expect((yield* kv(plugin, fn, request(`${longest}a`)))["error"]).toBe(
          "key is 257 bytes long; the limit is 256 bytes"
        )
        // A lone surrogate can only arrive as a JSON escape, which JSON.stringify writes.
        const lone = JSON.stringify(request("x\ud83cy"))
        expect(lone).toContain("\\ud83c")
        expect((yield* kv(plugin, fn, lone))["error"]).toBe(
          "key is not valid UTF-8 (it holds a lone surrogate)"
        )
      }
      expect((yield* kv(plugin, "get", {}))["error"]).toBe("key must not be empty")
      expect(yield* kv(plugin, "list", { prefix: "" })).toEqual({ keys: [longest] })
    })
  )

  it.scoped("quota: key and value bytes count, exactly the limit fits, one more byte does not", () =>
    Effect.gen(function* () {
      const plugin = yield* load() // "2KB" = 2000 bytes
      expect(yield* kv(plugin, "getstorageused")).toEqual({})
      yield* put(plugin, "a".repeat(200), "x".repeat(1300))
      yield* put(plugin, "b".repeat(199), "y".repeat(300))
      expect(yield* kv(plugin, "getstorageused")).toEqual({ bytes: 1999 })
      const refused = String((yield* kv(plugin, "set", { key: "c", value: b64("z") }))["error"])
      expect(refused).toBe(
        "storage limit exceeded: 1999 of 2000 bytes are used (keys and values both count), and writing " +
          '2 bytes (key 1 + value 1) to key "c" would make it 2001: delete entries you no longer need, ' +
          "or ask for a larger kvstore maxSize in the manifest"
      )
      expect(yield* kv(plugin, "has", { key: "c" })).toEqual({})
      // An empty value still costs its key.
      expect(yield* kv(plugin, "set", { key: "c", value: "" })).toEqual({})
      expect(String((yield* kv(plugin, "set", { key: "d", value: "" }))["error"])).toContain(
        "storage limit exceeded: 2000 of 2000 bytes are used"
      )
      expect(
        String((yield* kv(plugin, "setwithttl", { key: "d", value: b64("z"), ttlSeconds: 9 }))["error"])
      ).toContain("storage limit exceeded")
      expect(yield* kv(plugin, "getstorageused")).toEqual({ bytes: 2000 })
      // A single value larger than the whole store.
      const other = yield* load()
      expect(
        String((yield* kv(other, "set", { key: "huge", value: b64("h".repeat(1997)) }))["error"])
      ).toContain("storage limit exceeded: 0 of 2000 bytes are used")
    })
  )

  it.scoped("quota: an overwrite counts its delta, and one that frees space always succeeds", () =>
    Effect.gen(function* () {
      const id = `kv-delta-${++loaded}`
      const first = yield* Scope.make()
      const plugin = yield* load({ id }).pipe(Scope.extend(first))
      // Keys "a" and "b" are one byte each.
      yield* put(plugin, "a", "1".repeat(1499))
      yield* put(plugin, "b", "2".repeat(499))
      yield* put(plugin, "a", "3".repeat(1499)) // delta 0 at the limit
      expect(
        String((yield* kv(plugin, "set", { key: "a", value: b64("4".repeat(1500)) }))["error"])
      ).toContain("storage limit exceeded")
      yield* put(plugin, "a", "5".repeat(999))
      expect(yield* kv(plugin, "getstorageused")).toEqual({ bytes: 1500 })
      yield* put(plugin, "a", "6".repeat(1499)) // delta +500 reaches the limit again
      expect(yield* kv(plugin, "getstorageused")).toEqual({ bytes: 2000 })
      yield* Scope.close(first, Exit.void)

      // The same store under a smaller limit: already over it, yet shrinking still goes through.
      const shrunk = yield* load({ id, maxSize: "1KB" })
      expect(yield* kv(shrunk, "getstorageused")).toEqual({ bytes: 2000 })
      expect(yield* kv(shrunk, "set", { key: "a", value: b64("7".repeat(1399)) })).toEqual({})
      expect(yield* kv(shrunk, "set", { key: "b", value: b64("8".repeat(499)) })).toEqual({})
      const grown = String((yield* kv(shrunk, "set", { key: "b", value: b64("9".repeat(500)) }))["error"])
      expect(grown).toContain("storage limit exceeded: 1900 of 1000 bytes are used")
      expect(String((yield* kv(shrunk, "set", { key: "new", value: b64("n") }))["error"])).toContain(
        "storage limit exceeded"
      )
      expect(yield* kv(shrunk, "delete", { key: "a" })).toEqual({})
      expect(yield* kv(shrunk, "set", { key: "new", value: b64("n".repeat(497)) })).toEqual({})
      expect(yield* kv(shrunk, "getstorageused")).toEqual({ bytes: 1000 })
    })
  )

  it.scoped("getstorageused ignores whatever payload it is given", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      yield* put(plugin, "k", "12345")
      for (const payload of ["", "{}", "not json at all", '{"key":"x"}']) {
        expect(yield* kv(plugin, "getstorageused", payload)).toEqual({ bytes: 1 + 5 })
      }
    })
  )

  it.scoped("the kv_scenario export runs set, get, has, list, delete, has inside Wasm", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      const output = yield* plugin.call("kv_scenario", JSON.stringify({ key: "scénario", value: b64("v") }))
      expect(JSON.parse(new TextDecoder().decode(output!))).toEqual({
        set: {},
        get: { value: b64("v"), exists: true },
        has: { exists: true },
        list: { keys: ["scénario"] },
        delete: {},
        hasAfter: {}
      })
      yield* put(plugin, "bench", "value")
      const bench = yield* plugin.call("bench_kv_get100", '{"key":"bench"}')
      expect(new TextDecoder().decode(bench!)).toBe('{"calls":100}')
    })
  )

  it.scoped("a SQL failure is an in-band error, never a trap", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      yield* put(plugin, "k", "v")
      yield* withRawDb(yield* storeOf(plugin.id), (sql) => sql`DROP TABLE kv`)
      for (const fn of ["get", "has", "set", "list", "getstorageused"]) {
        const response = yield* kv(plugin, fn, { key: "k", value: "", prefix: "" })
        expect(String(response["error"])).toMatch(/^kvstore storage error: .*no such table: kv/)
      }
      // The plugin itself keeps working.
      const output = yield* plugin.call("kv_scenario", '{"key":"k"}')
      expect(new TextDecoder().decode(output!)).toContain('"error"')
    })
  )

  it.scoped("a store file that cannot be opened fails every call in-band, and the plugin still loads", () =>
    Effect.gen(function* () {
      const id = `kv-broken-${++loaded}`
      const path = yield* storeOf(id)
      mkdirSync(dirname(path), { recursive: true })
      writeFileSync(path, "this is not a SQLite database, just some text that is long enough. ".repeat(100))
      const plugin = yield* load({ id })
      const response = yield* kv(plugin, "get", { key: "k" })
      expect(String(response["error"])).toMatch(
        /^kvstore unavailable: kvstore storage error: .*not a database/
      )
      expect(String((yield* kv(plugin, "getstorageused"))["error"])).toContain("kvstore unavailable")
      // The failed open let go of the file at once.
      expect(openFilesUnder(dirname(path))).toBe(0)
    })
  )
})

describe("KvStore prefix ranges", () => {
  const utf8Compare = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b))
  // Code points at the edges (the last one, around the surrogate gap, NUL) mixed with any others.
  const text = FastCheck.oneof(
    FastCheck.string({
      unit: FastCheck.constantFrom("a", "b", "é", "\u0000", "\uD7FF", "\uE000", "\u{10FFFF}")
    }),
    FastCheck.string({ unit: "binary", maxLength: 6 })
  )

  it.prop(
    "[prefix, successor) holds exactly the strings that start with prefix",
    [text, text],
    ([prefix, key]) => {
      const upper = prefixSuccessor(prefix)
      const inRange = utf8Compare(key, prefix) >= 0 && (upper === undefined || utf8Compare(key, upper) < 0)
      expect(inRange).toBe(key.startsWith(prefix))
    }
  )
})

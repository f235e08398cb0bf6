import { expect, layer } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { readFileSync } from "node:fs"
import { HostFunctions } from "../../../src/host/HostFunctions.js"
import { storePath } from "../../../src/host/kvstore/KvStoreService.js"
import type { LoadedPlugin } from "../../../src/loader/PluginLoader.js"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import { testEngine } from "../../support/engine.js"
import { fixture } from "../../support/fixtures.js"
import { b64, kv, kvPackage, put, rawRowCount, rawUsedBytes, withRawDb } from "./support.js"

const decoder = new TextDecoder()

/** What `kv-key-hog`'s `hog` reports. */
interface Hog {
  readonly stored: number
  readonly refused: number
  readonly firstError: string
  readonly lastError: string
}

let loaded = 0

/** The hostile fixture (`maxSize` "1KB" = 1000 bytes) under a fresh ID, and its store file. */
const loadHog = Effect.gen(function* () {
  const loader = yield* PluginLoader
  const plugin = yield* loader.loadBytes(`hog-${++loaded}`, readFileSync(fixture("kv-key-hog")))
  const { dataFolder } = yield* HostFunctions
  const hog = (request: Record<string, unknown>) =>
    Effect.map(
      Effect.orDie(plugin.call("hog", JSON.stringify(request))),
      (bytes) => JSON.parse(decoder.decode(bytes!)) as Hog
    )
  return { plugin, hog, file: storePath({ dataFolder, pluginId: plugin.id }) }
})

/** A healthy plugin on the same service: writes and reads back its own entry. */
const loadNeighbour = Effect.gen(function* () {
  const plugin = yield* (yield* PluginLoader).loadBytes(`neighbour-${++loaded}`, kvPackage())
  const served = (n: number) =>
    Effect.gen(function* () {
      yield* put(plugin, `n${n}`, `value ${n}`)
      expect(yield* kv(plugin, "get", { key: `n${n}` })).toEqual({ value: b64(`value ${n}`), exists: true })
    })
  return { plugin, served }
})

/** What the plugin is told is in use (`{}` means 0). */
const used = (plugin: LoadedPlugin) =>
  Effect.map(kv(plugin, "getstorageused"), (answer) => (answer["bytes"] as number | undefined) ?? 0)

const pad = (key: string, length: number) => key + "x".repeat(length - key.length)

layer(testEngine({ runtime: { poolSize: 2 } }))("KvStore limits (defaults)", (it) => {
  it.scoped("long keys with empty values count against maxSize, while a neighbour keeps its store", () =>
    Effect.gen(function* () {
      const { file, hog, plugin } = yield* loadHog
      const neighbour = yield* loadNeighbour
      const [result] = yield* Effect.all(
        [hog({ count: 2000, keyLength: 200 }), Effect.forEach([1, 2, 3, 4, 5], neighbour.served)],
        { concurrency: "unbounded" }
      )
      // 5 keys of 200 bytes fill 1000 bytes; before the fix all 2000 were stored and "0 bytes" used.
      expect(result).toMatchObject({ stored: 5, refused: 1995 })
      expect(result.firstError).toBe(
        "storage limit exceeded: 1000 of 1000 bytes are used (keys and values both count), and writing " +
          `200 bytes (key 200 + value 0) to key "${pad("hog5", 200)}" would make it 1200: delete entries ` +
          "you no longer need, or ask for a larger kvstore maxSize in the manifest"
      )
      expect(yield* used(plugin)).toBe(1000)
      expect(yield* rawUsedBytes(file)).toBe(1000)
      expect(yield* rawRowCount(file)).toBe(5)
      // The TTL path is held to the same account.
      const viaTtl = yield* hog({ count: 50, keyLength: 100, prefix: "ttl", ttlSeconds: 60 })
      expect(viaTtl).toMatchObject({ stored: 0, refused: 50 })
      // Deleting frees exactly the key and value bytes.
      expect(yield* kv(plugin, "delete", { key: pad("hog0", 200) })).toEqual({})
      expect(yield* used(plugin)).toBe(800)
      const refill = yield* hog({ count: 10, keyLength: 100, prefix: "small" })
      expect(refill).toMatchObject({ stored: 2, refused: 8 })
      expect(yield* used(plugin)).toBe(1000)
      expect(yield* rawUsedBytes(file)).toBe(1000)
      yield* neighbour.served(6)
    })
  )

  it.scoped("storage used equals the real key and value bytes after every kind of write", () =>
    Effect.gen(function* () {
      const { dataFolder } = yield* HostFunctions
      const plugin = yield* (yield* PluginLoader).loadBytes(`exact-${++loaded}`, kvPackage("1MB"))
      const file = storePath({ dataFolder, pluginId: plugin.id })
      const neighbour = yield* loadNeighbour
      const exact = (step: string) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const real = yield* rawUsedBytes(file, now)
          expect(yield* used(plugin), step).toBe(real)
          return real
        })
      // Multi-byte keys: "東京/é" is 9 bytes of UTF-8 but 4 characters.
      expect(yield* kv(plugin, "set", { key: "東京/é", value: b64("abc") })).toEqual({})
      expect(yield* exact("set")).toBe(9 + 3)
      yield* kv(plugin, "set", { key: "東京/é", value: b64("abcdefgh") })
      expect(yield* exact("overwrite, larger")).toBe(9 + 8)
      yield* kv(plugin, "set", { key: "東京/é", value: "" })
      expect(yield* exact("overwrite, empty")).toBe(9)
      yield* kv(plugin, "setwithttl", { key: "tmp/🎵", value: b64("ttl"), ttlSeconds: 10 })
      expect(yield* exact("setwithttl")).toBe(9 + 8 + 3)
      yield* kv(plugin, "setwithttl", { key: "tmp/again", value: b64("12345"), ttlSeconds: 20 })
      expect(yield* exact("second setwithttl")).toBe(9 + 8 + 3 + 9 + 5)
      yield* kv(plugin, "set", { key: "tmp/again", value: b64("1") })
      expect(yield* exact("set over a TTL entry")).toBe(9 + 8 + 3 + 9 + 1)
      yield* TestClock.adjust("10 seconds")
      expect(yield* exact("expiry")).toBe(9 + 9 + 1)
      yield* TestClock.adjust("60 seconds")
      expect(yield* rawRowCount(file)).toBe(2)
      expect(yield* exact("sweep")).toBe(9 + 9 + 1)
      for (const key of ["p/1", "p/2", "p/ü"]) yield* kv(plugin, "set", { key, value: b64("vv") })
      expect(yield* exact("more keys")).toBe(9 + 9 + 1 + (3 + 3 + 4) + 3 * 2)
      expect(yield* kv(plugin, "deletebyprefix", { prefix: "p/" })).toEqual({ deletedCount: 3 })
      expect(yield* exact("deletebyprefix")).toBe(9 + 9 + 1)
      yield* kv(plugin, "delete", { key: "東京/é" })
      expect(yield* exact("delete")).toBe(9 + 1)
      yield* kv(plugin, "delete", { key: "tmp/again" })
      expect(yield* exact("delete all")).toBe(0)
      yield* neighbour.served(1)
    })
  )

  it.scoped("a store written before keys counted is recounted when it opens", () =>
    Effect.gen(function* () {
      const { dataFolder } = yield* HostFunctions
      const id = `migrated-${++loaded}`
      const file = storePath({ dataFolder, pluginId: id })
      const first = yield* Scope.make()
      yield* (yield* PluginLoader).loadBytes(id, kvPackage()).pipe(Scope.extend(first))
      yield* Scope.close(first, Exit.void)
      // Turn the file back into what the previous schema left: value-only triggers, no entry count.
      yield* withRawDb(file, (sql) =>
        Effect.gen(function* () {
          yield* sql`DROP TRIGGER kv_usage_insert`
          yield* sql`DROP TRIGGER kv_usage_update`
          yield* sql`DROP TRIGGER kv_usage_delete`
          yield* sql`ALTER TABLE kv_usage DROP COLUMN entries`
          yield* sql`DELETE FROM kvstore_migrations WHERE migration_id = 2`
          yield* sql`CREATE TRIGGER kv_usage_insert AFTER INSERT ON kv BEGIN
            UPDATE kv_usage SET bytes = bytes + length(NEW.value) WHERE id = 1;
          END`
          yield* sql`CREATE TRIGGER kv_usage_update AFTER UPDATE OF value ON kv BEGIN
            UPDATE kv_usage SET bytes = bytes - length(OLD.value) + length(NEW.value) WHERE id = 1;
          END`
          yield* sql`CREATE TRIGGER kv_usage_delete AFTER DELETE ON kv BEGIN
            UPDATE kv_usage SET bytes = bytes - length(OLD.value) WHERE id = 1;
          END`
          for (let i = 0; i < 40; i++) {
            yield* sql`INSERT INTO kv (key, value) VALUES (${pad(`old${i}`, 100)}, ${new Uint8Array(0)})`
          }
          const [row] = yield* sql<{ readonly bytes: number }>`SELECT bytes FROM kv_usage`
          expect(row?.bytes).toBe(0)
        })
      ).pipe(Effect.orDie)
      const reopened = yield* (yield* PluginLoader).loadBytes(id, kvPackage())
      expect(yield* used(reopened)).toBe(4000)
      expect(yield* rawUsedBytes(file)).toBe(4000)
      // Over its 2 KB already: new keys are refused, deletes are counted exactly.
      expect(String((yield* kv(reopened, "set", { key: "new", value: "" }))["error"])).toContain(
        "storage limit exceeded: 4000 of 2000 bytes are used"
      )
      expect(yield* kv(reopened, "deletebyprefix", { prefix: "old1" })).toEqual({ deletedCount: 11 })
      expect(yield* used(reopened)).toBe(2900)
      expect(yield* rawUsedBytes(file)).toBe(2900)
    })
  )
})

layer(testEngine({ runtime: { poolSize: 2 }, kvstore: { maxKeys: 20 } }))(
  "KvStore limits (configured)",
  (it) => {
    it.scoped("the key count is capped; overwrites, deletes and expiry free room exactly", () =>
      Effect.gen(function* () {
        const { file, hog, plugin } = yield* loadHog
        const neighbour = yield* loadNeighbour
        const result = yield* hog({ count: 100, keyLength: 4, prefix: "k" })
        expect(result).toMatchObject({ stored: 20, refused: 80 })
        expect(result.firstError).toBe(
          'key limit reached: the store holds 20 keys, the most allowed, so key "k20x" cannot be added: ' +
            "delete keys you no longer need or reuse existing ones"
        )
        expect(yield* rawRowCount(file)).toBe(20)
        // Overwriting a key adds none.
        expect(yield* kv(plugin, "set", { key: "k0xx", value: b64("v") })).toEqual({})
        // Deleted and expired keys leave room; the expired ones are swept by the write that needs it.
        for (let i = 0; i < 5; i++) expect(yield* kv(plugin, "delete", { key: pad(`k${i}`, 4) })).toEqual({})
        expect(yield* hog({ count: 5, keyLength: 4, prefix: "t", ttlSeconds: 1 })).toMatchObject({
          stored: 5
        })
        expect(yield* hog({ count: 1, keyLength: 4, prefix: "z" })).toMatchObject({ stored: 0, refused: 1 })
        yield* TestClock.adjust("1 second")
        expect(yield* hog({ count: 6, keyLength: 4, prefix: "z" })).toMatchObject({ stored: 5, refused: 1 })
        expect(yield* rawRowCount(file)).toBe(20)
        expect(yield* used(plugin)).toBe(yield* rawUsedBytes(file))
        // The neighbour has a store and a key budget of its own.
        yield* Effect.forEach([1, 2, 3], neighbour.served)
      })
    )
  }
)

import { describe, expect, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { existsSync, readdirSync, rmSync } from "node:fs"
import { join } from "node:path"
import * as Engine from "../../../src/Engine.js"
import { HostFunctions } from "../../../src/host/HostFunctions.js"
import { storePath } from "../../../src/host/kvstore/KvStoreService.js"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import { tempDataFolder, testEngine } from "../../support/engine.js"
import { b64, kv, kvPackage, openFilesUnder, put, rawUsedBytes } from "./support.js"

const openFileCount = (): number => readdirSync("/proc/self/fd").length

layer(testEngine({ runtime: { poolSize: 2 } }), { excludeTestServices: true })("KvStore lifecycle", (it) => {
  it.scoped("two copies of one package under two IDs never see each other's data", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const a = yield* loader.loadBytes("iso-a", kvPackage())
      const b = yield* loader.loadBytes("iso-b", kvPackage())
      yield* put(a, "shared-key", "from a")
      yield* put(a, "only-a", "1")
      expect(yield* kv(b, "get", { key: "shared-key" })).toEqual({})
      expect(yield* kv(b, "list", { prefix: "" })).toEqual({})
      expect(yield* kv(b, "getstorageused")).toEqual({})
      yield* put(b, "shared-key", "from b")
      expect(yield* kv(a, "get", { key: "shared-key" })).toEqual({ value: b64("from a"), exists: true })
      expect(yield* kv(b, "get", { key: "shared-key" })).toEqual({ value: b64("from b"), exists: true })
      expect(yield* kv(b, "deletebyprefix", { prefix: "shared" })).toEqual({ deletedCount: 1 })
      expect(yield* kv(a, "list", { prefix: "" })).toEqual({ keys: ["only-a", "shared-key"] })
      const { dataFolder } = yield* HostFunctions
      expect(existsSync(storePath({ dataFolder, pluginId: "iso-a" }))).toBe(true)
      expect(existsSync(storePath({ dataFolder, pluginId: "iso-b" }))).toBe(true)
    })
  )

  it.effect("unloading closes the store: 50 load/unload cycles leave no file handle behind", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const { dataFolder } = yield* HostFunctions
      // The engine's own database lives in the data folder too: look at the plugins' part only.
      const plugins = join(dataFolder, "plugins")
      const bytes = kvPackage()
      const cycle = (i: number) =>
        Effect.gen(function* () {
          const scope = yield* Scope.make()
          const plugin = yield* loader.loadBytes("cycle", bytes).pipe(Scope.extend(scope))
          yield* put(plugin, `k${i}`, "v")
          expect(openFilesUnder(plugins)).toBeGreaterThan(0)
          yield* Scope.close(scope, Exit.void)
          expect(openFilesUnder(plugins)).toBe(0)
        })
      yield* cycle(0)
      const before = openFileCount()
      for (let i = 1; i <= 50; i++) yield* cycle(i)
      expect(openFileCount()).toBeLessThanOrEqual(before + 2)

      // Nothing holds the file: it can be deleted, and the next load starts an empty store.
      const file = storePath({ dataFolder, pluginId: "cycle" })
      for (const suffix of ["", "-wal", "-shm"]) rmSync(`${file}${suffix}`, { force: true })
      const plugin = yield* Effect.scoped(
        Effect.gen(function* () {
          const fresh = yield* loader.loadBytes("cycle", bytes)
          return yield* kv(fresh, "list", { prefix: "" })
        })
      )
      expect(plugin).toEqual({})
    })
  )
})

describe("KvStore across restarts", () => {
  it.live("data and usage survive an engine restart on the same data folder", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const dataFolder = yield* tempDataFolder
        const run = <A, E>(effect: Effect.Effect<A, E, PluginLoader | Scope.Scope>) =>
          Effect.scoped(effect).pipe(Effect.provide(Engine.layer({ dataFolder, runtime: { poolSize: 1 } })))
        const session = (write: boolean) =>
          run(
            Effect.gen(function* () {
              const plugin = yield* (yield* PluginLoader).loadBytes("persistent", kvPackage())
              if (write) {
                yield* put(plugin, "a", "alpha")
                yield* put(plugin, "b", Uint8Array.from([0, 1, 2, 255]))
                yield* put(plugin, "c", "gamma".repeat(100))
                yield* kv(plugin, "delete", { key: "c" })
                yield* kv(plugin, "setwithttl", { key: "t", value: b64("ttl"), ttlSeconds: 3600 })
              }
              return {
                used: yield* kv(plugin, "getstorageused"),
                keys: yield* kv(plugin, "list", { prefix: "" }),
                values: yield* kv(plugin, "getmany", { keys: ["a", "b", "t"] })
              }
            })
          )
        const first = yield* session(true)
        // "a" + "alpha", "b" + 4 bytes, "t" + "ttl": keys count.
        expect(first.used).toEqual({ bytes: 1 + 5 + 1 + 4 + 1 + 3 })
        const second = yield* session(false)
        expect(second).toEqual(first)
        expect(yield* rawUsedBytes(storePath({ dataFolder, pluginId: "persistent" }))).toBe(15)
      })
    )
  )
})

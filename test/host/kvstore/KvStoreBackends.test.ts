/**
 * The KV store's rules, run against both backends: a SQLite file per store, and the one PostgreSQL
 * schema shared by every plugin and node (a real server started by the test). The plugin-level
 * suites beside this file go through the host functions on SQLite; what they check of the store
 * itself is repeated here for both, plus what only a shared database can break: a value written by
 * one node read by another, and quotas that hold when two nodes write at once.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, layer, type Vitest } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { join } from "node:path"
import * as KvStore from "../../../src/host/kvstore/KvStore.js"
import type { KvStoreError } from "../../../src/host/kvstore/KvStoreError.js"
import * as KvStorePg from "../../../src/host/kvstore/KvStorePg.js"
import { tempDataFolder } from "../../support/engine.js"
import { postgresServer } from "../../support/postgres.js"

interface Limits {
  readonly maxSizeBytes?: number
  readonly maxKeys?: number
}

/** Opens stores of one backend; `node` picks which node's connection opens it (PostgreSQL only). */
class Backend extends Context.Tag("test/KvBackend")<
  Backend,
  {
    readonly name: string
    readonly open: (
      id: string,
      limits?: Limits,
      node?: number
    ) => Effect.Effect<KvStore.KvStore, KvStoreError, Scope.Scope>
  }
>() {}

const sqliteBackend = Layer.scoped(
  Backend,
  Effect.map(tempDataFolder, (dir) => ({
    name: "sqlite",
    open: (id: string, limits: Limits = {}) =>
      KvStore.make({
        filename: join(dir, id, "kvstore.db"),
        maxSizeBytes: limits.maxSizeBytes ?? 1_000_000,
        maxKeys: limits.maxKeys
      })
  }))
)

const pgBackend = Layer.scoped(
  Backend,
  Effect.gen(function* () {
    const server = yield* postgresServer
    // Two clients = two nodes: separate pools, nothing shared but the database.
    const nodes = yield* Effect.all(
      [0, 1].map(() => PgClient.make({ url: Redacted.make(server.url) })),
      { concurrency: 2 }
    )
    yield* KvStorePg.migrateSchema.pipe(Effect.provideService(SqlClient.SqlClient, nodes[0]!))
    return {
      name: "postgres",
      open: (id: string, limits: Limits = {}, node = 0) =>
        KvStorePg.make(nodes[node]!, {
          pluginId: id,
          maxSizeBytes: limits.maxSizeBytes ?? 1_000_000,
          maxKeys: limits.maxKeys
        })
    }
  }).pipe(Effect.provide(Reactivity.layer), Effect.orDie)
)

let opened = 0
const open = (limits?: Limits, id = `p${++opened}`) => Effect.flatMap(Backend, (b) => b.open(id, limits))
const bytes = (text: string) => new TextEncoder().encode(text)
const text = (value: Option.Option<Uint8Array>) => Option.map(value, (v) => new TextDecoder().decode(v))

const suite = (it: Vitest.MethodsNonLive<Backend>) => {
  it.scoped("set, get, has, delete; empty values are present; NUL and non-ASCII keys are text", () =>
    Effect.gen(function* () {
      const store = yield* open()
      yield* store.set("greeting", bytes("hello"))
      expect(text(yield* store.get("greeting"))).toEqual(Option.some("hello"))
      yield* store.set("greeting", bytes("hej då"))
      expect(text(yield* store.get("greeting"))).toEqual(Option.some("hej då"))
      yield* store.set("empty", new Uint8Array(0))
      expect(yield* store.has("empty")).toBe(true)
      expect(Option.map(yield* store.get("empty"), (v) => v.byteLength)).toEqual(Option.some(0))
      const binary = Uint8Array.from([0, 255, 0, 1, 128])
      yield* store.set("Björk/東京/🎵\u0000x", binary)
      expect(Option.map(yield* store.get("Björk/東京/🎵\u0000x"), (v) => Array.from(v))).toEqual(
        Option.some(Array.from(binary))
      )
      yield* store.delete("greeting")
      expect(yield* store.has("greeting")).toBe(false)
      yield* store.delete("greeting")
      const error = yield* Effect.flip(store.get(""))
      expect(error.reason).toBe("InvalidKey")
    })
  )

  it.scoped("list is in UTF-8 byte order, % and _ are literal; getMany leaves out the missing", () =>
    Effect.gen(function* () {
      const store = yield* open()
      for (const key of ["b", "a%", "a_", "ab", "a", "é", "z", "🎵"]) yield* store.set(key, bytes(key))
      expect(yield* store.list("")).toEqual(["a", "a%", "a_", "ab", "b", "z", "é", "🎵"])
      expect(yield* store.list("a")).toEqual(["a", "a%", "a_", "ab"])
      expect(yield* store.list("a%")).toEqual(["a%"])
      const many = yield* store.getMany(["a", "missing", "é", "a"])
      expect(Array.from(many.keys()).sort()).toEqual(["a", "é"])
      expect(yield* store.deleteByPrefix("a")).toBe(4)
      expect(yield* store.list("")).toEqual(["b", "z", "é", "🎵"])
      expect((yield* Effect.flip(store.deleteByPrefix(""))).reason).toBe("InvalidArgument")
    })
  )

  it.scoped("usage counts key and value bytes exactly; the byte and key limits refuse with a reason", () =>
    Effect.gen(function* () {
      const store = yield* open({ maxSizeBytes: 20, maxKeys: 3 })
      yield* store.set("k1", bytes("12345678"))
      expect(yield* store.storageUsed).toBe(10)
      const over = yield* Effect.flip(store.set("k2", bytes("123456789")))
      expect(over.reason).toBe("StorageLimitExceeded")
      expect(over.message).toContain("10 of 20 bytes are used")
      // Overwriting with something no larger always goes through.
      yield* store.set("k1", bytes("1234"))
      expect(yield* store.storageUsed).toBe(6)
      yield* store.set("k2", new Uint8Array(0))
      yield* store.set("k3", new Uint8Array(0))
      const keys = yield* Effect.flip(store.set("k4", new Uint8Array(0)))
      expect(keys.reason).toBe("TooManyKeys")
      yield* store.delete("k2")
      yield* store.set("k4", new Uint8Array(0))
      expect(yield* store.storageUsed).toBe(6 + 2 + 2)
    })
  )

  it.scoped("a TTL hides the entry when it passes, frees its quota, and a rewrite clears it", () =>
    Effect.gen(function* () {
      const store = yield* open({ maxSizeBytes: 12, maxKeys: 1 })
      yield* store.setWithTtl("t", bytes("0123456789"), 2)
      expect(yield* store.storageUsed).toBe(11)
      expect((yield* Effect.flip(store.setWithTtl("t", bytes("x"), 0))).reason).toBe("InvalidArgument")
      yield* TestClock.adjust("2001 millis")
      expect(yield* store.get("t")).toEqual(Option.none())
      expect(yield* store.list("")).toEqual([])
      expect(yield* store.storageUsed).toBe(0)
      // Expired rows do not count against either limit.
      yield* store.set("u", bytes("0123456789"))
      expect(text(yield* store.get("u"))).toEqual(Option.some("0123456789"))
      yield* store.setWithTtl("u", bytes("1"), 1)
      yield* store.set("u", bytes("2"))
      yield* TestClock.adjust("5 seconds")
      expect(text(yield* store.get("u"))).toEqual(Option.some("2"))
      expect(yield* store.sweep).toBe(0)
    })
  )
}

describe("KV store backends", () => {
  layer(sqliteBackend)("sqlite", (it) => suite(it))
  layer(pgBackend, { timeout: 120_000 })("postgres", (it) => {
    suite(it)

    it.scoped("a value written through one node is read through another", () =>
      Effect.gen(function* () {
        const backend = yield* Backend
        const a = yield* backend.open("shared", {}, 0)
        const b = yield* backend.open("shared", {}, 1)
        yield* a.set("token", bytes("secret"))
        expect(text(yield* b.get("token"))).toEqual(Option.some("secret"))
        // Plugins do not see each other's keys in the shared table.
        const other = yield* backend.open("other", {}, 1)
        expect(yield* other.has("token")).toBe(false)
      })
    )

    it.scoped("quotas hold when two nodes write at once: exactly the limit is admitted", () =>
      Effect.gen(function* () {
        const backend = yield* Backend
        const a = yield* backend.open("race", { maxSizeBytes: 1_000_000, maxKeys: 25 }, 0)
        const b = yield* backend.open("race", { maxSizeBytes: 1_000_000, maxKeys: 25 }, 1)
        const writes = Array.from({ length: 60 }, (_, i) =>
          Effect.either((i % 2 === 0 ? a : b).set(`k${i}`, bytes("v")))
        )
        const results = yield* Effect.all(writes, { concurrency: 20 })
        expect(results.filter((r) => r._tag === "Right")).toHaveLength(25)
        expect((yield* a.list("")).length).toBe(25)
        // Usage stays exact: 25 values of 1 byte plus their keys.
        const keys = yield* b.list("")
        const expected = keys.reduce((sum, key) => sum + Buffer.byteLength(key) + 1, 0)
        expect(yield* a.storageUsed).toBe(expected)
      })
    )
  })
})

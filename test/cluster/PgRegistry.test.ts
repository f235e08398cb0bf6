/**
 * The shared tables on PostgreSQL (`PgStorage`): the migrations of `Migrations.shared` in the
 * PostgreSQL dialect, run by several processes' worth of clients at once, and the registry's
 * operations on them behaving as on SQLite.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Registry from "../../src/manager/Registry.js"
import * as PgStorage from "../../src/storage/PgStorage.js"
import { sharedAsStorage, SharedStorage } from "../../src/storage/Storage.js"
import { postgresServer } from "../support/postgres.js"

describe("the registry on PostgreSQL", () => {
  it.scopedLive("migrates once under concurrent starts, then inserts, patches, versions and removes", () =>
    Effect.gen(function* () {
      const server = yield* postgresServer
      const url = yield* server.createDatabase("pg_registry")
      // Four clients migrating at once: each waits for the advisory lock and finds the work done.
      const storages = yield* Effect.all(
        Array.from({ length: 4 }, () => Layer.build(PgStorage.layerUrl(url))),
        { concurrency: "unbounded" }
      )
      const tables = yield* Context.get(storages[0]!, SharedStorage).dialect.tables
      expect([...tables].sort()).toEqual(
        [
          "ndp_schema_migrations",
          "plugins",
          "scrobble_drains",
          "scrobble_queue",
          "scrobble_unauthorized",
          // The embedded defaults a cluster shares (decision 0047); not the catalogue.
          "scrobble_history",
          "settings",
          "users"
        ].sort()
      )
      // The migration seeding the demo users ran once.
      const { sql } = Context.get(storages[0]!, SharedStorage)
      expect(yield* sql<{ user_name: string }>`SELECT user_name FROM users ORDER BY user_name`).toEqual([
        { user_name: "admin" },
        { user_name: "alice" },
        { user_name: "bob" }
      ])

      const registry = Context.get(
        yield* Layer.build(
          Registry.layer.pipe(Layer.provide(sharedAsStorage), Layer.provide(PgStorage.layerUrl(url)))
        ),
        Registry.Registry
      )
      const before = yield* registry.version
      const inserted = yield* registry.insert({
        id: "p",
        path: "/plugins/p.ndp",
        manifest: "{}",
        sha256: "0",
        lastError: null
      })
      expect(inserted).toMatchObject({ id: "p", enabled: false, config: {}, users: [], allowWrite: false })
      expect(typeof inserted.updatedAt).toBe("number")
      // Epoch milliseconds do not fit PostgreSQL's INTEGER.
      expect(inserted.updatedAt).toBeGreaterThan(2 ** 31)
      const afterInsert = yield* registry.version
      expect(afterInsert).not.toBe(before)

      const patched = yield* registry.update("p", { enabled: true, config: { greeting: "hi" }, users: "all" })
      expect(patched).toMatchObject({ enabled: true, config: { greeting: "hi" }, users: "all" })
      expect(patched.updatedAt).toBeGreaterThan(inserted.updatedAt)
      expect(yield* registry.version).not.toBe(afterInsert)
      expect((yield* registry.list).map((r) => r.id)).toEqual(["p"])

      const missing = yield* Effect.flip(registry.update("nope", { enabled: true }))
      expect(missing.message).toContain("plugin nope is not registered")
      yield* registry.remove("p")
      expect(yield* registry.get("p")).toEqual(Option.none())
    })
  )

  it.scoped("refuses a URL that is not postgres://, without echoing its password", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Layer.build(PgStorage.layerUrl("mysql://user:secret@host/db")))
      expect(error.message).toContain("must be a postgres:// URL")
      expect(error.message).not.toContain("secret")
    })
  )
})

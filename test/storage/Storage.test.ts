/** The engine's storage: one file, one client, migrations run once, old databases carried forward. */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { execFile } from "node:child_process"
import { mkdirSync, readdirSync, readlinkSync } from "node:fs"
import { join } from "node:path"
import * as Engine from "../../src/Engine.js"
import * as Registry from "../../src/manager/Registry.js"
import { ArtworkSettings } from "../../src/server/ArtworkSettings.js"
import * as EmbeddedDatabase from "../../src/server/embedded/EmbeddedDatabase.js"
import { UserDirectory } from "../../src/server/UserDirectory.js"
import * as Migrations from "../../src/storage/Migrations.js"
import { Storage } from "../../src/storage/Storage.js"
import { repositoryRoot } from "../support/cli.js"
import { tempDataFolder } from "../support/engine.js"
import { storageLayer } from "../support/storage.js"

const everyMigration = Migrations.all.map(([key]) => Migrations.idOf(key))

/** What the migrations table and the seeded tables hold. */
const snapshot = Effect.gen(function* () {
  const { sql } = yield* Storage
  const migrations = yield* sql<{ migration_id: number }>`SELECT migration_id FROM ${sql(
    Migrations.MIGRATIONS_TABLE
  )} ORDER BY migration_id`
  const users = yield* sql<{ user_name: string }>`SELECT user_name FROM users ORDER BY user_name`
  const libraries = yield* sql<{ id: number }>`SELECT id FROM libraries ORDER BY id`
  return {
    migrations: migrations.map((row) => row.migration_id),
    users: users.map((row) => row.user_name),
    libraries: libraries.map((row) => row.id)
  }
})

const fresh = { migrations: everyMigration, users: ["admin", "alice", "bob"], libraries: [1] }

/** Opens a storage in its own process; resolves with what it printed. */
const opener = (dataFolder: string, name: string, count: number) =>
  Effect.async<{ users: number }, Error>((resume) => {
    execFile(
      process.execPath,
      [
        "--import",
        "tsx",
        join(repositoryRoot, "test/support/storage-opener.ts"),
        dataFolder,
        name,
        String(count)
      ],
      { cwd: repositoryRoot, encoding: "utf8", timeout: 300_000 },
      (error, stdout, stderr) =>
        resume(
          error === null
            ? Effect.succeed(JSON.parse(stdout) as { users: number })
            : Effect.fail(new Error(`opener ${name} failed: ${stderr || error.message}`))
        )
    )
  })

/** How many descriptors of this process have `file` open (Linux: /proc/self/fd). */
const openDescriptors = (file: string) =>
  readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === file
    } catch {
      return false // closed between the listing and the read
    }
  }).length

/** A raw client on a file, as the code before the storage service had. */
const rawClient = (filename: string) => SqliteClient.make({ filename }).pipe(Effect.provide(Reactivity.layer))

describe("Storage", () => {
  it.scoped("Engine.layer keeps every table in one file, ndp.db, migrated once", () =>
    Effect.gen(function* () {
      const dataFolder = yield* tempDataFolder
      const [state, descriptors] = yield* Effect.all([
        snapshot,
        // Every component built: the registry and the scrobble queue beside the embedded defaults.
        Effect.sync(() => openDescriptors(join(dataFolder, "ndp.db")))
      ]).pipe(
        Effect.provide(
          Registry.layer.pipe(Layer.provideMerge(Engine.layer({ dataFolder, runtime: { poolSize: 1 } })))
        )
      )
      expect(state).toEqual(fresh)
      // One client: ndp.db is open once in this process.
      if (process.platform === "linux") expect(descriptors).toBe(1)
      const databases = readdirSync(dataFolder).filter((file) => /\.db$|\.sqlite$/.test(file))
      expect(databases).toEqual(["ndp.db"])
      const sql = yield* rawClient(join(dataFolder, "ndp.db"))
      const tables = (yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table'`).map(
        (row) => row.name
      )
      expect(tables).toEqual(
        expect.arrayContaining(["plugins", "scrobble_queue", "users", "settings", "libraries", "songs"])
      )
      // One migrations table, not one per component.
      expect(tables.filter((name) => name.endsWith("migrations"))).toEqual([Migrations.MIGRATIONS_TABLE])
    })
  )

  it.scoped("several storages built at once in one process on a fresh file: every migration runs once", () =>
    Effect.gen(function* () {
      const dataFolder = yield* tempDataFolder
      const contexts = yield* Effect.all(
        Array.from({ length: 4 }, () => Layer.build(storageLayer(dataFolder))),
        { concurrency: "unbounded" }
      )
      for (const context of contexts) {
        expect(yield* snapshot.pipe(Effect.provide(context))).toEqual(fresh)
      }
    })
  )

  it.scopedLive(
    "two processes opening one fresh file at once: every migration runs once",
    () =>
      Effect.gen(function* () {
        const dataFolder = yield* tempDataFolder
        const results = yield* Effect.all([opener(dataFolder, "a", 2), opener(dataFolder, "b", 2)], {
          concurrency: 2
        })
        // The demo users are inserted by a migration: run twice, they would be there twice, or fail.
        expect(results).toEqual([{ users: 3 }, { users: 3 }])
        const context = yield* Layer.build(storageLayer(dataFolder))
        expect(yield* snapshot.pipe(Effect.provide(context))).toEqual(fresh)
      }),
    600_000
  )

  it.scoped("an ndp.db made before the storage service moves forward with its data", () =>
    Effect.gen(function* () {
      const dataFolder = yield* tempDataFolder
      mkdirSync(dataFolder, { recursive: true })
      // What the old code left: the registry at its first migration (no allowed_networks yet), the
      // embedded users and settings; no scrobble queue and no catalogue (never opened there).
      yield* Effect.scoped(
        Effect.gen(function* () {
          const sql = yield* rawClient(join(dataFolder, "ndp.db"))
          const migrationsTable = (name: string) =>
            sql`CREATE TABLE ${sql(name)} (migration_id integer PRIMARY KEY NOT NULL,
              created_at datetime NOT NULL DEFAULT current_timestamp, name VARCHAR(255) NOT NULL)`
          yield* migrationsTable("ndp_registry_migrations")
          yield* sql`INSERT INTO ndp_registry_migrations (migration_id, name) VALUES (1, 'plugins')`
          yield* sql`CREATE TABLE plugins (id TEXT PRIMARY KEY, path TEXT NOT NULL, manifest TEXT NOT NULL,
            config TEXT NOT NULL DEFAULT '{}', users TEXT NOT NULL DEFAULT '[]',
            all_users INTEGER NOT NULL DEFAULT 0, libraries TEXT NOT NULL DEFAULT '[]',
            all_libraries INTEGER NOT NULL DEFAULT 0, enabled INTEGER NOT NULL DEFAULT 0, last_error TEXT,
            sha256 TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)`
          yield* sql`INSERT INTO plugins (id, path, manifest, config, enabled, sha256, created_at, updated_at)
            VALUES ('kept', '/p/kept.ndp', '{}', '{"k":"v"}', 1, 'abc', 1, 2)`
          yield* migrationsTable("ndp_migrations")
          yield* sql`INSERT INTO ndp_migrations (migration_id, name) VALUES (1, 'users'), (2, 'settings')`
          yield* sql`CREATE TABLE users (user_name TEXT PRIMARY KEY, name TEXT NOT NULL, is_admin INTEGER NOT NULL)`
          yield* sql`INSERT INTO users (user_name, name, is_admin) VALUES ('carol', 'Carol', 0)`
          yield* sql`CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)`
          yield* sql`INSERT INTO settings (key, value) VALUES ('artwork_secret', 'old-secret')`
        })
      )

      const layer = Layer.mergeAll(Registry.layer, EmbeddedDatabase.layer()).pipe(
        Layer.provideMerge(storageLayer(dataFolder))
      )
      const [state, plugin, users, secret] = yield* Effect.gen(function* () {
        const registry = yield* Registry.Registry
        const directory = yield* UserDirectory
        const artwork = yield* ArtworkSettings
        const { sql } = yield* Storage
        const state = yield* sql<{ migration_id: number }>`SELECT migration_id FROM ${sql(
          Migrations.MIGRATIONS_TABLE
        )} ORDER BY migration_id`
        return [
          state.map((row) => row.migration_id),
          yield* registry.get("kept"),
          yield* directory.list,
          artwork.secret
        ] as const
      }).pipe(Effect.provide(layer))
      expect(state).toEqual(everyMigration)
      // The missing column was added, the row kept.
      expect(Option.getOrThrow(plugin)).toMatchObject({
        path: "/p/kept.ndp",
        config: { k: "v" },
        enabled: true,
        allowedNetworks: []
      })
      // The users migration did not run again: no demo users over the old ones.
      expect(users.map((user) => user.userName)).toEqual(["carol"])
      // Artwork links signed before the upgrade stay valid.
      expect(Redacted.value(secret)).toBe("old-secret")
      const { sql } = Context.get(yield* Layer.build(storageLayer(dataFolder)), Storage)
      // The tables of components the old code never opened there were created.
      const libraries = yield* sql<{ id: number }>`SELECT id FROM libraries`
      expect(libraries.map((library) => library.id)).toEqual([1])
      yield* sql`SELECT COUNT(*) FROM scrobble_queue`
    })
  )

  it.scoped("an ndp.db of the release before 0011 records it and keeps its users, secret and history", () =>
    Effect.gen(function* () {
      const dataFolder = yield* tempDataFolder
      // The file as the previous release left it: every migration up to 0010, rows changed since.
      yield* Effect.scoped(
        Effect.gen(function* () {
          const { sql } = Context.get(yield* Layer.build(storageLayer(dataFolder)), Storage)
          yield* sql`DELETE FROM ${sql(Migrations.MIGRATIONS_TABLE)} WHERE migration_id > 10`
          yield* sql`DELETE FROM users WHERE user_name = 'bob'`
          yield* sql`INSERT INTO settings (key, value) VALUES ('artwork_secret', 'old-secret')`
          yield* sql`INSERT INTO scrobble_history (username, media_file_id, submission_time) VALUES ('alice', 'mf', 5)`
        })
      )
      const layer = EmbeddedDatabase.layer().pipe(Layer.provideMerge(storageLayer(dataFolder)))
      const [state, users, secret, history] = yield* Effect.gen(function* () {
        const { sql } = yield* Storage
        return [
          yield* snapshot,
          yield* (yield* UserDirectory).list,
          (yield* ArtworkSettings).secret,
          yield* sql`SELECT username, media_file_id, submission_time FROM scrobble_history`
        ] as const
      }).pipe(Effect.provide(layer))
      // 0011 ran and found every table there: no demo user seeded again, nothing replaced.
      expect(state).toEqual({ ...fresh, users: ["admin", "alice"] })
      expect(users.map((user) => user.userName)).toEqual(["admin", "alice"])
      expect(Redacted.value(secret)).toBe("old-secret")
      expect(history).toEqual([{ username: "alice", media_file_id: "mf", submission_time: 5 }])
    })
  )

  it.scoped("a server's own SqlClient beside Engine.layer is not shadowed by the engine's", () =>
    Effect.gen(function* () {
      const dataFolder = yield* tempDataFolder
      const serverSql = SqliteClient.layer({ filename: join(dataFolder, "server.db") })
      // The engine on top of the server's layers: what it provides would win over the server's.
      const layer = Engine.layer({ dataFolder, runtime: { poolSize: 1 } }).pipe(Layer.provideMerge(serverSql))
      const [server, engine] = yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE server_only (id INTEGER)`
        const storage = yield* Storage
        const tables = (client: SqlClient.SqlClient) =>
          Effect.map(client<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table'`, (rows) =>
            rows.map((row) => row.name)
          )
        return [yield* tables(sql), yield* tables(storage.sql)] as const
      }).pipe(Effect.provide(layer))
      expect(server).toEqual(["server_only"])
      expect(engine).toContain("plugins")
      expect(engine).not.toContain("server_only")
    })
  )
})

/**
 * Every migration of the engine's database, in the order they run. A module that needs tables
 * writes its migrations beside its queries and appends them here with the next number; a number,
 * once released, never changes meaning (databases in the field record it).
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Registry from "../manager/Registry.js"
import * as ScrobbleQueue from "../manager/ScrobbleQueue.js"
import * as CatalogSchema from "../server/embedded/CatalogSchema.js"
import * as EmbeddedDatabase from "../server/embedded/EmbeddedDatabase.js"
import * as EmbeddedScrobbleHistory from "../server/embedded/EmbeddedScrobbleHistory.js"
import type { Dialect } from "./Dialect.js"
import { StorageError } from "./StorageError.js"

/** One migration: statements on the engine's client, portable through `dialect`. */
export type Migration = (sql: SqlClient.SqlClient, dialect: Dialect) => Effect.Effect<void, SqlError>

/**
 * `migrations`, each run only when its table is missing: how a table first made for one node's
 * file reaches the cluster's database, by a new number in `shared`, while a SQLite file that made
 * it under its old number records the new one and changes nothing.
 */
const whereMissing =
  (migrations: ReadonlyArray<readonly [table: string, migration: Migration]>): Migration =>
  (sql, dialect) =>
    Effect.gen(function* () {
      const present = new Set(yield* dialect.tables)
      for (const [table, migration] of migrations) {
        if (!present.has(table)) yield* migration(sql, dialect)
      }
    })

/** `<number>_<name>` → migration, in order. */
export const all: ReadonlyArray<readonly [key: string, migration: Migration]> = [
  ["0001_plugins", Registry.migrations.plugins],
  ["0002_allowed_networks", Registry.migrations.allowedNetworks],
  ["0003_scrobble_queue", ScrobbleQueue.migrations.scrobbleQueue],
  ["0004_users", EmbeddedDatabase.migrations.users],
  ["0005_settings", EmbeddedDatabase.migrations.settings],
  ["0006_catalogue", CatalogSchema.migrations.catalogue],
  ["0007_demo_library", CatalogSchema.migrations.demoLibrary],
  ["0008_allow_write", Registry.migrations.allowWrite],
  ["0009_scrobble_history", EmbeddedScrobbleHistory.migrations.scrobbleHistory],
  ["0010_scrobble_drains", ScrobbleQueue.migrations.drainLeases],
  [
    "0011_shared_embedded_defaults",
    whereMissing([
      ["users", EmbeddedDatabase.migrations.users],
      ["settings", EmbeddedDatabase.migrations.settings],
      ["scrobble_history", EmbeddedScrobbleHistory.migrations.scrobbleHistory]
    ])
  ]
]

/**
 * The migrations of the tables the nodes of a cluster share (plugin registry, scrobble queue, the
 * embedded users, settings and scrobble history), the only ones run on its PostgreSQL database; the
 * catalogue stays in each node's SQLite file. A migration joins this list when it is written, never
 * later: the Migrator runs only numbers above the highest it has recorded. So the embedded tables,
 * first made by 0004, 0005 and 0009 for SQLite alone, reach it through 0011 (decision 0047).
 */
export const shared: ReadonlySet<string> = new Set([
  "0001_plugins",
  "0002_allowed_networks",
  "0003_scrobble_queue",
  "0008_allow_write",
  "0010_scrobble_drains",
  "0011_shared_embedded_defaults"
])

/** The record `Migrator.fromRecord` takes, bound to one client: every migration, or those `only` names. */
export const record = (
  sql: SqlClient.SqlClient,
  dialect: Dialect,
  only?: ReadonlySet<string>
): Record<string, Effect.Effect<void, SqlError>> =>
  Object.fromEntries(
    all
      .filter(([key]) => only === undefined || only.has(key))
      .map(([key, migration]) => [key, migration(sql, dialect)])
  )

/** The number of a migration key (`"0004_users"` → 4). */
export const idOf = (key: string): number => Number(key.slice(0, key.indexOf("_")))

/** The table recording which of `all` have run. */
export const MIGRATIONS_TABLE = "ndp_schema_migrations"

/**
 * Brings the database up to date under the dialect's write lock: connections and processes that
 * open the same database at once take turns, and each finds the work done by the one before.
 * `before` runs first under the same lock (a backend adopting an older layout of its own); `only`
 * limits the run to some migrations (`shared`, on a cluster's database).
 */
export const migrate = Effect.fn("Migrations.migrate")(function* (
  sql: SqlClient.SqlClient,
  dialect: Dialect,
  before: Effect.Effect<void, SqlError | Migrator.MigrationError> = Effect.void,
  only?: ReadonlySet<string>
) {
  const run = Migrator.make({})({
    loader: Migrator.fromRecord(record(sql, dialect, only)),
    table: MIGRATIONS_TABLE
  })
  const failed = (cause: unknown, detail: string) =>
    new StorageError({
      reason: "Migrate",
      message: `cannot bring the engine's database up to date (${detail}); restore it from a backup, or move it aside to start afresh`,
      cause
    })
  return yield* dialect.exclusive(Effect.zipRight(before, run)).pipe(
    // The Migrator finds its client in the context; it stays local to this run.
    Effect.provideService(SqlClient.SqlClient, sql),
    Effect.mapError((cause) => failed(cause, cause.message)),
    // The Migrator reports a failing migration as a defect.
    Effect.catchSomeDefect((defect) =>
      defect instanceof Migrator.MigrationError
        ? Option.some(Effect.fail(failed(defect, defect.message)))
        : Option.none()
    )
  )
})

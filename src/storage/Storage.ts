/**
 * The engine's own database: one client for every engine table (plugin registry, scrobble queue,
 * embedded users, settings and catalogue), migrated once, before anything can use it.
 *
 * The client is offered under this Tag only, never as the generic `SqlClient`, so a server that
 * provides its own `SqlClient` beside the engine keeps it. Modules take `Storage` in their layer
 * and write portable SQL with `sql`, asking `dialect` for the little that differs between backends.
 * A module adds tables by appending a migration to `Migrations.ts`. Backends: `SqliteStorage`.
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type { Dialect } from "./Dialect.js"
import * as Migrations from "./Migrations.js"
import { StorageError } from "./StorageError.js"

/** The engine's database client and the dialect its SQL is written in. */
export class Storage extends Context.Tag("ndp-engine/Storage")<
  Storage,
  {
    /** The engine's own client (not the generic `SqlClient` Tag, which stays the server's). */
    readonly sql: SqlClient.SqlClient
    readonly dialect: Dialect
  }
>() {}

/** The table recording which of `Migrations.all` have run. */
export const MIGRATIONS_TABLE = "ndp_schema_migrations"

/**
 * Brings the database up to date under the dialect's write lock: connections and processes that
 * open the same database at once take turns, and each finds the work done by the one before.
 * `before` runs first under the same lock (a backend adopting an older layout of its own).
 */
export const migrate = Effect.fn("Storage.migrate")(function* (
  sql: SqlClient.SqlClient,
  dialect: Dialect,
  before: Effect.Effect<void, SqlError | Migrator.MigrationError> = Effect.void
) {
  const run = Migrator.make({})({
    loader: Migrator.fromRecord(Migrations.record(sql, dialect)),
    table: MIGRATIONS_TABLE
  })
  return yield* dialect.exclusive(Effect.zipRight(before, run)).pipe(
    // The Migrator finds its client in the context; it stays local to this run.
    Effect.provideService(SqlClient.SqlClient, sql),
    Effect.mapError(
      (cause) =>
        new StorageError({
          reason: "Migrate",
          message: `cannot bring the engine's database up to date (${cause.message}); restore it from a backup or move it aside to start afresh`,
          cause
        })
    )
  )
})

/** A migrated `Storage` over `sql`. */
export const make = (
  sql: SqlClient.SqlClient,
  dialect: Dialect,
  before?: Effect.Effect<void, SqlError | Migrator.MigrationError>
): Effect.Effect<Storage["Type"], StorageError> =>
  Effect.as(migrate(sql, dialect, before), Storage.of({ sql, dialect }))

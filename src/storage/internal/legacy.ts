/**
 * Databases made before the storage service kept one migrations table per component in ndp.db.
 * Their migrations are the first ones of `Migrations.all`, renumbered; this maps what they record
 * onto the one table, so an existing ndp.db moves forward with its data. The old tables stay, read
 * once and never written again.
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import type { Dialect } from "../Dialect.js"
import * as Migrations from "../Migrations.js"

/** Old migrations table → its migration IDs → the same migration's ID now. */
const legacyTables: ReadonlyArray<readonly [table: string, ids: Readonly<Record<number, number>>]> = [
  ["ndp_registry_migrations", { 1: 1, 2: 2 }],
  ["ndp_scrobble_migrations", { 1: 3 }],
  ["ndp_migrations", { 1: 4, 2: 5 }],
  ["ndp_library_migrations", { 1: 6, 2: 7 }]
]

/**
 * Records in `table` the migrations an old database already ran, and runs those below the newest
 * of them that it never had (a component the old code never opened there): each component's
 * migrations touch only its own tables, so running them late is the same as having run them then.
 * Does nothing once `table` has rows, or on a database with no old tables.
 */
export const adopt = (
  sql: SqlClient.SqlClient,
  dialect: Dialect,
  table: string
): Effect.Effect<void, SqlError | Migrator.MigrationError> =>
  Effect.gen(function* () {
    const present = new Set(yield* dialect.tables)
    const old = legacyTables.filter(([name]) => present.has(name))
    if (old.length === 0) return
    if (present.has(table)) {
      const recorded = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM ${sql(table)}`
      if ((recorded[0]?.n ?? 0) > 0) return
    }
    const applied = new Set<number>()
    for (const [name, ids] of old) {
      for (const row of yield* sql<{ migration_id: number }>`SELECT migration_id FROM ${sql(name)}`) {
        const id = ids[row.migration_id]
        if (id !== undefined) applied.add(id)
      }
    }
    if (applied.size === 0) return
    const newest = Math.max(...applied)
    // With nothing to run, the Migrator only creates its table, as it will want it; it then runs
    // everything after `newest`.
    yield* Migrator.make({})({ loader: Effect.succeed([]), table }).pipe(
      Effect.provideService(SqlClient.SqlClient, sql)
    )
    for (const [key, migration] of Migrations.all) {
      const id = Migrations.idOf(key)
      if (id > newest) break
      if (!applied.has(id)) yield* migration(sql, dialect)
      yield* sql`INSERT INTO ${sql(table)} (migration_id, name) VALUES (${id}, ${key.slice(key.indexOf("_") + 1)})`
    }
  })

/**
 * Every migration of the engine's database, in the order they run. A module that needs tables
 * writes its migrations beside its queries and appends them here with the next number; a number,
 * once released, never changes meaning (databases in the field record it).
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Effect from "effect/Effect"
import * as Registry from "../manager/Registry.js"
import * as ScrobbleQueue from "../manager/ScrobbleQueue.js"
import * as CatalogSchema from "../server/embedded/CatalogSchema.js"
import * as EmbeddedDatabase from "../server/embedded/EmbeddedDatabase.js"
import type { Dialect } from "./Dialect.js"

/** One migration: statements on the engine's client, portable through `dialect`. */
export type Migration = (sql: SqlClient.SqlClient, dialect: Dialect) => Effect.Effect<void, SqlError>

/** `<number>_<name>` → migration, in order. */
export const all: ReadonlyArray<readonly [key: string, migration: Migration]> = [
  ["0001_plugins", Registry.migrations.plugins],
  ["0002_allowed_networks", Registry.migrations.allowedNetworks],
  ["0003_scrobble_queue", ScrobbleQueue.migrations.scrobbleQueue],
  ["0004_users", EmbeddedDatabase.migrations.users],
  ["0005_settings", EmbeddedDatabase.migrations.settings],
  ["0006_catalogue", CatalogSchema.migrations.catalogue],
  ["0007_demo_library", CatalogSchema.migrations.demoLibrary]
]

/** The record `Migrator.fromRecord` takes, bound to one client. */
export const record = (
  sql: SqlClient.SqlClient,
  dialect: Dialect
): Record<string, Effect.Effect<void, SqlError>> =>
  Object.fromEntries(all.map(([key, migration]) => [key, migration(sql, dialect)]))

/** The number of a migration key (`"0004_users"` → 4). */
export const idOf = (key: string): number => Number(key.slice(0, key.indexOf("_")))

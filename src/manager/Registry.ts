/**
 * The plugin registry: one row per plugin file in `<dataFolder>/ndp.db` (table `plugins`), holding
 * what the administrator decided (enabled, config, users, libraries) and what the engine saw
 * (path, manifest, SHA-256, last error). Every change is written here before it takes effect.
 *
 * `ndp serve` and `ndp plugins` write the same rows from separate processes, so an update writes
 * only the fields it changes, in one statement: concurrent updates of different fields never undo
 * each other.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { AccessList } from "../host/HostFunctions.js"
import type { Dialect } from "../storage/Dialect.js"
import { Storage } from "../storage/Storage.js"

/** A registry failure (the database could not be read or written). */
export class RegistryError extends Schema.TaggedError<RegistryError>()("RegistryError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/** One registered plugin. */
export interface PluginRecord {
  readonly id: string
  readonly path: string
  /** The manifest as read from the package (raw JSON text; may be unreadable). */
  readonly manifest: string
  readonly config: Readonly<Record<string, unknown>>
  readonly users: AccessList<string>
  readonly libraries: AccessList<number>
  /** The networks the administrator grants the plugin (canonical `NetworkGrant` entries). */
  readonly allowedNetworks: ReadonlyArray<string>
  /** Whether the administrator lets the plugin write to its library folders (default false). */
  readonly allowWrite: boolean
  readonly enabled: boolean
  readonly lastError: string | null
  readonly sha256: string
  readonly createdAt: number
  readonly updatedAt: number
}

interface Row {
  readonly id: string
  readonly path: string
  readonly manifest: string
  readonly config: string
  readonly users: string
  readonly all_users: number
  readonly libraries: string
  readonly all_libraries: number
  readonly allowed_networks: string
  readonly allow_write: number
  readonly enabled: number
  readonly last_error: string | null
  readonly sha256: string
  // Strings from PostgreSQL (BIGINT).
  readonly created_at: number | string
  readonly updated_at: number | string
}

const parseJson = <A>(text: string, fallback: A): A => {
  try {
    return JSON.parse(text) as A
  } catch {
    return fallback
  }
}

const fromRow = (row: Row): PluginRecord => ({
  id: row.id,
  path: row.path,
  manifest: row.manifest,
  config: parseJson<Record<string, unknown>>(row.config, {}),
  users: row.all_users === 1 ? "all" : parseJson<Array<string>>(row.users, []),
  libraries: row.all_libraries === 1 ? "all" : parseJson<Array<number>>(row.libraries, []),
  allowedNetworks: parseJson<Array<string>>(row.allowed_networks, []),
  allowWrite: row.allow_write === 1,
  enabled: row.enabled === 1,
  lastError: row.last_error,
  sha256: row.sha256,
  createdAt: Number(row.created_at),
  updatedAt: Number(row.updated_at)
})

/** The registry's migrations (numbered in `storage/Migrations.ts`). */
export const migrations = {
  plugins: (sql: SqlClient.SqlClient, dialect: Dialect) =>
    sql`CREATE TABLE plugins (
      id TEXT PRIMARY KEY,
      path TEXT NOT NULL,
      manifest TEXT NOT NULL,
      config TEXT NOT NULL DEFAULT '{}',
      users TEXT NOT NULL DEFAULT '[]',
      all_users INTEGER NOT NULL DEFAULT 0,
      libraries TEXT NOT NULL DEFAULT '[]',
      all_libraries INTEGER NOT NULL DEFAULT 0,
      enabled INTEGER NOT NULL DEFAULT 0,
      last_error TEXT,
      sha256 TEXT NOT NULL,
      created_at ${dialect.epochMillis} NOT NULL,
      updated_at ${dialect.epochMillis} NOT NULL
    )`.pipe(Effect.asVoid),
  allowedNetworks: (sql: SqlClient.SqlClient, _dialect: Dialect) =>
    sql`ALTER TABLE plugins ADD COLUMN allowed_networks TEXT NOT NULL DEFAULT '[]'`.pipe(Effect.asVoid),
  allowWrite: (sql: SqlClient.SqlClient, _dialect: Dialect) =>
    sql`ALTER TABLE plugins ADD COLUMN allow_write INTEGER NOT NULL DEFAULT 0`.pipe(Effect.asVoid)
}

/** What may change on a registered plugin. */
export type PluginPatch = Partial<Omit<PluginRecord, "id" | "createdAt" | "updatedAt">>

/** The columns a patch writes (and only those). */
const columnsOf = (patch: PluginPatch): Record<string, string | number | null> => {
  const columns: Record<string, string | number | null> = {}
  if (patch.path !== undefined) columns["path"] = patch.path
  if (patch.manifest !== undefined) columns["manifest"] = patch.manifest
  if (patch.sha256 !== undefined) columns["sha256"] = patch.sha256
  if (patch.config !== undefined) columns["config"] = JSON.stringify(patch.config)
  if (patch.users !== undefined) {
    columns["users"] = JSON.stringify(patch.users === "all" ? [] : patch.users)
    columns["all_users"] = patch.users === "all" ? 1 : 0
  }
  if (patch.libraries !== undefined) {
    columns["libraries"] = JSON.stringify(patch.libraries === "all" ? [] : patch.libraries)
    columns["all_libraries"] = patch.libraries === "all" ? 1 : 0
  }
  if (patch.allowedNetworks !== undefined) columns["allowed_networks"] = JSON.stringify(patch.allowedNetworks)
  if (patch.allowWrite !== undefined) columns["allow_write"] = patch.allowWrite ? 1 : 0
  if (patch.enabled !== undefined) columns["enabled"] = patch.enabled ? 1 : 0
  if (patch.lastError !== undefined) columns["last_error"] = patch.lastError
  return columns
}

export class Registry extends Context.Tag("ndp-engine/Registry")<
  Registry,
  {
    readonly list: Effect.Effect<ReadonlyArray<PluginRecord>, RegistryError>
    readonly get: (id: string) => Effect.Effect<Option.Option<PluginRecord>, RegistryError>
    /** Registers a new plugin (disabled, no config, no users or libraries). */
    readonly insert: (
      record: Pick<PluginRecord, "id" | "path" | "manifest" | "sha256" | "lastError">
    ) => Effect.Effect<PluginRecord, RegistryError>
    /** Writes the patched fields, and only those, in one atomic statement; returns the row after. */
    readonly update: (id: string, patch: PluginPatch) => Effect.Effect<PluginRecord, RegistryError>
    readonly remove: (id: string) => Effect.Effect<void, RegistryError>
    /** The sum of every row's `updatedAt` and the row count: a cheap change detector. */
    readonly version: Effect.Effect<string, RegistryError>
  }
>() {}

const make = Effect.gen(function* () {
  const { dialect, sql } = yield* Storage
  const fail = (what: string) => (cause: unknown) =>
    new RegistryError({ message: `plugin registry: could not ${what}`, cause })

  const get = (id: string) =>
    sql<Row>`SELECT * FROM plugins WHERE id = ${id}`.pipe(
      Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), fromRow)),
      Effect.mapError(fail(`read plugin ${id}`))
    )

  const getOrFail = (id: string) =>
    Effect.flatMap(get(id), (record) =>
      Option.match(record, {
        onNone: () => Effect.fail(new RegistryError({ message: `plugin ${id} is not registered` })),
        onSome: Effect.succeed
      })
    )

  return Registry.of({
    list: sql<Row>`SELECT * FROM plugins ORDER BY id`.pipe(
      Effect.map((rows) => rows.map(fromRow)),
      Effect.mapError(fail("list plugins")),
      Effect.withSpan("Registry.list")
    ),
    get: Effect.fn("Registry.get")(get),
    insert: Effect.fn("Registry.insert")((record) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        yield* sql`INSERT INTO plugins (id, path, manifest, sha256, last_error, created_at, updated_at)
          VALUES (${record.id}, ${record.path}, ${record.manifest}, ${record.sha256}, ${record.lastError}, ${now}, ${now})
          ON CONFLICT (id) DO NOTHING`.pipe(Effect.mapError(fail(`register plugin ${record.id}`)))
        return yield* getOrFail(record.id)
      })
    ),
    // One statement, only the patched columns: atomic against every other writer of ndp.db, so a
    // field another process changed meanwhile is never written back with a stale value.
    update: Effect.fn("Registry.update")((id: string, patch: PluginPatch) =>
      Effect.gen(function* () {
        const columns = columnsOf(patch)
        if (Object.keys(columns).length === 0) return yield* getOrFail(id)
        const now = yield* Clock.currentTimeMillis
        const rows = yield* sql<Row>`UPDATE plugins SET ${sql.update(columns)},
            updated_at = ${dialect.greatest(sql`${now}`, sql`updated_at + 1`)}
          WHERE id = ${id} RETURNING *`.pipe(Effect.mapError(fail(`update plugin ${id}`)))
        const row = rows[0]
        if (row === undefined) return yield* new RegistryError({ message: `plugin ${id} is not registered` })
        return fromRow(row)
      })
    ),
    remove: Effect.fn("Registry.remove")((id: string) =>
      sql`DELETE FROM plugins WHERE id = ${id}`.pipe(Effect.asVoid, Effect.mapError(fail(`remove ${id}`)))
    ),
    // updated_at only grows per row, so the sum changes on every update, the count on insert or delete.
    version: sql<{
      v: string
    }>`SELECT COALESCE(SUM(updated_at), 0) || ':' || COUNT(*) AS v FROM plugins`.pipe(
      Effect.map((rows) => rows[0]?.v ?? "0:0"),
      Effect.mapError(fail("read the registry version")),
      Effect.withSpan("Registry.version")
    )
  })
})

/** The registry in the engine's storage (`Engine.layer` provides it). */
export const layer: Layer.Layer<Registry, never, Storage> = Layer.effect(Registry, make)

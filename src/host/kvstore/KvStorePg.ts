/**
 * The KV stores of every plugin in one PostgreSQL schema, for engines that share a database across
 * nodes: rows keyed by `(plugin, key)`, the same rules, limits and TTL semantics as the SQLite
 * store (`KvStore.ts`), and exact usage across nodes.
 *
 * Keys are stored as their UTF-8 bytes (`bytea`): PostgreSQL text cannot hold NUL, which a key may,
 * and byte order is the order `list` promises. Each write locks the plugin's usage row
 * (`SELECT … FOR UPDATE`), so writers on different nodes take turns per plugin and a quota can never
 * be overshot by two nodes judging the same figure; reads take no lock.
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Fragment } from "@effect/sql/Statement"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { migrate } from "../../internal/migrate.js"
import {
  checkKey,
  checkPrefix,
  defaultMaxKeys,
  expiryOf,
  storageLimitExceeded,
  tooManyKeys,
  defaultSweepInterval,
  type KvStore,
  prefixSuccessor
} from "./KvStore.js"
import { KvStoreError } from "./KvStoreError.js"

/** The PostgreSQL schema of the KV stores, one list of steps like every other store's. */
export const migrations = Migrator.fromRecord({
  "0001_kv": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE ndp_kv (
      plugin TEXT NOT NULL,
      key BYTEA NOT NULL,
      value BYTEA NOT NULL,
      expires_at BIGINT,
      PRIMARY KEY (plugin, key)
    )`
    yield* sql`CREATE INDEX ndp_kv_expires_at ON ndp_kv (expires_at) WHERE expires_at IS NOT NULL`
    // Bytes (keys + values) and entries of each plugin's rows, expired or not, locked by writers.
    yield* sql`CREATE TABLE ndp_kv_usage (
      plugin TEXT PRIMARY KEY,
      bytes BIGINT NOT NULL DEFAULT 0,
      entries BIGINT NOT NULL DEFAULT 0
    )`
  })
})

/** Creates the tables when missing; safe on every node at once (the migrator takes a lock). */
export const migrateSchema: Effect.Effect<void, SqlError | Migrator.MigrationError, SqlClient.SqlClient> =
  migrate("ndp_kv_migrations", migrations).pipe(Effect.asVoid)

/** One plugin's store in the shared database. */
export interface KvStorePgOptions {
  readonly pluginId: string
  readonly maxSizeBytes: number
  readonly maxKeys?: number | undefined
  readonly sweepInterval?: Duration.DurationInput | undefined
}

const storageError = (error: { readonly message: string; readonly cause?: unknown }): KvStoreError => {
  const detail = error.cause instanceof Error ? error.cause.message : error.message
  return new KvStoreError({ reason: "Storage", message: `kvstore storage error: ${detail}`, cause: error })
}

const utf8 = (text: string): Buffer => Buffer.from(text, "utf8")

// pg answers bigint columns as strings and bytea as Buffers.
const toNumber = (value: unknown): number => (value === null || value === undefined ? 0 : Number(value))
const toBytes = (value: Uint8Array): Uint8Array =>
  new Uint8Array(value.buffer, value.byteOffset, value.byteLength)

const inChunk = 500

interface Usage {
  readonly bytes: number
  readonly entries: number
}

/**
 * The store of `options.pluginId` on `sql` (whose schema `migrateSchema` created), in the current
 * scope: the scope runs its sweeper of expired rows.
 */
export const make = (
  sql: SqlClient.SqlClient,
  options: KvStorePgOptions
): Effect.Effect<KvStore, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { maxSizeBytes, pluginId: plugin } = options
    const maxKeys = options.maxKeys ?? defaultMaxKeys
    const live = (now: number) => sql`(expires_at IS NULL OR expires_at > ${now})`
    const rowBytes = sql.literal("(octet_length(key) + octet_length(value))")

    /** Locks the plugin's usage row (creating it) for the rest of the transaction. */
    const lockUsage = Effect.gen(function* () {
      yield* sql`INSERT INTO ndp_kv_usage (plugin) VALUES (${plugin}) ON CONFLICT (plugin) DO NOTHING`
      const rows = yield* sql<{ bytes: unknown; entries: unknown }>`SELECT bytes, entries FROM ndp_kv_usage
        WHERE plugin = ${plugin} FOR UPDATE`
      return { bytes: toNumber(rows[0]?.bytes), entries: toNumber(rows[0]?.entries) } satisfies Usage
    })

    const adjust = (bytes: number, entries: number) =>
      bytes === 0 && entries === 0
        ? Effect.void
        : sql`UPDATE ndp_kv_usage SET bytes = bytes + ${bytes}, entries = entries + ${entries}
            WHERE plugin = ${plugin}`.pipe(Effect.asVoid)

    /** Deletes rows matching `where` under the usage lock; answers the deleted rows' expiry times. */
    const deleteWhere = (where: Fragment) =>
      Effect.gen(function* () {
        const rows = yield* sql<{ size: unknown; expires_at: unknown }>`DELETE FROM ndp_kv
          WHERE plugin = ${plugin} AND ${where} RETURNING ${rowBytes} AS size, expires_at`
        yield* adjust(-rows.reduce((sum, row) => sum + toNumber(row.size), 0), -rows.length)
        return rows.map((row) => (row.expires_at === null ? null : toNumber(row.expires_at)))
      })

    const sweepAt = (now: number) =>
      Effect.gen(function* () {
        yield* lockUsage
        return (yield* deleteWhere(sql`expires_at <= ${now}`)).length
      }).pipe(sql.withTransaction)

    const sweep = Effect.flatMap(Clock.currentTimeMillis, sweepAt).pipe(
      Effect.mapError(storageError),
      Effect.withSpan("KvStorePg.sweep")
    )

    const expiredFigures = (now: number) =>
      Effect.map(
        sql<{ bytes: unknown; entries: unknown }>`SELECT coalesce(sum(${rowBytes}), 0) AS bytes,
          count(*) AS entries FROM ndp_kv WHERE plugin = ${plugin} AND expires_at <= ${now}`,
        (rows) => ({ bytes: toNumber(rows[0]?.bytes), entries: toNumber(rows[0]?.entries) })
      )

    const write = (key: string, keyBytes: number, value: Uint8Array, expiresAt: number | null, now: number) =>
      Effect.gen(function* () {
        let usage = yield* lockUsage
        const keyBuffer = utf8(key)
        const size = keyBytes + value.byteLength
        const rowAt = Effect.map(
          sql<{ size: unknown; live: boolean }>`SELECT ${rowBytes} AS size,
            ${live(now)} AS live FROM ndp_kv WHERE plugin = ${plugin} AND key = ${keyBuffer}`,
          (rows) => rows[0]
        )
        let row = yield* rowAt
        let current = row !== undefined && row.live ? toNumber(row.size) : null
        let expired = yield* expiredFigures(now)
        const fitsCounting =
          usage.bytes - (current ?? 0) + size <= maxSizeBytes && (current !== null || usage.entries < maxKeys)
        if (!fitsCounting && expired.entries > 0) {
          // Expired entries still hold their rows: reclaim them before judging the write, as on SQLite.
          yield* deleteWhere(sql`expires_at <= ${now}`)
          usage = { bytes: usage.bytes - expired.bytes, entries: usage.entries - expired.entries }
          expired = { bytes: 0, entries: 0 }
          row = yield* rowAt
          current = row !== undefined && row.live ? toNumber(row.size) : null
        }
        const liveKeys = usage.entries - expired.entries
        if (current === null && liveKeys >= maxKeys) return Option.some(tooManyKeys(liveKeys, key))
        const used = usage.bytes - expired.bytes
        const old = current ?? 0
        const after = used - old + size
        // An overwrite that does not grow its entry always goes through, even over a lowered limit.
        if (after > maxSizeBytes && size > old)
          return Option.some(
            storageLimitExceeded({ key, keyBytes, valueBytes: value.byteLength, used, after, maxSizeBytes })
          )
        // The row under this key, live or expired, is replaced: its old figures leave the usage.
        const previous = row === undefined ? 0 : toNumber(row.size)
        yield* sql`INSERT INTO ndp_kv (plugin, key, value, expires_at)
          VALUES (${plugin}, ${keyBuffer}, ${Buffer.from(value)}, ${expiresAt})
          ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`
        yield* adjust(size - previous, row === undefined ? 1 : 0)
        return Option.none<KvStoreError>()
      }).pipe(
        sql.withTransaction,
        Effect.mapError(storageError),
        Effect.flatMap(Option.match({ onNone: () => Effect.void, onSome: Effect.fail }))
      )

    const set = Effect.fn("KvStorePg.set")(function* (key: string, value: Uint8Array) {
      const keyBytes = yield* checkKey(key)
      yield* write(key, keyBytes, value, null, yield* Clock.currentTimeMillis)
    })

    const setWithTtl = Effect.fn("KvStorePg.setWithTtl")(function* (
      key: string,
      value: Uint8Array,
      ttlSeconds: number
    ) {
      const keyBytes = yield* checkKey(key)
      const now = yield* Clock.currentTimeMillis
      const expiresAt = yield* expiryOf(ttlSeconds, now)
      yield* write(key, keyBytes, value, expiresAt, now)
    })

    const get = Effect.fnUntraced(function* (key: string) {
      yield* checkKey(key)
      const now = yield* Clock.currentTimeMillis
      const rows = yield* sql<{ readonly value: Uint8Array }>`SELECT value FROM ndp_kv
        WHERE plugin = ${plugin} AND key = ${utf8(key)} AND ${live(now)}`.pipe(Effect.mapError(storageError))
      return Option.map(Option.fromNullable(rows[0]), (row) => toBytes(row.value))
    })

    const has = Effect.fnUntraced(function* (key: string) {
      yield* checkKey(key)
      const now = yield* Clock.currentTimeMillis
      const rows = yield* sql`SELECT 1 AS one FROM ndp_kv
        WHERE plugin = ${plugin} AND key = ${utf8(key)} AND ${live(now)}`.pipe(Effect.mapError(storageError))
      return rows.length > 0
    })

    const remove = Effect.fn("KvStorePg.delete")(function* (key: string) {
      yield* checkKey(key)
      yield* Effect.gen(function* () {
        yield* lockUsage
        yield* deleteWhere(sql`key = ${utf8(key)}`)
      }).pipe(sql.withTransaction, Effect.mapError(storageError))
    })

    const inRange = (prefix: string) => {
      const upper = prefixSuccessor(prefix)
      return upper === undefined
        ? sql`key >= ${utf8(prefix)}`
        : sql`key >= ${utf8(prefix)} AND key < ${utf8(upper)}`
    }

    const list = Effect.fn("KvStorePg.list")(function* (prefix: string) {
      yield* checkPrefix(prefix)
      const now = yield* Clock.currentTimeMillis
      const rows = yield* sql<{ readonly key: Uint8Array }>`SELECT key FROM ndp_kv
        WHERE plugin = ${plugin} AND ${inRange(prefix)} AND ${live(now)} ORDER BY key`.pipe(
        Effect.mapError(storageError)
      )
      return rows.map((row) => Buffer.from(row.key).toString("utf8"))
    })

    const getMany = Effect.fn("KvStorePg.getMany")(function* (keys: ReadonlyArray<string>) {
      for (const key of keys) yield* checkKey(key)
      const now = yield* Clock.currentTimeMillis
      const unique = Array.from(new Set(keys))
      const found = new Map<string, Uint8Array>()
      yield* Effect.gen(function* () {
        for (let i = 0; i < unique.length; i += inChunk) {
          const rows = yield* sql<{ readonly key: Uint8Array; readonly value: Uint8Array }>`SELECT key, value
            FROM ndp_kv WHERE plugin = ${plugin}
            AND key IN ${sql.in(unique.slice(i, i + inChunk).map(utf8))} AND ${live(now)}`
          for (const row of rows) found.set(Buffer.from(row.key).toString("utf8"), toBytes(row.value))
        }
      }).pipe(sql.withTransaction, Effect.mapError(storageError))
      return found as ReadonlyMap<string, Uint8Array>
    })

    const deleteByPrefix = Effect.fn("KvStorePg.deleteByPrefix")(function* (prefix: string) {
      if (prefix.length === 0) {
        return yield* new KvStoreError({
          reason: "InvalidArgument",
          message: "prefix must not be empty (deleting every key at once is not allowed)"
        })
      }
      yield* checkPrefix(prefix)
      const now = yield* Clock.currentTimeMillis
      const expiries = yield* Effect.gen(function* () {
        yield* lockUsage
        return yield* deleteWhere(inRange(prefix))
      }).pipe(sql.withTransaction, Effect.mapError(storageError))
      return expiries.filter((expiresAt) => expiresAt === null || expiresAt > now).length
    })

    const storageUsed = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const rows = yield* sql<{ readonly used: unknown }>`SELECT
        coalesce((SELECT bytes FROM ndp_kv_usage WHERE plugin = ${plugin}), 0)
          - (SELECT coalesce(sum(${rowBytes}), 0) FROM ndp_kv WHERE plugin = ${plugin} AND expires_at <= ${now})
          AS used`.pipe(Effect.mapError(storageError))
      return toNumber(rows[0]?.used)
    }).pipe(Effect.withSpan("KvStorePg.storageUsed"))

    yield* sweep.pipe(
      Effect.tap((count) =>
        count > 0 ? Effect.logDebug(`kvstore: swept ${count} expired keys`) : Effect.void
      ),
      Effect.catchAll((error) => Effect.logWarning("kvstore: sweeping expired keys failed", error)),
      Effect.delay(options.sweepInterval ?? defaultSweepInterval),
      Effect.forever,
      Effect.forkScoped
    )

    return {
      set,
      setWithTtl,
      get,
      has,
      delete: remove,
      list,
      getMany,
      deleteByPrefix,
      storageUsed,
      sweep
    } satisfies KvStore
  })

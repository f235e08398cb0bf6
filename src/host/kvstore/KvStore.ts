/**
 * One plugin's persistent key/value store: a SQLite file in WAL mode with `synchronous = FULL`, so
 * an acknowledged write survives a crash. Values are bytes, keys are UTF-8 text (1–256 bytes),
 * entries may expire. Key bytes and value bytes both count toward the store's size limit (an empty
 * value under a long key is not free), and the number of keys has a limit of its own.
 *
 * The bytes and entries in use are kept in a one-row table maintained by triggers, so the figures
 * commit and roll back with the data they describe; they are recomputed from the rows at every open
 * all the same.
 * Expired entries are invisible to every read and figure, and are deleted at open, periodically,
 * and when a write would otherwise not fit.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import { migrate } from "../../internal/migrate.js"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { isWellFormed, keyProblem } from "./KvKey.js"
import { KvStoreError } from "./KvStoreError.js"

export { maxKeyBytes } from "./KvKey.js"

/** The most keys a store holds unless told otherwise. */
export const defaultMaxKeys = 100_000

/** How often expired entries are deleted while the store is open. */
export const defaultSweepInterval: Duration.Duration = Duration.seconds(60)

/** Where and how big one store is. */
export interface KvStoreOptions {
  /** The SQLite file; its folder is created when missing. */
  readonly filename: string
  /** The most bytes the store may hold, counting each entry's key (UTF-8) and value. */
  readonly maxSizeBytes: number
  /** The most keys the store may hold (default `defaultMaxKeys`). */
  readonly maxKeys?: number | undefined
  readonly sweepInterval?: Duration.DurationInput | undefined
}

/**
 * A plugin's store; no operation has requirements. Every write is one explicit transaction, which
 * also holds the client's only connection, so concurrent calls (several instances of one plugin)
 * never interleave inside it.
 */
export interface KvStore {
  readonly set: (key: string, value: Uint8Array) => Effect.Effect<void, KvStoreError>
  /** Sets a value that disappears `ttlSeconds` (an integer > 0) from now. */
  readonly setWithTtl: (
    key: string,
    value: Uint8Array,
    ttlSeconds: number
  ) => Effect.Effect<void, KvStoreError>
  readonly get: (key: string) => Effect.Effect<Option.Option<Uint8Array>, KvStoreError>
  readonly has: (key: string) => Effect.Effect<boolean, KvStoreError>
  readonly delete: (key: string) => Effect.Effect<void, KvStoreError>
  /** The live keys starting with `prefix` (all when empty), in byte order of their UTF-8. */
  readonly list: (prefix: string) => Effect.Effect<ReadonlyArray<string>, KvStoreError>
  /** The live entries among `keys`; absent and expired keys are left out. */
  readonly getMany: (
    keys: ReadonlyArray<string>
  ) => Effect.Effect<ReadonlyMap<string, Uint8Array>, KvStoreError>
  /** Deletes every key starting with `prefix` (which must not be empty); returns how many were live. */
  readonly deleteByPrefix: (prefix: string) => Effect.Effect<number, KvStoreError>
  /** The key and value bytes of the live entries. */
  readonly storageUsed: Effect.Effect<number, KvStoreError>
  /** Deletes the expired entries now; returns how many. */
  readonly sweep: Effect.Effect<number, KvStoreError>
}

/** Sets the usage figures from the rows themselves: every row's key (UTF-8) and value bytes, and the count. */
const recount = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql`UPDATE kv_usage SET
    bytes = (SELECT coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0) FROM kv),
    entries = (SELECT count(*) FROM kv) WHERE id = 1`
)

const migrations = Migrator.fromRecord({
  "0001_kv": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE kv (
      key TEXT PRIMARY KEY NOT NULL,
      value BLOB NOT NULL CHECK (typeof(value) = 'blob'),
      expires_at INTEGER
    )`
    yield* sql`CREATE INDEX kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL`
    yield* sql`CREATE TABLE kv_usage (id INTEGER PRIMARY KEY CHECK (id = 1), bytes INTEGER NOT NULL)`
    yield* sql`INSERT INTO kv_usage (id, bytes) VALUES (1, 0)`
    // An upsert's DO UPDATE fires the update trigger; REPLACE is never used (it would bypass them).
    yield* sql`CREATE TRIGGER kv_usage_insert AFTER INSERT ON kv BEGIN
      UPDATE kv_usage SET bytes = bytes + length(NEW.value) WHERE id = 1;
    END`
    yield* sql`CREATE TRIGGER kv_usage_update AFTER UPDATE OF value ON kv BEGIN
      UPDATE kv_usage SET bytes = bytes - length(OLD.value) + length(NEW.value) WHERE id = 1;
    END`
    yield* sql`CREATE TRIGGER kv_usage_delete AFTER DELETE ON kv BEGIN
      UPDATE kv_usage SET bytes = bytes - length(OLD.value) WHERE id = 1;
    END`
  }),
  // Keys count too, and entries are counted: without it, long keys with empty values cost nothing.
  "0002_kv_usage_keys": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`ALTER TABLE kv_usage ADD COLUMN entries INTEGER NOT NULL DEFAULT 0`
    yield* sql`DROP TRIGGER kv_usage_insert`
    yield* sql`DROP TRIGGER kv_usage_update`
    yield* sql`DROP TRIGGER kv_usage_delete`
    // length(CAST(key AS BLOB)) is the key's UTF-8 byte count; length(key) would count characters.
    yield* sql`CREATE TRIGGER kv_usage_insert AFTER INSERT ON kv BEGIN
      UPDATE kv_usage SET bytes = bytes + length(CAST(NEW.key AS BLOB)) + length(NEW.value),
        entries = entries + 1 WHERE id = 1;
    END`
    yield* sql`CREATE TRIGGER kv_usage_update AFTER UPDATE ON kv BEGIN
      UPDATE kv_usage SET bytes = bytes - length(CAST(OLD.key AS BLOB)) - length(OLD.value)
        + length(CAST(NEW.key AS BLOB)) + length(NEW.value) WHERE id = 1;
    END`
    yield* sql`CREATE TRIGGER kv_usage_delete AFTER DELETE ON kv BEGIN
      UPDATE kv_usage SET bytes = bytes - length(CAST(OLD.key AS BLOB)) - length(OLD.value),
        entries = entries - 1 WHERE id = 1;
    END`
    yield* recount
  })
})

/** The key rules of the contract, as a typed error; the key's length in bytes of UTF-8 when it passes. */
export const checkKey = (key: string): Effect.Effect<number, KvStoreError> => {
  const checked = keyProblem(key)
  return "bytes" in checked
    ? Effect.succeed(checked.bytes)
    : Effect.fail(new KvStoreError({ reason: "InvalidKey", message: checked.problem }))
}

export const checkPrefix = (prefix: string): Effect.Effect<string, KvStoreError> =>
  isWellFormed(prefix)
    ? Effect.succeed(prefix)
    : Effect.fail(
        new KvStoreError({
          reason: "InvalidArgument",
          message: "prefix is not valid UTF-8 (it holds a lone surrogate)"
        })
      )

/** When an entry written now with `ttlSeconds` expires (ms); a TTL that is not a whole positive number, or too large, is refused. */
export const expiryOf = (ttlSeconds: number, now: number): Effect.Effect<number, KvStoreError> => {
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) {
    return Effect.fail(
      new KvStoreError({
        reason: "InvalidArgument",
        message: `ttlSeconds must be a whole number greater than 0, not ${ttlSeconds}`
      })
    )
  }
  const expiresAt = now + ttlSeconds * 1000
  return Number.isSafeInteger(expiresAt)
    ? Effect.succeed(expiresAt)
    : Effect.fail(
        new KvStoreError({ reason: "InvalidArgument", message: `ttlSeconds ${ttlSeconds} is too large` })
      )
}

/** The refusal of a new key when the store already holds `live` keys, the most allowed. */
export const tooManyKeys = (live: number, key: string): KvStoreError =>
  new KvStoreError({
    reason: "TooManyKeys",
    message:
      `key limit reached: the store holds ${live} keys, the most allowed, so key ` +
      `"${key}" cannot be added: delete keys you no longer need or reuse existing ones`
  })

/** The refusal of a write that would take the store's usage from `used` to `after` bytes. */
export const storageLimitExceeded = (write: {
  readonly key: string
  readonly keyBytes: number
  readonly valueBytes: number
  readonly used: number
  readonly after: number
  readonly maxSizeBytes: number
}): KvStoreError =>
  new KvStoreError({
    reason: "StorageLimitExceeded",
    message:
      `storage limit exceeded: ${write.used} of ${write.maxSizeBytes} bytes are used (keys and ` +
      `values both count), and writing ${write.keyBytes + write.valueBytes} bytes (key ${write.keyBytes} + value ` +
      `${write.valueBytes}) to key "${write.key}" would make it ${write.after}: delete entries ` +
      `you no longer need, or ask for a larger kvstore maxSize in the manifest`
  })

/**
 * The least string greater than every string starting with `prefix`, or undefined when there is
 * none. Keys are compared as UTF-8 bytes, which orders code points, so `[prefix, successor)` is
 * exactly the keys with that prefix, as an index range (no LIKE, so `%` and `_` need no escaping).
 */
export const prefixSuccessor = (prefix: string): string | undefined => {
  const points = Array.from(prefix)
  for (let i = points.length - 1; i >= 0; i--) {
    const code = points[i]!.codePointAt(0)!
    if (code < 0x10ffff) {
      // Surrogate code points never appear in well-formed text; step over them.
      const next = code === 0xd7ff ? 0xe000 : code + 1
      return points.slice(0, i).join("") + String.fromCodePoint(next)
    }
  }
  return undefined
}

const storageError = (error: { readonly message: string; readonly cause?: unknown }): KvStoreError => {
  const detail = error.cause instanceof Error ? error.cause.message : error.message
  return new KvStoreError({ reason: "Storage", message: `kvstore storage error: ${detail}`, cause: error })
}

/** The most keys in one `IN (…)`, well under SQLite's bound-parameter limit. */
const inChunk = 500

/** The figures a write is judged by; `expired*` are rows past their TTL but not yet deleted. */
interface QuotaRow {
  readonly stored: number
  readonly entries: number
  readonly expired: number
  readonly expiredEntries: number
  /** The key and value bytes of the live row under this key, if any. */
  readonly current: number | null
}

type Refusal =
  | { readonly _tag: "Bytes"; readonly used: number; readonly after: number; readonly size: number }
  | { readonly _tag: "Keys"; readonly live: number }

const open = (options: KvStoreOptions): Effect.Effect<KvStore, KvStoreError, Scope.Scope> =>
  Effect.gen(function* () {
    const { filename, maxSizeBytes } = options
    const maxKeys = options.maxKeys ?? defaultMaxKeys
    yield* Effect.try({
      try: () => mkdirSync(dirname(filename), { recursive: true }),
      catch: (cause) =>
        new KvStoreError({
          reason: "Storage",
          message: `kvstore storage error: cannot create ${dirname(filename)}: ${String(cause)}`,
          cause
        })
    })
    const sql = yield* SqliteClient.make({ filename }).pipe(Effect.provide(Reactivity.layer))
    // WAL alone syncs only at checkpoints; FULL syncs the log at every commit.
    yield* sql`PRAGMA synchronous = FULL`.pipe(Effect.mapError(storageError))
    yield* migrate("kvstore_migrations", migrations).pipe(
      Effect.provideService(SqlClient.SqlClient, sql),
      Effect.mapError(storageError)
    )

    const live = (now: number) => sql`(expires_at IS NULL OR expires_at > ${now})`

    const sweepAt = (now: number) =>
      Effect.map(sql`DELETE FROM kv WHERE expires_at <= ${now} RETURNING 1 AS one`, (rows) => rows.length)

    const sweep = Effect.flatMap(Clock.currentTimeMillis, sweepAt).pipe(
      sql.withTransaction,
      Effect.mapError(storageError),
      Effect.withSpan("KvStore.sweep")
    )

    const quotaAt = (key: string, now: number) =>
      Effect.map(
        sql<QuotaRow>`SELECT
          (SELECT bytes FROM kv_usage WHERE id = 1) AS stored,
          (SELECT entries FROM kv_usage WHERE id = 1) AS entries,
          (SELECT total(length(CAST(key AS BLOB)) + length(value)) FROM kv WHERE expires_at <= ${now})
            AS expired,
          (SELECT count(*) FROM kv WHERE expires_at <= ${now}) AS expiredEntries,
          (SELECT length(CAST(key AS BLOB)) + length(value) FROM kv WHERE key = ${key} AND ${live(now)})
            AS current`,
        (rows) => rows[0] ?? { stored: 0, entries: 0, expired: 0, expiredEntries: 0, current: null }
      )

    const write = (key: string, keyBytes: number, value: Uint8Array, expiresAt: number | null, now: number) =>
      Effect.gen(function* () {
        let quota = yield* quotaAt(key, now)
        const size = keyBytes + value.byteLength
        const isNew = (q: QuotaRow) => q.current === null
        const fitsCounting = (q: QuotaRow) =>
          q.stored - (q.current ?? 0) + size <= maxSizeBytes && (!isNew(q) || q.entries < maxKeys)
        if (!fitsCounting(quota) && (quota.expired > 0 || quota.expiredEntries > 0)) {
          // Expired entries still hold their rows: reclaim them before judging the write.
          yield* sweepAt(now)
          quota = yield* quotaAt(key, now)
        }
        const liveKeys = quota.entries - quota.expiredEntries
        if (isNew(quota) && liveKeys >= maxKeys) return Option.some<Refusal>({ _tag: "Keys", live: liveKeys })
        const used = quota.stored - quota.expired
        const old = quota.current ?? 0
        const after = used - old + size
        // An overwrite that does not grow its entry always goes through, even over a lowered limit.
        if (after > maxSizeBytes && size > old)
          return Option.some<Refusal>({ _tag: "Bytes", used, after, size })
        yield* sql`INSERT INTO kv (key, value, expires_at) VALUES (${key}, ${value}, ${expiresAt})
          ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`
        return Option.none<Refusal>()
      }).pipe(
        // The refusal is a result, not a failure, so a sweep done for it still commits.
        sql.withTransaction,
        Effect.mapError(storageError),
        Effect.flatMap(
          Option.match({
            onNone: () => Effect.void,
            onSome: (refusal) =>
              Effect.fail(
                refusal._tag === "Keys"
                  ? tooManyKeys(refusal.live, key)
                  : storageLimitExceeded({
                      key,
                      keyBytes,
                      valueBytes: value.byteLength,
                      used: refusal.used,
                      after: refusal.after,
                      maxSizeBytes
                    })
              )
          })
        )
      )

    const set = Effect.fn("KvStore.set")(function* (key: string, value: Uint8Array) {
      const keyBytes = yield* checkKey(key)
      yield* write(key, keyBytes, value, null, yield* Clock.currentTimeMillis)
    })

    const setWithTtl = Effect.fn("KvStore.setWithTtl")(function* (
      key: string,
      value: Uint8Array,
      ttlSeconds: number
    ) {
      const keyBytes = yield* checkKey(key)
      const now = yield* Clock.currentTimeMillis
      const expiresAt = yield* expiryOf(ttlSeconds, now)
      yield* write(key, keyBytes, value, expiresAt, now)
    })

    // Reads are the plugins' hot path, and a span of our own adds a third to one; the query keeps its span.
    const get = Effect.fnUntraced(function* (key: string) {
      yield* checkKey(key)
      const now = yield* Clock.currentTimeMillis
      const rows = yield* sql<{ readonly value: Uint8Array }>`SELECT value FROM kv
        WHERE key = ${key} AND ${live(now)}`.pipe(Effect.mapError(storageError))
      return Option.map(Option.fromNullable(rows[0]), (row) => row.value)
    })

    const has = Effect.fnUntraced(function* (key: string) {
      yield* checkKey(key)
      const now = yield* Clock.currentTimeMillis
      const rows = yield* sql`SELECT 1 AS one FROM kv WHERE key = ${key} AND ${live(now)}`.pipe(
        Effect.mapError(storageError)
      )
      return rows.length > 0
    })

    const remove = Effect.fn("KvStore.delete")(function* (key: string) {
      yield* checkKey(key)
      yield* sql`DELETE FROM kv WHERE key = ${key}`.pipe(sql.withTransaction, Effect.mapError(storageError))
    })

    const inRange = (prefix: string) => {
      const upper = prefixSuccessor(prefix)
      return upper === undefined ? sql`key >= ${prefix}` : sql`key >= ${prefix} AND key < ${upper}`
    }

    const list = Effect.fn("KvStore.list")(function* (prefix: string) {
      yield* checkPrefix(prefix)
      const now = yield* Clock.currentTimeMillis
      const rows = yield* sql<{ readonly key: string }>`SELECT key FROM kv
        WHERE ${inRange(prefix)} AND ${live(now)} ORDER BY key`.pipe(Effect.mapError(storageError))
      return rows.map((row) => row.key)
    })

    const getMany = Effect.fn("KvStore.getMany")(function* (keys: ReadonlyArray<string>) {
      for (const key of keys) yield* checkKey(key)
      const now = yield* Clock.currentTimeMillis
      const unique = Array.from(new Set(keys))
      const found = new Map<string, Uint8Array>()
      // One snapshot for every chunk.
      yield* Effect.gen(function* () {
        for (let i = 0; i < unique.length; i += inChunk) {
          const rows = yield* sql<{ readonly key: string; readonly value: Uint8Array }>`SELECT key, value
            FROM kv WHERE key IN ${sql.in(unique.slice(i, i + inChunk))} AND ${live(now)}`
          for (const row of rows) found.set(row.key, row.value)
        }
      }).pipe(sql.withTransaction, Effect.mapError(storageError))
      return found as ReadonlyMap<string, Uint8Array>
    })

    const deleteByPrefix = Effect.fn("KvStore.deleteByPrefix")(function* (prefix: string) {
      if (prefix.length === 0) {
        return yield* new KvStoreError({
          reason: "InvalidArgument",
          message: "prefix must not be empty (deleting every key at once is not allowed)"
        })
      }
      yield* checkPrefix(prefix)
      const now = yield* Clock.currentTimeMillis
      const rows = yield* sql<{ readonly expires_at: number | null }>`DELETE FROM kv
        WHERE ${inRange(prefix)} RETURNING expires_at`.pipe(
        sql.withTransaction,
        Effect.mapError(storageError)
      )
      return rows.filter((row) => row.expires_at === null || row.expires_at > now).length
    })

    const storageUsed = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const rows = yield* sql<{ readonly used: number }>`SELECT
        (SELECT bytes FROM kv_usage WHERE id = 1)
          - (SELECT total(length(CAST(key AS BLOB)) + length(value)) FROM kv WHERE expires_at <= ${now})
          AS used`.pipe(Effect.mapError(storageError))
      return rows[0]?.used ?? 0
    }).pipe(Effect.withSpan("KvStore.storageUsed"))

    // At open: drop what expired while closed, and take the figure from the rows themselves.
    yield* Effect.gen(function* () {
      yield* sweepAt(yield* Clock.currentTimeMillis)
      yield* recount
    }).pipe(
      sql.withTransaction,
      Effect.provideService(SqlClient.SqlClient, sql),
      Effect.mapError(storageError)
    )

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
  }).pipe(
    // better-sqlite3 throws from its constructor (unopenable file), which the client does not type.
    Effect.catchAllDefect((defect) =>
      Effect.fail(
        new KvStoreError({
          reason: "Storage",
          message: `kvstore storage error: ${defect instanceof Error ? defect.message : String(defect)}`,
          cause: defect
        })
      )
    )
  )

/**
 * Opens (creating when needed) the store at `options.filename`, in the current scope: closing the
 * scope stops the sweeper and closes the connection. A store that fails to open closes at once.
 */
export const make = Effect.fn("KvStore.make")(function* (
  options: KvStoreOptions
): Effect.fn.Return<KvStore, KvStoreError, Scope.Scope> {
  const own = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
  return yield* open(options).pipe(
    Scope.extend(own),
    Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(own, exit) : Effect.void))
  )
})

/**
 * What differs between the databases the engine's storage can run on. Every statement outside this
 * module is SQL both SQLite and PostgreSQL accept (`ON CONFLICT … DO NOTHING/UPDATE`, `RETURNING`,
 * `COALESCE`, `||`); the rest is asked of the dialect, so a new backend is a new `Dialect` and a
 * new layer, not a rewrite of the queries.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Fragment } from "@effect/sql/Statement"
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"

/** The SQL that differs between backends, bound to one client. */
export interface Dialect {
  readonly name: "sqlite" | "postgres"
  /** Column type: epoch milliseconds (64-bit on PostgreSQL, whose INTEGER is 32-bit). */
  readonly epochMillis: Fragment
  /** Column definition: an integer key the database assigns (and may reuse once freed). */
  readonly integerKey: Fragment
  /** Column definition: an integer key the database assigns and never reuses. */
  readonly serialKey: Fragment
  /** `expr` for ordering without regard to (ASCII) case. */
  readonly caseless: (expr: string) => string
  /** `column` contains `text` (ASCII case-insensitive; `%`, `_` and `\` in `text` match themselves). */
  readonly contains: (column: string, text: string) => Fragment
  /** The larger of two values (SQL's two-argument max). */
  readonly greatest: (a: Fragment, b: Fragment) => Fragment
  /** `LIMIT … OFFSET …`; no `limit` = every row. */
  readonly page: (limit: number | undefined, offset: number | undefined) => Fragment
  /** The names of the tables in the database. */
  readonly tables: Effect.Effect<ReadonlyArray<string>, SqlError>
  /**
   * Runs `effect` in a transaction that holds the database's write lock from its first statement,
   * so migrators on other connections or in other processes wait for it instead of interleaving.
   */
  readonly exclusive: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>
}

const escapeLike = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/** SQLite (3.35 or later: `RETURNING`). */
export const sqlite = (sql: SqlClient.SqlClient): Dialect => {
  // `BEGIN IMMEDIATE` takes the write lock at once, waiting up to the busy timeout; a plain `BEGIN`
  // would read first and could be refused the upgrade by a migrator that began meanwhile.
  const exclusive = SqlClient.makeWithTransaction({
    transactionTag: SqlClient.TransactionConnection,
    spanAttributes: [["db.system.name", "sqlite"]],
    acquireConnection: Effect.flatMap(Scope.make(), (scope) =>
      Effect.map(Scope.extend(sql.reserve, scope), (conn) => [scope, conn] as const)
    ),
    begin: (conn) => conn.executeUnprepared("BEGIN IMMEDIATE", [], undefined),
    savepoint: (conn, id) => conn.executeUnprepared(`SAVEPOINT ndp_${id}`, [], undefined),
    commit: (conn) => conn.executeUnprepared("COMMIT", [], undefined),
    rollback: (conn) => conn.executeUnprepared("ROLLBACK", [], undefined),
    rollbackSavepoint: (conn, id) => conn.executeUnprepared(`ROLLBACK TO SAVEPOINT ndp_${id}`, [], undefined)
  })
  return {
    name: "sqlite",
    epochMillis: sql`INTEGER`,
    integerKey: sql`INTEGER PRIMARY KEY`,
    serialKey: sql`INTEGER PRIMARY KEY AUTOINCREMENT`,
    caseless: (expr) => `${expr} COLLATE NOCASE`,
    contains: (column, text) => sql`${sql(column)} LIKE ${escapeLike(text)} ESCAPE '\\'`,
    greatest: (a, b) => sql`MAX(${a}, ${b})`,
    // SQLite has no `LIMIT ALL`; a negative limit means none.
    page: (limit, offset) => sql`LIMIT ${limit ?? -1} OFFSET ${offset ?? 0}`,
    tables: Effect.map(sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table'`, (rows) =>
      rows.map((row) => row.name)
    ),
    exclusive
  }
}

/**
 * Holds a PostgreSQL advisory lock (two keys) for the current scope, on a connection of its own: a
 * session lock, not a transaction, so the statements run meanwhile may fail and be retried (as
 * @effect/sql's Migrator does when it probes its table). The lock goes with the connection should
 * this process die.
 */
export const advisoryLock = (
  sql: SqlClient.SqlClient,
  [high, low]: readonly [number, number]
): Effect.Effect<void, SqlError, Scope.Scope> =>
  Effect.flatMap(sql.reserve, (connection) =>
    Effect.acquireRelease(connection.executeRaw(`SELECT pg_advisory_lock(${high}, ${low})`, []), () =>
      connection.executeRaw(`SELECT pg_advisory_unlock(${high}, ${low})`, []).pipe(Effect.ignore)
    )
  ).pipe(Effect.asVoid)

/** The advisory lock migrators of the engine's tables take on PostgreSQL (two keys: see Cluster.ts). */
const migrationLock: readonly [number, number] = [0x6e6470, 2]

/**
 * PostgreSQL (the database shared by the nodes of a cluster). Integer keys are `BIGSERIAL` (never
 * reused), numbers of milliseconds `BIGINT` (which `pg` answers as strings: readers convert).
 */
export const postgres = (sql: SqlClient.SqlClient): Dialect => ({
  name: "postgres",
  epochMillis: sql`BIGINT`,
  integerKey: sql`BIGSERIAL PRIMARY KEY`,
  serialKey: sql`BIGSERIAL PRIMARY KEY`,
  caseless: (expr) => `LOWER(${expr})`,
  contains: (column, text) => sql`${sql(column)} ILIKE ${escapeLike(text)} ESCAPE '\\'`,
  greatest: (a, b) => sql`GREATEST(${a}, ${b})`,
  // A NULL limit is no limit.
  page: (limit, offset) => sql`LIMIT ${limit ?? null} OFFSET ${offset ?? 0}`,
  tables: Effect.map(
    sql<{ name: string }>`SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()`,
    (rows) => rows.map((row) => row.name)
  ),
  exclusive: (effect) => Effect.scoped(Effect.zipRight(advisoryLock(sql, migrationLock), effect))
})

/** Connection settings for a SQLite file shared by several connections and processes. */
export const sqlitePragmas = (
  sql: SqlClient.SqlClient,
  busyTimeoutMs: number
): Effect.Effect<void, SqlError> =>
  // WAL (set by the client) lets readers run beside the one writer; the busy timeout makes a writer
  // wait for another's lock instead of failing at once.
  Effect.asVoid(sql.unsafe(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`))

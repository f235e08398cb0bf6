/**
 * The worker's own read-only connection to one plugin's KV store file, for the reads the worker
 * answers itself (docs/decisions/0035-host-calls-in-the-worker.md). The main thread stays the
 * store's only writer: it runs the migrations, the quota checks, the sweeper and every write, so
 * quotas and usage stay exact however many workers read. WAL lets this connection read the last
 * committed state while the main thread writes.
 *
 * Any trouble (the driver cannot load, the file cannot open, a query fails) answers `undefined`,
 * and the call crosses to the main thread, whose store then words the answer or the error.
 */
import { createRequire } from "node:module"

/** What this module uses of better-sqlite3 (loaded by path: the worker is an eval'd script). */
interface Statement {
  get(...params: ReadonlyArray<unknown>): unknown
}
interface Database {
  prepare(source: string): Statement
  pragma(source: string): unknown
  close(): void
}
type DatabaseConstructor = new (
  filename: string,
  options: { readonly readonly: boolean; readonly fileMustExist: boolean }
) => Database

/** A live row's value; `expiresAt` is null for entries without a TTL. */
export interface KvRow {
  readonly value: Uint8Array
  readonly expiresAt: number | null
}

export class KvReader {
  private db: Database | undefined
  private lookup: Statement | undefined
  private failed = false

  constructor(
    private readonly filename: string,
    /** Absolute path of the better-sqlite3 module the main thread uses. */
    private readonly driver: string
  ) {}

  /** The row under `key` (expired or not: the caller judges expiry), null when there is none, undefined on trouble. */
  row(key: string): KvRow | null | undefined {
    const lookup = this.statement()
    if (lookup === undefined) return undefined
    try {
      const row = lookup.get(key) as { value: Uint8Array; expires_at: number | null } | undefined
      return row === undefined ? null : { value: row.value, expiresAt: row.expires_at }
    } catch {
      return undefined
    }
  }

  /** Whether a connection is open (for tests and the idle release). */
  get isOpen(): boolean {
    return this.db !== undefined
  }

  close(): void {
    const db = this.db
    this.db = undefined
    this.lookup = undefined
    try {
      db?.close()
    } catch {
      // Closing a connection that failed half-way: nothing left to release.
    }
  }

  private statement(): Statement | undefined {
    if (this.lookup !== undefined) return this.lookup
    // One failed open is enough: retrying on every call would make each one slower than crossing.
    if (this.failed) return undefined
    try {
      const Driver = createRequire(this.driver)(this.driver) as DatabaseConstructor
      // The main thread created and migrated the file before the plugin's first call.
      this.db = new Driver(this.filename, { readonly: true, fileMustExist: true })
      this.db.pragma("busy_timeout = 5000")
      // One connection per worker per plugin: keep each one's page cache small (1 MiB, not 2).
      this.db.pragma("cache_size = -1024")
      this.lookup = this.db.prepare("SELECT value, expires_at FROM kv WHERE key = ?")
      return this.lookup
    } catch {
      this.failed = true
      this.close()
      return undefined
    }
  }
}

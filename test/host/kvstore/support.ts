/** Helpers for the KV store tests: the `host-kvstore` fixture, repackaged at will, driven from Wasm. */
import * as Reactivity from "@effect/experimental/Reactivity"
import type { SqlError } from "@effect/sql/SqlError"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Effect from "effect/Effect"
import { strToU8, unzipSync, zipSync } from "fflate"
import { readdirSync, readFileSync, readlinkSync } from "node:fs"
import type { LoadedPlugin } from "../../../src/loader/PluginLoader.js"
import { fixture } from "../../support/fixtures.js"

/** The built fixture, or a copy whose manifest declares `maxSize` instead of its own `"2KB"`. */
export const kvPackage = (maxSize?: string): Uint8Array => {
  const bytes = readFileSync(fixture("host-kvstore"))
  if (maxSize === undefined) return bytes
  const entries = unzipSync(bytes)
  const manifest = JSON.parse(new TextDecoder().decode(entries["manifest.json"])) as {
    permissions: { kvstore: Record<string, unknown> }
  }
  manifest.permissions.kvstore = { ...manifest.permissions.kvstore, maxSize }
  return zipSync({
    "manifest.json": strToU8(JSON.stringify(manifest)),
    "plugin.wasm": entries["plugin.wasm"]!
  })
}

/** A host response as the guest saw it. */
export type KvResponse = Record<string, unknown>

/** Calls `kvstore_<fn>` from inside the plugin with `request` (an object or raw JSON text). */
export const kv = (plugin: LoadedPlugin, fn: string, request: unknown = {}) =>
  Effect.map(
    Effect.orDie(
      plugin.call(`call_kvstore_${fn}`, typeof request === "string" ? request : JSON.stringify(request))
    ),
    (bytes): KvResponse => JSON.parse(new TextDecoder().decode(bytes ?? new Uint8Array(0))) as KvResponse
  )

/** Standard base64 of a string's UTF-8 or of bytes. */
export const b64 = (value: string | Uint8Array): string => Buffer.from(value).toString("base64")

/** Sets `key` to `value` (as UTF-8) and fails the test on an error response. */
export const put = (plugin: LoadedPlugin, key: string, value: string | Uint8Array) =>
  Effect.flatMap(kv(plugin, "set", { key, value: b64(value) }), (response) =>
    response["error"] === undefined
      ? Effect.void
      : Effect.dieMessage(`set ${key}: ${String(response["error"])}`)
  )

/** Runs `f` over a separate SQLite connection to a store file, to look at (or damage) its rows. */
export const withRawDb = <A, E>(
  filename: string,
  f: (sql: SqliteClient.SqliteClient) => Effect.Effect<A, E>
): Effect.Effect<A, E | SqlError> =>
  Effect.scoped(Effect.flatMap(SqliteClient.make({ filename }).pipe(Effect.provide(Reactivity.layer)), f))

/** How many rows a store file holds, expired or not. */
export const rawRowCount = (filename: string) =>
  withRawDb(filename, (sql) =>
    Effect.map(sql<{ readonly n: number }>`SELECT count(*) AS n FROM kv`, (rows) => rows[0]?.n ?? 0)
  ).pipe(Effect.orDie)

/**
 * The real bytes a store file holds in the rows live at `now` (all rows when absent): each key's
 * UTF-8 bytes plus its value's, summed independently of the store's own figures.
 */
export const rawUsedBytes = (filename: string, now?: number) =>
  withRawDb(filename, (sql) =>
    Effect.map(
      sql<{ readonly key: string; readonly value: Uint8Array; readonly expires_at: number | null }>`SELECT
        key, value, expires_at FROM kv`,
      (rows) =>
        rows
          .filter((row) => now === undefined || row.expires_at === null || row.expires_at > now)
          .reduce((sum, row) => sum + Buffer.byteLength(row.key, "utf8") + row.value.byteLength, 0)
    )
  ).pipe(Effect.orDie)

/** The value the durability writer stores under `k<n>` (base64): 1 to 64 bytes, all byte values. */
export const durabilityValue = (n: number): string =>
  b64(Uint8Array.from({ length: 1 + (n % 64) }, (_, i) => (n * 31 + i * 7) % 256))

/** Open file descriptors of this process whose target lies under `folder`. */
export const openFilesUnder = (folder: string): number =>
  readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith(folder)
    } catch {
      return false // closed between listing and reading
    }
  }).length

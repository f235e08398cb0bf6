/**
 * The engine's storage in one SQLite file, `<dataFolder>/ndp.db`, in WAL mode with a busy timeout:
 * one connection per process, shared by every component, and safe beside other processes (`ndp
 * serve` and `ndp plugins`) opening the same file.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Config from "effect/Config"
import type { ConfigError } from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { join, resolve } from "node:path"
import * as Dialect from "./Dialect.js"
import { adopt } from "./internal/legacy.js"
import * as Migrations from "./Migrations.js"
import * as Storage from "./Storage.js"
import { StorageError } from "./StorageError.js"

/** Where the database is and how long a writer waits for another's lock. */
export interface SqliteStorageOptions {
  /** The folder of `ndp.db` (created when missing). */
  readonly dataFolder: string
  /** How long a statement waits for another connection's write lock (default 10 s). */
  readonly busyTimeoutMs?: number | undefined
}

/** The database file's name in the data folder. */
export const FILENAME = "ndp.db"

/** Opens and migrates `<dataFolder>/ndp.db`; closed with the scope. */
export const make = Effect.fn("SqliteStorage.make")(function* (
  options: SqliteStorageOptions
): Effect.fn.Return<Storage.Storage["Type"], StorageError, FileSystem.FileSystem | Scope.Scope> {
  const dataFolder = resolve(options.dataFolder)
  const filename = join(dataFolder, FILENAME)
  const openError = (cause: unknown) =>
    new StorageError({
      reason: "Open",
      message: `cannot open the engine's database ${filename}: check that the folder is writable and the file is not damaged`,
      cause
    })
  const fs = yield* FileSystem.FileSystem
  yield* fs.makeDirectory(dataFolder, { recursive: true }).pipe(Effect.mapError(openError))
  const sql = yield* SqliteClient.make({ filename }).pipe(Effect.provide(Reactivity.layer))
  yield* Dialect.sqlitePragmas(sql, options.busyTimeoutMs ?? 10_000).pipe(Effect.mapError(openError))
  const dialect = Dialect.sqlite(sql)
  yield* Migrations.migrate(sql, dialect, adopt(sql, dialect, Migrations.MIGRATIONS_TABLE))
  return Storage.Storage.of({ sql, dialect })
})

/** `Storage` over `<dataFolder>/ndp.db`. */
export const layer = (
  options: SqliteStorageOptions
): Layer.Layer<Storage.Storage, StorageError, FileSystem.FileSystem> =>
  Layer.scoped(Storage.Storage, make(options))

/** `layer` from configuration (`dataFolder`, optional `busyTimeoutMs`). */
export const layerConfig = (
  config: Config.Config.Wrap<SqliteStorageOptions>
): Layer.Layer<Storage.Storage, StorageError | ConfigError, FileSystem.FileSystem> =>
  Layer.scoped(Storage.Storage, Effect.flatMap(Config.unwrap(config), make))

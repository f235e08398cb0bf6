/**
 * The tables the nodes of a cluster share (`Migrations.shared`: plugin registry, scrobble queue,
 * embedded users, settings and scrobble history) on its PostgreSQL database, offered as
 * `SharedStorage`. The same migrations as on SQLite, in the PostgreSQL dialect, run under an
 * advisory lock so nodes and `ndp plugins` starting together take turns.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Dialect from "./Dialect.js"
import * as Migrations from "./Migrations.js"
import { SharedStorage } from "./Storage.js"
import { StorageError } from "./StorageError.js"

/** Migrates the shared tables on the `SqlClient` in context (PostgreSQL) and offers them. */
export const make = Effect.fn("PgStorage.make")(function* () {
  const sql = yield* SqlClient.SqlClient
  const dialect = Dialect.postgres(sql)
  yield* Migrations.migrate(sql, dialect, Effect.void, Migrations.shared)
  return SharedStorage.of({ sql, dialect })
})

/** `SharedStorage` on the PostgreSQL client in context (the cluster's, in `Cluster.layerPostgres`). */
export const layer: Layer.Layer<SharedStorage, StorageError, SqlClient.SqlClient> = Layer.effect(
  SharedStorage,
  make()
)

/** Whether `url` names a PostgreSQL database. */
export const isPostgresUrl = (url: string): boolean => /^postgres(ql)?:\/\//.test(url)

/**
 * `SharedStorage` on its own client to the database at `url`, for a process that edits the shared
 * tables without being a node (`ndp plugins … --database`).
 */
export const layerUrl = (url: string): Layer.Layer<SharedStorage, StorageError> =>
  isPostgresUrl(url)
    ? layer.pipe(
        Layer.provide(
          PgClient.layer({ url: Redacted.make(url), applicationName: "ndp-engine" }).pipe(
            Layer.mapError(
              (cause) =>
                new StorageError({
                  reason: "Open",
                  message: `cannot open the PostgreSQL database: ${cause.message}; check the Database URL and that the server is up`,
                  cause
                })
            )
          )
        )
      )
    : Layer.fail(
        new StorageError({
          reason: "Open",
          message: `the Database setting must be a postgres:// URL (or be left unset for SQLite), not "${url.split("@").pop()}"`
        })
      )

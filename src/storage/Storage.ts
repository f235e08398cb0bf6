/**
 * The engine's own database: one client for every engine table (plugin registry, scrobble queue,
 * embedded users, settings and catalogue), migrated once, before anything can use it.
 *
 * The client is offered under this Tag only, never as the generic `SqlClient`, so a server that
 * provides its own `SqlClient` beside the engine keeps it. Modules take `Storage` in their layer
 * and write portable SQL with `sql`, asking `dialect` for the little that differs between backends.
 * A module adds tables by appending a migration to `Migrations.ts`; a backend's layer (`SqliteStorage`)
 * opens the database and runs `Migrations.migrate` before it offers this service.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Dialect } from "./Dialect.js"

/** The engine's database client and the dialect its SQL is written in. */
export class Storage extends Context.Tag("ndp-engine/Storage")<
  Storage,
  {
    /** The engine's own client (not the generic `SqlClient` Tag, which stays the server's). */
    readonly sql: SqlClient.SqlClient
    readonly dialect: Dialect
  }
>() {}

/**
 * The database the nodes of a cluster share (PostgreSQL), present only on a cluster: the tables of
 * `Migrations.shared` live there. A module whose rows all nodes must see (the plugin registry) is
 * built over it with `Layer.provide(sharedAsStorage)`, or reads it with `sharedOrOwn`.
 */
export class SharedStorage extends Context.Tag("ndp-engine/SharedStorage")<
  SharedStorage,
  Storage["Type"]
>() {}

/** `Storage` as the cluster's shared database. */
export const sharedAsStorage: Layer.Layer<Storage, never, SharedStorage> = Layer.effect(
  Storage,
  SharedStorage
)

/**
 * The cluster's shared database when one is in the context, else the engine's own: for tables a
 * single server keeps in its file but every node of a cluster must see (the embedded users,
 * settings and scrobble history), so `Engine.layer` needs no cluster setting of its own.
 */
export const sharedOrOwn: Effect.Effect<Storage["Type"], never, Storage> = Effect.flatMap(
  Effect.serviceOption(SharedStorage),
  Option.match({ onNone: () => Storage, onSome: Effect.succeed })
)

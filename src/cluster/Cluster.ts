/**
 * The engine as one node of a cluster sharing a PostgreSQL database (decision 0038): a runner of
 * `@effect/cluster` whose shards are taken with PostgreSQL advisory locks, one singleton per plugin
 * for its background work, and schedule ticks claimed in the database. Nodes exchange nothing but
 * rows: no runner port is opened.
 */
import * as MessageStorage from "@effect/cluster/MessageStorage"
import * as EntityId from "@effect/cluster/EntityId"
import * as RunnerAddress from "@effect/cluster/RunnerAddress"
import * as RunnerHealth from "@effect/cluster/RunnerHealth"
import * as Runners from "@effect/cluster/Runners"
import * as Sharding from "@effect/cluster/Sharding"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as SqlRunnerStorage from "@effect/cluster/SqlRunnerStorage"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { hostname } from "node:os"
import * as KvStorePg from "../host/kvstore/KvStorePg.js"
import * as KvStoreService from "../host/kvstore/KvStoreService.js"
import * as TaskStorePg from "../host/taskqueue/TaskStorePg.js"
import { migrate } from "../internal/migrate.js"
import { advisoryLock } from "../storage/Dialect.js"
import * as PgStorage from "../storage/PgStorage.js"
import type { SharedStorage } from "../storage/Storage.js"
import { PluginOwnership, type PluginOwnershipShape } from "./PluginOwnership.js"

/** How a node takes part in the cluster. */
export interface ClusterOptions {
  /** This node's identity among the runners: unique in the cluster (host name + HTTP port, say). */
  readonly nodeHost: string
  readonly nodePort: number
  /** How long a silent node keeps its plugins (default 6 s); the failover bound is about this + 3 s. */
  readonly lockExpiration?: Duration.DurationInput | undefined
}

/**
 * A node is gone after 6 s of silence. Heartbeats and lock refreshes every 2 s (also the timeout of
 * one lock operation: 1 s made loaded machines flap between healthy and not), assignment checks
 * every second.
 */
export const defaultLockExpiration: Duration.Duration = Duration.seconds(6)

const shardingConfig = (options: ClusterOptions) =>
  ShardingConfig.layer({
    // The address only names the runner: Runners.layerNoop never connects to it.
    runnerAddress: Option.some(RunnerAddress.make(options.nodeHost, options.nodePort)),
    shardsPerGroup: 64,
    shardLockRefreshInterval: Duration.seconds(2),
    shardLockExpiration: options.lockExpiration ?? defaultLockExpiration,
    refreshAssignmentsInterval: Duration.seconds(1)
  })

/** The PostgreSQL schema of the cluster's own rows (the runners' tables belong to `@effect/cluster`). */
export const migrations = Migrator.fromRecord({
  "0001_schedule_ticks": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE ndp_schedule_ticks (
      plugin TEXT NOT NULL,
      schedule TEXT NOT NULL,
      last_tick BIGINT NOT NULL,
      PRIMARY KEY (plugin, schedule)
    )`
  })
})

/** The singleton that carries a plugin's background work. */
export const singletonName = (pluginId: string): string => `ndp/plugin/${pluginId}`

interface Work {
  readonly token: object
  readonly run: Effect.Effect<void>
}

const makeOwnership = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const sharding = yield* Sharding.Sharding
  // Singletons live as long as this layer: registered in its scope, not in whatever scope the
  // caller of `background` runs in.
  const layerContext = Context.add(
    yield* Effect.context<Sharding.Sharding>(),
    Scope.Scope,
    yield* Effect.scope
  )
  yield* migrate("ndp_cluster_migrations", migrations).pipe(Effect.orDie)
  const works = new Map<string, SubscriptionRef.SubscriptionRef<Work | undefined>>()

  const owns = (pluginId: string) =>
    sharding.hasShardId(sharding.getShardId(EntityId.make(singletonName(pluginId)), "default"))

  /**
   * One singleton per plugin and node, for the node's lifetime; it runs whatever version of the
   * plugin is loaded now, so a reload re-runs `nd_on_init` on the new version and never registers
   * the same singleton twice.
   */
  const slotOf = (pluginId: string) =>
    Effect.gen(function* () {
      const existing = works.get(pluginId)
      if (existing !== undefined) return existing
      const ref = yield* SubscriptionRef.make<Work | undefined>(undefined)
      works.set(pluginId, ref)
      const run = ref.changes.pipe(
        Stream.flatMap((work) => (work === undefined ? Stream.empty : Stream.fromEffect(work.run)), {
          switch: true
        }),
        Stream.runDrain,
        Effect.andThen(Effect.never),
        Effect.annotateLogs("plugin", pluginId)
      )
      yield* sharding
        .registerSingleton(singletonName(pluginId), run)
        .pipe(Effect.provide(layerContext), Effect.forkDaemon)
      return ref
    })

  const ownership: PluginOwnershipShape = {
    background: (pluginId, run) =>
      Effect.gen(function* () {
        const ref = yield* slotOf(pluginId)
        const token = {}
        yield* SubscriptionRef.set(ref, { token, run })
        yield* Effect.addFinalizer(() =>
          SubscriptionRef.update(ref, (work) => (work?.token === token ? undefined : work))
        )
      }),
    claimTick: (pluginId, scheduleId, tick, notBefore) =>
      Effect.suspend(() => {
        if (!owns(pluginId)) return Effect.succeed(false)
        // The conditional upsert is the cluster-wide guard: two owners at once still fire a tick once.
        return sql`INSERT INTO ndp_schedule_ticks (plugin, schedule, last_tick)
          VALUES (${pluginId}, ${scheduleId}, ${tick})
          ON CONFLICT (plugin, schedule) DO UPDATE SET last_tick = excluded.last_tick
          WHERE ndp_schedule_ticks.last_tick < ${notBefore}
          RETURNING 1 AS claimed`.pipe(
          Effect.map((rows) => rows.length > 0),
          Effect.catchAll((error) =>
            Effect.as(Effect.logWarning(`schedule ${scheduleId}: tick not claimed, skipped`, error), false)
          )
        )
      })
  }
  return ownership
})

/**
 * This node as a cluster runner on the `SqlClient` in context (PostgreSQL): provides the
 * ownership of plugins' background work.
 */
export const layer = (options: ClusterOptions): Layer.Layer<PluginOwnership, never, SqlClient.SqlClient> =>
  Layer.scoped(PluginOwnership, makeOwnership).pipe(
    Layer.provide(Sharding.layer),
    Layer.provide(Runners.layerNoop),
    Layer.provide(Layer.orDie(SqlRunnerStorage.layerWith({ prefix: "ndp_cluster" }))),
    Layer.provide([MessageStorage.layerNoop, RunnerHealth.layerNoop]),
    Layer.provide(shardingConfig(options))
  )

/** Two-key advisory locks never collide with the one-key locks the cluster takes for shards. */
const startupLock: readonly [number, number] = [0x6e6470, 1]

/**
 * Builds `node` while holding a database-wide lock, so nodes starting together create tables one
 * after another: PostgreSQL's `CREATE TABLE IF NOT EXISTS` is not safe against a concurrent twin
 * (the runners' tables of `@effect/cluster` and our migrators' tables alike).
 */
const oneNodeAtATime = <A, E>(
  node: Layer.Layer<A, E, SqlClient.SqlClient>
): Layer.Layer<A, E | SqlError, SqlClient.SqlClient> =>
  Layer.scopedContext(
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const nodeScope = yield* Effect.scope
      return yield* Effect.scoped(
        Effect.zipRight(
          advisoryLock(sql, startupLock),
          Layer.buildWithScope(node, nodeScope).pipe(Effect.provideService(Scope.Scope, nodeScope))
        )
      )
    })
  )

/** The database setting cannot be used: not a PostgreSQL URL, or the server refused. */
export class ClusterError extends Schema.TaggedError<ClusterError>()("ClusterError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/**
 * The engine's shared state on the PostgreSQL database at `url`, this process as one of its nodes:
 * the KV stores of every plugin in one schema, the shared tables (plugin registry, scrobble queue,
 * embedded users, settings and scrobble history) and the ownership of plugins' background work. The
 * node is named after the host and process ID unless told.
 */
export const layerPostgres = (
  url: string,
  options: Partial<ClusterOptions> = {}
): Layer.Layer<PluginOwnership | KvStoreService.SharedDatabase | SharedStorage, ClusterError> => {
  if (!PgStorage.isPostgresUrl(url)) {
    return Layer.fail(
      new ClusterError({
        message: `the Database setting must be a postgres:// URL (or be left unset for SQLite), not "${url.split("@").pop()}"`
      })
    )
  }
  const shared = Layer.effect(
    KvStoreService.SharedDatabase,
    Effect.tap(SqlClient.SqlClient, (sql) =>
      Effect.zipRight(KvStorePg.migrateSchema, TaskStorePg.migrateSchema).pipe(
        Effect.provideService(SqlClient.SqlClient, sql)
      )
    )
  )
  const node = Layer.mergeAll(
    PgStorage.layer,
    layer({
      nodeHost: options.nodeHost ?? hostname(),
      nodePort: options.nodePort ?? process.pid,
      ...options
    }),
    shared
  )
  return oneNodeAtATime(node).pipe(
    Layer.provide(PgClient.layer({ url: Redacted.make(url), applicationName: "ndp-engine" })),
    Layer.mapError(
      (cause) =>
        new ClusterError({
          message: `cannot use the PostgreSQL database: ${cause instanceof Error ? cause.message : String(cause)}; check the Database URL and that the server is up`,
          cause
        })
    )
  )
}

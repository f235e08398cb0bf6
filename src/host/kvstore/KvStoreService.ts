/**
 * The KVStore host service (`kvstore`, contract §5): the nine `kvstore_*` functions over one
 * persistent store per plugin, at `<dataFolder>/plugins/<pluginId>/kvstore.db`, sized by the
 * manifest's `permissions.kvstore.maxSize`. The store opens when the plugin loads and closes when
 * it unloads.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
// A namespace import: bundles that declare `createRequire` in a banner (README, "Bundling") keep working.
import * as NodeModule from "node:module"
import { join } from "node:path"
import { defaultKvstoreMaxSizeBytes } from "../../manifest/Manifest.js"
import {
  Bytes,
  encodeError,
  encodeResponseAsIs,
  type HostFunctionHandler,
  hostFunction,
  toBase64
} from "../HostCodec.js"
import { define, type HostServiceProvider, type PluginContext } from "../HostProvider.js"
import * as PluginMetrics from "../../metrics/PluginMetrics.js"
import * as KvStore from "./KvStore.js"
import * as KvStorePg from "./KvStorePg.js"
import type { KvStoreError } from "./KvStoreError.js"
import type { LocalKvStore } from "../../runtime/abi/protocol.js"

/** The host functions of this service, in contract order, and the permission they need. */
export const definition = define({
  grant: "kvstore",
  functions: [
    "kvstore_set",
    "kvstore_get",
    "kvstore_delete",
    "kvstore_has",
    "kvstore_list",
    "kvstore_getstorageused",
    "kvstore_setwithttl",
    "kvstore_getmany",
    "kvstore_deletebyprefix"
  ]
})

// A missing or null field reads as Go's zero value, so the store's own rules word the error.
const Text = Schema.optionalWith(Schema.String, { default: () => "", nullable: true })
const Value = Schema.optionalWith(Bytes, { default: () => new Uint8Array(0), nullable: true })

const KeyRequest = Schema.Struct({ key: Text })
const SetRequest = Schema.Struct({ key: Text, value: Value })
const SetWithTtlRequest = Schema.Struct({
  key: Text,
  value: Value,
  ttlSeconds: Schema.optionalWith(Schema.Number, { default: () => 0, nullable: true })
})
const PrefixRequest = Schema.Struct({ prefix: Text })
const KeysRequest = Schema.Struct({
  keys: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [], nullable: true })
})

const noPayload = new Uint8Array(0)

/**
 * `kvstore_getmany` is encoded as given: `omitZero` would also drop the empty values inside the
 * `values` map, while a present-but-empty entry must stay (`"k": ""`).
 */
const getManyFunction = (store: KvStore.KvStore): HostFunctionHandler =>
  hostFunction(
    "kvstore_getmany",
    KeysRequest,
    ({ keys }) =>
      Effect.map(store.getMany(keys), (found) =>
        // fromEntries defines own properties, so even a key named `__proto__` is kept.
        found.size === 0
          ? {}
          : { values: Object.fromEntries(Array.from(found, ([key, value]) => [key, toBase64(value)])) }
      ),
    encodeResponseAsIs
  )

/**
 * Sets the plugin's `ndp_plugin_kvstore_bytes` gauge from the store's usage. A failure to read it
 * only leaves the gauge stale: metrics never fail a host call.
 */
const reportUsage = (store: KvStore.KvStore, pluginId: string): Effect.Effect<void> =>
  Effect.flatMap(store.storageUsed, (bytes) =>
    PluginMetrics.setGauge(PluginMetrics.kvBytes, pluginId, bytes)
  ).pipe(Effect.ignore)

/** The host functions over one open store; writes update the plugin's KV-bytes gauge. */
export const functions = (
  store: KvStore.KvStore,
  pluginId?: string
): Record<(typeof definition.functions)[number], HostFunctionHandler> => {
  const storageUsed = hostFunction("kvstore_getstorageused", Schema.Unknown, () =>
    Effect.map(store.storageUsed, (bytes) => ({ bytes }))
  )
  const metered = <A, E>(write: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    pluginId === undefined ? write : Effect.tap(write, () => reportUsage(store, pluginId))
  return {
    kvstore_set: hostFunction("kvstore_set", SetRequest, ({ key, value }) =>
      Effect.as(metered(store.set(key, value)), {})
    ),
    kvstore_get: hostFunction("kvstore_get", KeyRequest, ({ key }) =>
      Effect.map(
        store.get(key),
        Option.match({
          onNone: () => ({}),
          onSome: (value) => ({ value: toBase64(value), exists: true })
        })
      )
    ),
    kvstore_delete: hostFunction("kvstore_delete", KeyRequest, ({ key }) =>
      Effect.as(metered(store.delete(key)), {})
    ),
    kvstore_has: hostFunction("kvstore_has", KeyRequest, ({ key }) =>
      Effect.map(store.has(key), (exists) => ({ exists }))
    ),
    kvstore_list: hostFunction("kvstore_list", PrefixRequest, ({ prefix }) =>
      Effect.map(store.list(prefix), (keys) => ({ keys }))
    ),
    // It takes no parameters, so whatever the guest passed (any handle, even 0) is ignored.
    kvstore_getstorageused: () => storageUsed(noPayload),
    kvstore_setwithttl: hostFunction("kvstore_setwithttl", SetWithTtlRequest, ({ key, ttlSeconds, value }) =>
      Effect.as(metered(store.setWithTtl(key, value, ttlSeconds)), {})
    ),
    kvstore_getmany: getManyFunction(store),
    kvstore_deletebyprefix: hostFunction("kvstore_deletebyprefix", PrefixRequest, ({ prefix }) =>
      Effect.map(metered(store.deleteByPrefix(prefix)), (deletedCount) => ({ deletedCount }))
    )
  }
}

/** Every function answering `{"error"}`: what a plugin gets when its store cannot be opened. */
const unavailable = (error: KvStoreError): Record<string, HostFunctionHandler> => {
  const response = encodeError(`kvstore unavailable: ${error.message}`)
  return Object.fromEntries(definition.functions.map((name) => [name, () => Effect.succeed(response)]))
}

/** The reads a worker may answer over its own connection to the store's file (decision 0035). */
export const workerReads = ["kvstore_get", "kvstore_has"] as const

/**
 * The handlers made over an open SQLite store, by the store's file: only those may be bypassed by
 * a worker's read. A PostgreSQL store, a store that failed to open, or an embedder's own provider
 * of these names is never in here, so its calls keep crossing.
 */
const sqliteHandlers = new WeakMap<HostFunctionHandler, string>()

/**
 * The better-sqlite3 module `@effect/sql-sqlite-node` uses (absolute path), for the workers to load
 * the same native driver; undefined when it cannot be found, and then every KV call crosses.
 */
const sqliteDriver: string | undefined = (() => {
  try {
    const client = NodeModule.createRequire(import.meta.url).resolve("@effect/sql-sqlite-node")
    return NodeModule.createRequire(client).resolve("better-sqlite3")
  } catch {
    return undefined
  }
})()

/**
 * Of the plugin's `handlers`, the KV reads its worker may answer itself, and the store file they
 * read: both empty unless the stock SQLite store opened and owns these names.
 */
export const servedInWorker = (
  handlers: Readonly<Record<string, HostFunctionHandler>>
): { readonly functions: ReadonlyArray<string>; readonly store: LocalKvStore | undefined } => {
  const served = workerReads.flatMap((name) => {
    const handler = handlers[name]
    const filename = handler === undefined ? undefined : sqliteHandlers.get(handler)
    return filename === undefined ? [] : [{ name, filename }]
  })
  const filename = served[0]?.filename
  if (filename === undefined || sqliteDriver === undefined) return { functions: [], store: undefined }
  const functions = served.filter((read) => read.filename === filename).map((read) => read.name)
  return { functions, store: { filename, driver: sqliteDriver } }
}

/** Where a plugin's store lives. */
export const storePath = (context: Pick<PluginContext, "dataFolder" | "pluginId">): string =>
  join(context.dataFolder, "plugins", context.pluginId, "kvstore.db")

/** Limits of the KV store set by the administrator (the size limit comes from the manifest). */
export interface KvStoreServiceOptions {
  /** The most keys one plugin's store may hold. */
  readonly maxKeys: number
}

/** 100,000 keys per store. */
export const defaultKvStoreServiceOptions: KvStoreServiceOptions = { maxKeys: KvStore.defaultMaxKeys }

/** The KVStore host service: one store per plugin, opened in the plugin's scope. */
export class KvStoreService extends Context.Tag("ndp-engine/host/KvStoreService")<
  KvStoreService,
  HostServiceProvider
>() {}

/**
 * The shared database whose schema holds every plugin's store (migrated by whoever provides it,
 * `Cluster.layerPostgres`); absent = a SQLite file per plugin in the data folder.
 */
export class SharedDatabase extends Context.Tag("ndp-engine/host/KvStoreService/SharedDatabase")<
  SharedDatabase,
  SqlClient.SqlClient
>() {}

/** The stores of every plugin in the shared PostgreSQL schema (`KvStorePg`), same limits as on SQLite. */
const onPostgres = (sql: SqlClient.SqlClient, maxKeys: number): HostServiceProvider => ({
  ...definition,
  make: (context) =>
    Effect.map(
      KvStorePg.make(sql, {
        pluginId: context.pluginId,
        maxSizeBytes: context.manifest.permissions.kvstore?.maxSizeBytes ?? defaultKvstoreMaxSizeBytes,
        maxKeys
      }),
      (store): Record<string, HostFunctionHandler> => functions(store, context.pluginId)
    )
})

/**
 * The KVStore service with these limits (missing ones take `defaultKvStoreServiceOptions`): on the
 * `SharedDatabase` when one is provided, else a SQLite file per plugin.
 */
export const make = Effect.fn("KvStoreService.make")(function* (
  options: Partial<KvStoreServiceOptions> = {}
) {
  const { maxKeys } = { ...defaultKvStoreServiceOptions, ...options }
  const shared = yield* Effect.serviceOption(SharedDatabase)
  if (shared._tag === "Some") return onPostgres(shared.value, maxKeys)
  return yield* Effect.succeed<HostServiceProvider>({
    ...definition,
    make: (context) =>
      KvStore.make({
        filename: storePath(context),
        maxSizeBytes: context.manifest.permissions.kvstore?.maxSizeBytes ?? defaultKvstoreMaxSizeBytes,
        maxKeys
      }).pipe(
        Effect.tap((store) => reportUsage(store, context.pluginId)),
        Effect.map((store): Record<string, HostFunctionHandler> => {
          const handlers = functions(store, context.pluginId)
          for (const name of workerReads) sqliteHandlers.set(handlers[name], storePath(context))
          return handlers
        }),
        // A store that cannot open must not keep the plugin from loading: its calls fail in-band.
        Effect.catchAll((error) =>
          Effect.logError(`kvstore of plugin ${context.pluginId} cannot be opened`, error).pipe(
            Effect.as(unavailable(error))
          )
        ),
        Effect.annotateLogs("plugin", context.pluginId)
      )
  })
})

/** The KVStore service as a layer. */
export const layer = (options: Partial<KvStoreServiceOptions> = {}): Layer.Layer<KvStoreService> =>
  Layer.effect(KvStoreService, make(options))

/** The KVStore service with its limits read from `Config`. */
export const layerConfig = (
  config: Config.Config.Wrap<Partial<KvStoreServiceOptions>>
): Layer.Layer<KvStoreService, ConfigError.ConfigError> =>
  Layer.effect(KvStoreService, Effect.flatMap(Config.unwrap(config), make))

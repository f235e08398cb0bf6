/**
 * The KVStore host service (`kvstore`, contract §5): the nine `kvstore_*` functions over one
 * persistent store per plugin, at `<dataFolder>/plugins/<pluginId>/kvstore.db`, sized by the
 * manifest's `permissions.kvstore.maxSize`. The store opens when the plugin loads and closes when
 * it unloads.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
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
import type { HostServiceProvider, PluginContext } from "../HostFunctions.js"
import * as KvStore from "./KvStore.js"
import * as KvStorePg from "./KvStorePg.js"
import type { KvStoreError } from "./KvStoreError.js"

/** The host functions of this service, in contract order. */
export const functionNames = [
  "kvstore_set",
  "kvstore_get",
  "kvstore_delete",
  "kvstore_has",
  "kvstore_list",
  "kvstore_getstorageused",
  "kvstore_setwithttl",
  "kvstore_getmany",
  "kvstore_deletebyprefix"
] as const

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

/** The host functions over one open store. */
export const functions = (
  store: KvStore.KvStore
): Record<(typeof functionNames)[number], HostFunctionHandler> => {
  const storageUsed = hostFunction("kvstore_getstorageused", Schema.Unknown, () =>
    Effect.map(store.storageUsed, (bytes) => ({ bytes }))
  )
  return {
    kvstore_set: hostFunction("kvstore_set", SetRequest, ({ key, value }) =>
      Effect.as(store.set(key, value), {})
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
    kvstore_delete: hostFunction("kvstore_delete", KeyRequest, ({ key }) => Effect.as(store.delete(key), {})),
    kvstore_has: hostFunction("kvstore_has", KeyRequest, ({ key }) =>
      Effect.map(store.has(key), (exists) => ({ exists }))
    ),
    kvstore_list: hostFunction("kvstore_list", PrefixRequest, ({ prefix }) =>
      Effect.map(store.list(prefix), (keys) => ({ keys }))
    ),
    // It takes no parameters, so whatever the guest passed (any handle, even 0) is ignored.
    kvstore_getstorageused: () => storageUsed(noPayload),
    kvstore_setwithttl: hostFunction("kvstore_setwithttl", SetWithTtlRequest, ({ key, ttlSeconds, value }) =>
      Effect.as(store.setWithTtl(key, value, ttlSeconds), {})
    ),
    kvstore_getmany: getManyFunction(store),
    kvstore_deletebyprefix: hostFunction("kvstore_deletebyprefix", PrefixRequest, ({ prefix }) =>
      Effect.map(store.deleteByPrefix(prefix), (deletedCount) => ({ deletedCount }))
    )
  }
}

/** Every function answering `{"error"}`: what a plugin gets when its store cannot be opened. */
const unavailable = (error: KvStoreError): Record<string, HostFunctionHandler> => {
  const response = encodeError(`kvstore unavailable: ${error.message}`)
  return Object.fromEntries(functionNames.map((name) => [name, () => Effect.succeed(response)]))
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

/** The KVStore service with these limits: one store per plugin, opened in the plugin's scope. */
export const providerWith = (options: Partial<KvStoreServiceOptions> = {}): HostServiceProvider => {
  const { maxKeys } = { ...defaultKvStoreServiceOptions, ...options }
  return {
    grant: "kvstore",
    functions: functionNames,
    make: (context) =>
      KvStore.make({
        filename: storePath(context),
        maxSizeBytes: context.manifest.permissions.kvstore?.maxSizeBytes ?? defaultKvstoreMaxSizeBytes,
        maxKeys
      }).pipe(
        Effect.map((store): Record<string, HostFunctionHandler> => functions(store)),
        // A store that cannot open must not keep the plugin from loading: its calls fail in-band.
        Effect.catchAll((error) =>
          Effect.logError(`kvstore of plugin ${context.pluginId} cannot be opened`, error).pipe(
            Effect.as(unavailable(error))
          )
        ),
        Effect.annotateLogs("plugin", context.pluginId)
      )
  }
}

/** The KVStore service with the default limits. */
export const provider: HostServiceProvider = providerWith()

/**
 * The shared database whose schema holds every plugin's store (migrated by whoever provides it);
 * absent = a SQLite file per plugin in the data folder.
 */
export class SharedDatabase extends Context.Tag("ndp/kvstore/SharedDatabase")<
  SharedDatabase,
  SqlClient.SqlClient
>() {}

/**
 * The KVStore service on a shared PostgreSQL database (`KvStorePg`): every plugin's store in one
 * schema, which the caller has migrated (`KvStorePg.migrateSchema`), same limits as on SQLite.
 */
export const providerOnPostgres = (
  sql: SqlClient.SqlClient,
  options: Partial<KvStoreServiceOptions> = {}
): HostServiceProvider => {
  const { maxKeys } = { ...defaultKvStoreServiceOptions, ...options }
  return {
    grant: "kvstore",
    functions: functionNames,
    make: (context) =>
      Effect.map(
        KvStorePg.make(sql, {
          pluginId: context.pluginId,
          maxSizeBytes: context.manifest.permissions.kvstore?.maxSizeBytes ?? defaultKvstoreMaxSizeBytes,
          maxKeys
        }),
        (store): Record<string, HostFunctionHandler> => functions(store)
      )
  }
}

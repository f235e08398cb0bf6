/**
 * The one layer an embedding server provides: the execution runtime, the host services, the
 * plugin loader and the engine's storage, wired together with Node's filesystem. `layer` brings
 * embedded defaults for what a server would otherwise supply (users, artwork settings, library);
 * `layerWithServer` takes the server's.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Layer from "effect/Layer"
import { resolve } from "node:path"
import * as EmbeddedDatabase from "./server/embedded/EmbeddedDatabase.js"
import * as EmbeddedLibrary from "./server/embedded/EmbeddedLibrary.js"
import * as EmbeddedScrobbleHistory from "./server/embedded/EmbeddedScrobbleHistory.js"
import * as EmbeddedTrackCatalog from "./server/embedded/EmbeddedTrackCatalog.js"
import type { ScrobbleHistory } from "./server/ScrobbleHistory.js"
import type { TrackCatalog } from "./server/TrackCatalog.js"
import type * as CacheService from "./host/cache/CacheService.js"
import type * as HostFunctions from "./host/HostFunctions.js"
import * as HostServices from "./host/HostServices.js"
import type * as HttpService from "./host/http/HttpService.js"
import * as PluginLoader from "./loader/PluginLoader.js"
import * as WasmRuntime from "./runtime/WasmRuntime.js"
import * as SqliteStorage from "./storage/SqliteStorage.js"
import type { Storage } from "./storage/Storage.js"
import type { StorageError } from "./storage/StorageError.js"

/** Engine settings; everything is optional. */
export interface EngineOptions {
  readonly runtime?: Partial<WasmRuntime.RuntimeOptions> | undefined
  /** Where the engine keeps data: plugins' KV stores, its database `ndp.db`. Default `./ndp-data`. */
  readonly dataFolder?: string | undefined
  readonly cache?: Partial<CacheService.CacheOptions> | undefined
  readonly http?: Partial<HttpService.HttpOptions> | undefined
  readonly kvstore?: HostServices.HostOptions["kvstore"]
  readonly scheduler?: HostServices.HostOptions["scheduler"]
  readonly taskqueue?: HostServices.HostOptions["taskqueue"]
  readonly websocket?: HostServices.HostOptions["websocket"]
  /** Base URL of artwork links when the embedded artwork settings are used. */
  readonly artworkBaseUrl?: string | undefined
}

/**
 * Everything the engine offers to the embedding server. `Storage` is the engine's own database
 * (for its registry, scrobble queue and embedded defaults); the generic `SqlClient` stays the
 * server's.
 */
export type EngineServices =
  PluginLoader.PluginLoader | WasmRuntime.WasmRuntime | HostFunctions.HostFunctions | Storage

/** Why the engine could not start. */
export type EngineError = WasmRuntime.WorkerScriptError | StorageError

const dataFolderOf = (options: EngineOptions): string => resolve(options.dataFolder ?? "ndp-data")

/** Loader, runtime and host services over `storage`, which they and the caller share. */
const engineOver = (
  options: EngineOptions,
  storage: Layer.Layer<Storage, StorageError>
): Layer.Layer<EngineServices, EngineError, HostServices.ServerServices> =>
  PluginLoader.layer.pipe(
    Layer.provideMerge(WasmRuntime.layer(options.runtime)),
    Layer.provideMerge(HostServices.layer({ ...options, dataFolder: dataFolderOf(options) })),
    Layer.provideMerge(storage),
    Layer.provide(NodeFileSystem.layer)
  )

const storageOf = (options: EngineOptions): Layer.Layer<Storage, StorageError> =>
  SqliteStorage.layer({ dataFolder: dataFolderOf(options) }).pipe(Layer.provide(NodeFileSystem.layer))

/** The engine with the server's own users, artwork settings, library catalogue and Subsonic router. */
export const layerWithServer = (
  options: EngineOptions = {}
): Layer.Layer<EngineServices, EngineError, HostServices.ServerServices> =>
  engineOver(options, storageOf(options))

/**
 * The engine with embedded defaults (its database in the data folder, demo users): runs out of the
 * box. Given a cluster's `SharedStorage` (`Cluster.layerPostgres`), the embedded users, artwork
 * secret and scrobble history are the cluster's (decision 0047).
 */
export const layer = (
  options: EngineOptions = {}
): Layer.Layer<
  EngineServices | HostServices.ServerServices | ScrobbleHistory | TrackCatalog,
  EngineError
> => {
  // One layer value used twice: built once, so the engine and the embedded defaults share one client.
  const storage = storageOf(options)
  const database = EmbeddedDatabase.layer({ baseUrl: options.artworkBaseUrl })
  return engineOver(options, storage).pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        database,
        EmbeddedScrobbleHistory.layer.pipe(Layer.provide(database)),
        EmbeddedTrackCatalog.layer.pipe(Layer.provide(database)),
        // Writing the demo files fails only on an unwritable data folder, which the storage reported first.
        Layer.orDie(EmbeddedLibrary.layer({ dataFolder: dataFolderOf(options) }))
      )
    ),
    Layer.provideMerge(storage),
    Layer.provide(NodeFileSystem.layer)
  )
}

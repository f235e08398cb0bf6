/**
 * The one layer an embedding server provides: the execution runtime, the host services, and the
 * plugin loader, wired together with Node's filesystem. `layer` brings embedded defaults for what
 * a server would otherwise supply (users, artwork settings); `layerWithServer` takes the server's.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Layer from "effect/Layer"
import { resolve } from "node:path"
import * as EmbeddedDatabase from "./server/embedded/EmbeddedDatabase.js"
import * as EmbeddedLibrary from "./server/embedded/EmbeddedLibrary.js"
import * as EmbeddedScrobbleHistory from "./server/embedded/EmbeddedScrobbleHistory.js"
import type { ScrobbleHistory } from "./server/ScrobbleHistory.js"
import type * as CacheService from "./host/cache/CacheService.js"
import type * as HostFunctions from "./host/HostFunctions.js"
import * as HostServices from "./host/HostServices.js"
import type * as HttpService from "./host/http/HttpService.js"
import * as PluginLoader from "./loader/PluginLoader.js"
import * as WasmRuntime from "./runtime/WasmRuntime.js"

/** Engine settings; everything is optional. */
export interface EngineOptions {
  readonly runtime?: Partial<WasmRuntime.RuntimeOptions> | undefined
  /** Where the engine keeps data: plugins' KV stores, the embedded database. Default `./ndp-data`. */
  readonly dataFolder?: string | undefined
  readonly cache?: Partial<CacheService.CacheOptions> | undefined
  readonly http?: Partial<HttpService.HttpOptions> | undefined
  readonly kvstore?: HostServices.HostOptions["kvstore"]
  readonly scheduler?: HostServices.HostOptions["scheduler"]
  readonly websocket?: HostServices.HostOptions["websocket"]
  /** Base URL of artwork links when the embedded artwork settings are used. */
  readonly artworkBaseUrl?: string | undefined
}

/** Everything the engine offers to the embedding server. */
export type EngineServices = PluginLoader.PluginLoader | WasmRuntime.WasmRuntime | HostFunctions.HostFunctions

const dataFolderOf = (options: EngineOptions): string => resolve(options.dataFolder ?? "ndp-data")

/** The engine with the server's own users, artwork settings, library catalogue and Subsonic router. */
export const layerWithServer = (
  options: EngineOptions = {}
): Layer.Layer<EngineServices, WasmRuntime.WorkerScriptError, HostServices.ServerServices> =>
  PluginLoader.layer.pipe(
    Layer.provideMerge(WasmRuntime.layer(options.runtime)),
    Layer.provideMerge(HostServices.layer({ ...options, dataFolder: dataFolderOf(options) })),
    Layer.provide(NodeFileSystem.layer)
  )

/** The engine with embedded defaults (SQLite in the data folder, demo users): runs out of the box. */
export const layer = (
  options: EngineOptions = {}
): Layer.Layer<
  EngineServices | HostServices.ServerServices | ScrobbleHistory | SqlClient.SqlClient,
  WasmRuntime.WorkerScriptError
> =>
  layerWithServer(options).pipe(
    Layer.provideMerge(
      Layer.merge(
        EmbeddedScrobbleHistory.layer.pipe(
          Layer.provideMerge(
            EmbeddedDatabase.layer({ dataFolder: dataFolderOf(options), baseUrl: options.artworkBaseUrl })
          )
        ),
        EmbeddedLibrary.layer({ dataFolder: dataFolderOf(options) })
      )
    )
  )

/**
 * The one layer an embedding server provides: the execution runtime, the host-function registry
 * and the plugin loader, wired together with Node's filesystem.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Layer from "effect/Layer"
import * as HostFunctions from "./host/HostFunctions.js"
import * as PluginLoader from "./loader/PluginLoader.js"
import * as WasmRuntime from "./runtime/WasmRuntime.js"

/** Engine settings; everything is optional. */
export interface EngineOptions {
  readonly runtime?: Partial<WasmRuntime.RuntimeOptions>
}

/** Everything the engine offers to the embedding server. */
export type EngineServices = PluginLoader.PluginLoader | WasmRuntime.WasmRuntime | HostFunctions.HostFunctions

/** The engine: provide it once, at the edge of the server. */
export const layer = (options: EngineOptions = {}): Layer.Layer<EngineServices> =>
  PluginLoader.layer.pipe(
    Layer.provideMerge(WasmRuntime.layer(options.runtime)),
    Layer.provideMerge(HostFunctions.layer),
    Layer.provide(NodeFileSystem.layer)
  )

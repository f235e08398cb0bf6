/**
 * ndp-engine: run Navidrome-compatible WebAssembly plugins from an Effect server.
 *
 * Provide `Engine.layer()`, load plugins with `PluginLoader`, and talk to them through the typed
 * capability clients (`MetadataAgent.fromPlugin`, `Scrobbler.fromPlugin`).
 */
export * as ArtworkSettings from "./server/ArtworkSettings.js"
export * as Capabilities from "./capabilities/Capabilities.js"
export * as Engine from "./Engine.js"
export * as HostCodec from "./host/HostCodec.js"
export * as HostFunctions from "./host/HostFunctions.js"
export * as HostServices from "./host/HostServices.js"
export * as LibraryCatalog from "./server/LibraryCatalog.js"
export * as Lifecycle from "./capabilities/Lifecycle.js"
export * as Manifest from "./manifest/Manifest.js"
export * as ManagerConfig from "./manager/ManagerConfig.js"
export * as MetadataAgent from "./capabilities/MetadataAgent.js"
export * as MetadataAgents from "./manager/MetadataAgents.js"
export * as NetworkPolicy from "./host/network/NetworkPolicy.js"
export * as EmbeddedLibrary from "./server/embedded/EmbeddedLibrary.js"
export * as PluginConfig from "./manifest/PluginConfig.js"
export * as PluginError from "./runtime/PluginError.js"
export * as PluginLoader from "./loader/PluginLoader.js"
export * as PluginPackage from "./package/PluginPackage.js"
export * as PluginManager from "./manager/PluginManager.js"
export * as Registry from "./manager/Registry.js"
export * as Scrobbler from "./capabilities/Scrobbler.js"
export * as Scrobblers from "./manager/Scrobblers.js"
export * as SubsonicRouter from "./server/SubsonicRouter.js"
export * as UserDirectory from "./server/UserDirectory.js"
export * as WasmRuntime from "./runtime/WasmRuntime.js"
export * as WebSocketService from "./host/websocket/WebSocketService.js"

/**
 * Loads a plugin package into the runtime: read the package, decode the manifest, compile, check
 * imports against permissions, validate config, build the host services, instantiate, and run
 * `nd_on_init`. Everything the plugin owns lives in the `Scope` it is loaded in.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as LogLevel from "effect/LogLevel"
import * as Scope from "effect/Scope"
import { basename } from "node:path"
import { type CapabilityName, detectCapabilities } from "../capabilities/Capabilities.js"
import { runInit } from "../capabilities/Lifecycle.js"
import * as PluginOwnership from "../cluster/PluginOwnership.js"
import {
  type AccessList,
  collectMounts,
  HostFunctions,
  isAllowed,
  makeHandlers,
  type PluginContext
} from "../host/HostFunctions.js"
import * as ConfigService from "../host/config/ConfigService.js"
import * as CacheService from "../host/cache/CacheService.js"
import { lookupFunction } from "../host/cache/CacheAnswers.js"
import * as KvStoreService from "../host/kvstore/KvStoreService.js"
import { encodeError, type HostFunctionHandler } from "../host/HostCodec.js"
import { decodeGrants } from "../host/network/NetworkPolicy.js"
import { checkCapabilityRules, decodeManifest, type Manifest } from "../manifest/Manifest.js"
import { flattenConfig, validateConfig } from "../manifest/PluginConfig.js"
import {
  type PackageContents,
  type PackageLimits,
  pluginIdFromFileName,
  readPackageBytes,
  readPackageFile
} from "../package/PluginPackage.js"
import type { PluginCallError } from "../runtime/PluginError.js"
import { PluginLoadError, PluginUnavailableError } from "../runtime/PluginError.js"
import type { WasmImport } from "../runtime/WasmBinary.js"
import { type CallOptions, type RunningPlugin, WasmRuntime } from "../runtime/WasmRuntime.js"
import type { LogBudget } from "../runtime/abi/protocol.js"
import { planImports } from "./Linker.js"

/** How to load one plugin. */
export interface LoadOptions {
  /** The plugin's configuration as a JSON object; validated against the manifest's schema. */
  readonly config?: unknown
  /** Per-call timeout for this plugin (default: the runtime's). */
  readonly timeoutMs?: number | undefined
  /** Linear-memory cap for this plugin (default: the runtime's). */
  readonly memoryLimitBytes?: number | undefined
  /** Give every call a fresh instance instead of reusing one. */
  readonly freshInstance?: boolean | undefined
  /** The most verbose guest log level passed on to Effect's logger (default Info). */
  readonly logLevel?: LogLevel.LogLevel | undefined
  /** How much log and stdout/stderr output the plugin may send (default: the runtime's `logBudget`). */
  readonly logBudget?: Partial<LogBudget> | undefined
  readonly packageLimits?: PackageLimits | undefined
  /** The users the administrator allows this plugin to see and act for (default: none). */
  readonly users?: AccessList<string> | undefined
  /** The libraries the administrator allows this plugin to see (default: none). */
  readonly libraries?: AccessList<number> | undefined
  /**
   * Whether the administrator lets the plugin write to the library folders it may see (with
   * `library.filesystem`); default false, read-only. Writes stay inside each library's folder.
   */
  readonly allowLibraryWrite?: boolean | undefined
  /**
   * The private networks this plugin may reach, as CIDRs (`192.168.1.0/24`, `::1/128`), addresses
   * or host names (default: none). Without a grant every loopback, private, link-local and other
   * non-public address is refused after DNS resolution, whatever the manifest lists.
   */
  readonly allowedNetworks?: ReadonlyArray<string> | undefined
}

/** A loaded, running plugin. Valid until the scope it was loaded in closes. */
export interface LoadedPlugin {
  readonly id: string
  readonly sha256: string
  readonly manifest: Manifest
  readonly capabilities: ReadonlyArray<CapabilityName>
  readonly exports: ReadonlySet<string>
  readonly warnings: ReadonlyArray<string>
  /** Whether the administrator allowed this user for the plugin. */
  readonly allowsUser: (username: string) => boolean
  /** Whether the administrator allowed this library for the plugin. */
  readonly allowsLibrary: (libraryId: number) => boolean
  /** Calls an export with raw input bytes (a string is sent as UTF-8). */
  readonly call: (
    exportName: string,
    input?: Uint8Array | string,
    options?: CallOptions
  ) => Effect.Effect<Uint8Array | null, PluginCallError>
}

/** What `inspect` reports about a package without running it. */
export interface InspectReport {
  readonly id: string
  readonly sha256: string
  readonly manifest: Manifest | undefined
  readonly capabilities: ReadonlyArray<CapabilityName>
  readonly exports: ReadonlyArray<string>
  readonly imports: ReadonlyArray<{ readonly module: string; readonly name: string }>
  readonly problems: ReadonlyArray<string>
  readonly warnings: ReadonlyArray<string>
}

export class PluginLoader extends Context.Tag("ndp-engine/PluginLoader")<
  PluginLoader,
  {
    /** Loads the `.ndp` file at `path`; the plugin ID is its file name without `.ndp`. */
    readonly loadFile: (
      path: string,
      options?: LoadOptions
    ) => Effect.Effect<LoadedPlugin, PluginLoadError, Scope.Scope>
    /** Loads a package held in memory under the given plugin ID. */
    readonly loadBytes: (
      id: string,
      bytes: Uint8Array,
      options?: LoadOptions
    ) => Effect.Effect<LoadedPlugin, PluginLoadError, Scope.Scope>
    /** Reads and checks a package without running any of its code. */
    readonly inspectFile: (path: string) => Effect.Effect<InspectReport, PluginLoadError>
  }
>() {}

const encoder = new TextEncoder()

const make = Effect.gen(function* () {
  const runtime = yield* WasmRuntime
  const registry = yield* HostFunctions
  // On a cluster, nd_on_init runs on the plugin's owner only (decision 0038).
  const ownership = yield* PluginOwnership.current
  const fs = yield* FileSystem.FileSystem

  const fromPackage = (id: string) => (error: { readonly message: string }) =>
    new PluginLoadError({ pluginId: id, reason: "Package", message: `plugin ${id}: ${error.message}` })

  const readFile = (path: string, limits?: PackageLimits) =>
    readPackageFile(path, limits).pipe(
      Effect.provideService(FileSystem.FileSystem, fs),
      Effect.mapError((error) => fromPackage(basename(path).replace(/\.ndp$/, ""))(error))
    )

  const manifestOf = (id: string, json: string) =>
    decodeManifest(json).pipe(
      Effect.mapError(
        (error) =>
          new PluginLoadError({ pluginId: id, reason: "Manifest", message: `plugin ${id}: ${error.message}` })
      )
    )

  const linkError = (id: string, imports: ReadonlyArray<WasmImport>, manifest: Manifest) => {
    const { plan, problems } = planImports(manifest, imports, registry.providers)
    const [first] = problems
    if (first === undefined) return Effect.succeed(plan)
    return Effect.fail(
      new PluginLoadError({
        pluginId: id,
        reason: "Link",
        message: `plugin ${id} cannot be linked: ${problems.map((p) => p.message).join("; ")}`,
        missingImport: { module: first.module, name: first.name },
        ...(first.permission === undefined ? {} : { permission: first.permission })
      })
    )
  }

  const load = (id: string, contents: PackageContents, options: LoadOptions) =>
    Effect.gen(function* () {
      const manifest = yield* manifestOf(id, contents.manifestJson)
      const compiled = yield* runtime.compile(id, contents.sha256, contents.wasm, options.memoryLimitBytes)
      const plan = yield* linkError(id, compiled.shape.imports, manifest)
      const exports = new Set(compiled.shape.exports.filter((e) => e.kind === "function").map((e) => e.name))
      const capabilities = detectCapabilities(exports)
      const { warnings } = yield* checkCapabilityRules(manifest, capabilities).pipe(
        Effect.mapError(
          (error) =>
            new PluginLoadError({
              pluginId: id,
              reason: "Manifest",
              message: `plugin ${id}: ${error.message}`
            })
        )
      )
      for (const warning of warnings) yield* Effect.logWarning(warning)
      const config = yield* validateConfig(manifest, options.config ?? {}).pipe(
        Effect.mapError(
          (error) =>
            new PluginLoadError({ pluginId: id, reason: "Config", message: `plugin ${id}: ${error.message}` })
        )
      )
      const allowedNetworks = yield* decodeGrants(options.allowedNetworks ?? []).pipe(
        Effect.mapError(
          (error) =>
            new PluginLoadError({ pluginId: id, reason: "Config", message: `plugin ${id}: ${error.message}` })
        )
      )
      const users = options.users ?? []
      // Callbacks (scheduler, WebSocket) may be set up before the plugin is running: they wait.
      const self = yield* Deferred.make<RunningPlugin, PluginUnavailableError>()
      const context: PluginContext = {
        callPlugin: (exportName, input) =>
          Effect.flatMap(Deferred.await(self), (running) => running.call(exportName, encoder.encode(input))),
        pluginId: id,
        manifest,
        config: flattenConfig(config),
        dataFolder: registry.dataFolder,
        users,
        libraries: options.libraries ?? [],
        allowLibraryWrite: options.allowLibraryWrite === true,
        allowedNetworks
      }
      // Host services live in their own scope, closed before the instance is unregistered (see
      // below), so that on unload they can still call the plugin (e.g. a WebSocket's on_close).
      const servicesScope = yield* Effect.acquireRelease(Scope.make(), (scope, exit) =>
        Scope.close(scope, exit)
      )
      const handlers: Record<string, HostFunctionHandler> = yield* makeHandlers(
        registry.providers,
        context,
        new Set([...plan.userFunctions, ...(plan.envHttp ? ["http_request"] : [])])
      ).pipe(Scope.extend(servicesScope))
      const mounts = yield* collectMounts(registry.providers, context)
      const kvReads = KvStoreService.servedInWorker(handlers)
      const cacheReads = CacheService.servedInWorker(handlers)
      // The worker's lookups for its cache copies: not importable, so only the worker asks.
      const internal: Record<string, HostFunctionHandler> =
        cacheReads.lookup === undefined ? {} : { [lookupFunction]: cacheReads.lookup }
      const running = yield* runtime
        .instantiate({
          pluginId: id,
          compiled,
          config: context.config,
          userFunctions: plan.userFunctions,
          workerFunctions: [
            ...ConfigService.servedInWorker(registry.providers, plan.userFunctions),
            ...[...kvReads.functions, ...cacheReads.functions].filter((name) =>
              plan.userFunctions.includes(name)
            )
          ],
          localKvStore: kvReads.store,
          localCache: cacheReads.index,
          envHttp: plan.envHttp,
          host: (fn, payload, call) => {
            const handler = handlers[fn] ?? internal[fn]
            return handler === undefined
              ? Effect.succeed(encodeError(`host function ${fn} is not available to plugin ${id}`))
              : handler(payload, call)
          },
          timeoutMs: options.timeoutMs,
          freshInstance: options.freshInstance,
          logLevel: options.logLevel,
          logBudget: options.logBudget,
          mounts
        })
        .pipe(
          Effect.tapError(() =>
            Deferred.fail(
              self,
              new PluginUnavailableError({ pluginId: id, export: "", message: `plugin ${id} failed to load` })
            )
          )
        )
      yield* Deferred.succeed(self, running)
      // Finalizers run last-added first: this one runs before the instance's own.
      yield* Effect.addFinalizer((exit) => Scope.close(servicesScope, exit))
      const plugin: LoadedPlugin = {
        id,
        sha256: contents.sha256,
        manifest,
        capabilities,
        exports,
        warnings,
        allowsUser: (username) => isAllowed(users, username),
        allowsLibrary: (libraryId) => isAllowed(context.libraries, libraryId),
        call: (exportName, input = new Uint8Array(0), callOptions) =>
          running.call(exportName, typeof input === "string" ? encoder.encode(input) : input, callOptions)
      }
      if (capabilities.includes("Lifecycle")) yield* ownership.background(id, runInit(plugin))
      yield* Effect.logDebug(`plugin loaded (${capabilities.join(", ") || "no capabilities"})`)
      return plugin
    }).pipe(Effect.annotateLogs("plugin", id), Effect.withSpan("PluginLoader.load", { attributes: { id } }))

  const loadFile = (path: string, options: LoadOptions = {}) =>
    Effect.gen(function* () {
      const file = yield* readFile(path, options.packageLimits)
      return yield* load(file.id, file, options)
    })

  const loadBytes = (id: string, bytes: Uint8Array, options: LoadOptions = {}) =>
    Effect.gen(function* () {
      const pluginId = yield* pluginIdFromFileName(id).pipe(Effect.mapError(fromPackage(id)))
      const contents = yield* readPackageBytes(bytes, options.packageLimits).pipe(
        Effect.mapError(fromPackage(id))
      )
      return yield* load(pluginId, contents, options)
    })

  const inspectFile = (path: string) =>
    Effect.gen(function* () {
      const file = yield* readFile(path)
      const problems: Array<string> = []
      const manifest = yield* manifestOf(file.id, file.manifestJson).pipe(
        Effect.tapError((error) => Effect.sync(() => problems.push(error.message))),
        Effect.option
      )
      const compiled = yield* runtime.compile(file.id, file.sha256, file.wasm)
      const exports = compiled.shape.exports.filter((e) => e.kind === "function").map((e) => e.name)
      const capabilities = detectCapabilities(new Set(exports))
      const warnings: Array<string> = []
      if (manifest._tag === "Some") {
        for (const p of planImports(manifest.value, compiled.shape.imports, registry.providers).problems) {
          problems.push(p.message)
        }
        yield* checkCapabilityRules(manifest.value, capabilities).pipe(
          Effect.match({
            onFailure: (error) => problems.push(error.message),
            onSuccess: (result) => warnings.push(...result.warnings)
          })
        )
      }
      return {
        id: file.id,
        sha256: file.sha256,
        manifest: manifest._tag === "Some" ? manifest.value : undefined,
        capabilities,
        exports,
        imports: compiled.shape.imports.map((i) => ({ module: i.module, name: i.name })),
        problems,
        warnings
      } satisfies InspectReport
    })

  return PluginLoader.of({
    loadFile: Effect.fn("PluginLoader.loadFile")(loadFile),
    loadBytes: Effect.fn("PluginLoader.loadBytes")(loadBytes),
    inspectFile: Effect.fn("PluginLoader.inspectFile")(inspectFile)
  })
})

/** The loader over a runtime, a host-function registry and a filesystem. */
export const layer: Layer.Layer<PluginLoader, never, WasmRuntime | HostFunctions | FileSystem.FileSystem> =
  Layer.effect(PluginLoader, make)

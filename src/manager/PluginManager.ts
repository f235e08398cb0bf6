/**
 * The plugin manager: keeps the set of running plugins equal to what the plugins folder and the
 * registry say, while calls keep flowing.
 *
 * Each loaded plugin is a *version* living in its own scope. Calls go through `use`, which pins
 * the current version until the call ends. A reload loads the new version first, switches new calls
 * to it, and closes the old version's scope only once its last pinned call has finished — so calls
 * already running complete on the old version and none fails because of the reload.
 *
 * Shutdown works the same way for every plugin at once, with a bound: new calls are refused at
 * once, calls already running get `drainTimeoutMs` to finish, then every version closes.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { resolve } from "node:path"
import type { CapabilityName } from "../capabilities/Capabilities.js"
import type { AccessList } from "../host/HostFunctions.js"
import { type LoadedPlugin, PluginLoader } from "../loader/PluginLoader.js"
import { decodeManifest, type Manifest } from "../manifest/Manifest.js"
import { validateConfig } from "../manifest/PluginConfig.js"
import { ManagerError } from "./ManagerError.js"
import type { ManagerOptions } from "./ManagerOptions.js"
import { decodeNetworkGrants } from "../host/network/NetworkPolicy.js"
import * as PluginsFolder from "./PluginsFolder.js"
import * as PluginVersions from "./PluginVersions.js"
import { loadKeyOf } from "./PluginVersions.js"
import { type PluginRecord, Registry, type RegistryError } from "./Registry.js"

export { ManagerError } from "./ManagerError.js"
export { defaultDrainTimeoutMs, defaultManagerOptions, type ManagerOptions } from "./ManagerOptions.js"
export { CanonicalNetworkGrant as NetworkGrant, decodeNetworkGrants } from "../host/network/NetworkPolicy.js"
export { idOfPath } from "./PluginsFolder.js"

/** What the manager reports about one plugin. */
export interface PluginStatus {
  readonly id: string
  readonly name: string
  readonly version: string
  readonly enabled: boolean
  readonly loaded: boolean
  readonly capabilities: ReadonlyArray<CapabilityName>
  readonly lastError: string | null
  readonly path: string
  readonly sha256: string
  readonly config: Readonly<Record<string, unknown>>
  readonly users: AccessList<string>
  readonly libraries: AccessList<number>
  /** The networks the administrator grants the plugin (see `NetworkGrant`). */
  readonly allowedNetworks: ReadonlyArray<string>
  /** Whether the plugin may write to its library folders (see `setAllowWrite`). */
  readonly allowWrite: boolean
}

export class PluginManager extends Context.Tag("ndp-engine/PluginManager")<
  PluginManager,
  {
    readonly list: Effect.Effect<ReadonlyArray<PluginStatus>, ManagerError>
    readonly get: (id: string) => Effect.Effect<PluginStatus, ManagerError>
    /** Enables a plugin after its permission gates pass, and (live) loads it. */
    readonly enable: (id: string) => Effect.Effect<PluginStatus, ManagerError>
    readonly disable: (id: string) => Effect.Effect<PluginStatus, ManagerError>
    /** Validates the config against the manifest's schema, stores it, and reloads the plugin. */
    readonly setConfig: (id: string, config: unknown) => Effect.Effect<PluginStatus, ManagerError>
    readonly setUsers: (id: string, users: AccessList<string>) => Effect.Effect<PluginStatus, ManagerError>
    readonly setLibraries: (
      id: string,
      libraries: AccessList<number>
    ) => Effect.Effect<PluginStatus, ManagerError>
    /**
     * Replaces the networks granted to the plugin (IP addresses, CIDR blocks, host names; see
     * `NetworkGrant`), and reloads it. Fails with `InvalidNetwork` naming the first bad entry.
     */
    readonly setNetworks: (
      id: string,
      networks: ReadonlyArray<string>
    ) => Effect.Effect<PluginStatus, ManagerError>
    /** Syncs the folder with the registry, then loads what is enabled and not loaded. */
    /**
     * Lets the plugin write to the library folders it sees (with `library.filesystem`), or takes
     * that back, and reloads it. Read-only is the default; writes stay jailed in each library.
     */
    readonly setAllowWrite: (id: string, allowWrite: boolean) => Effect.Effect<PluginStatus, ManagerError>
    readonly rescan: Effect.Effect<void, ManagerError>
    /**
     * Runs `f` with the plugin's current version, which stays alive until `f` ends even if the
     * plugin is reloaded or disabled meanwhile.
     */
    readonly use: <A, E, R>(
      id: string,
      f: (plugin: LoadedPlugin) => Effect.Effect<A, E, R>
    ) => Effect.Effect<A, E | ManagerError, R>
    /** IDs of the plugins loaded now. */
    readonly loadedIds: Effect.Effect<ReadonlyArray<string>>
  }
>() {}

const make = (options: ManagerOptions) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const loader = yield* PluginLoader
    const folder = resolve(options.folder)

    const registryError = (id: string) => (error: RegistryError) =>
      new ManagerError({ reason: "Registry", pluginId: id, message: error.message })

    const record = (id: string) =>
      registry.get(id).pipe(
        Effect.mapError(registryError(id)),
        Effect.flatMap(
          Option.match({
            onNone: () =>
              Effect.fail(
                new ManagerError({
                  reason: "NotFound",
                  pluginId: id,
                  message: `no plugin ${id} is registered; put ${id}.ndp in ${folder} and rescan`
                })
              ),
            onSome: Effect.succeed
          })
        )
      )

    const update = (id: string, patch: Parameters<Registry["Type"]["update"]>[1]) =>
      registry.update(id, patch).pipe(Effect.mapError(registryError(id)))

    const manifestOf = (r: PluginRecord): Effect.Effect<Option.Option<Manifest>> =>
      Effect.option(decodeManifest(r.manifest))

    const statusOf = (r: PluginRecord): Effect.Effect<PluginStatus> =>
      Effect.map(manifestOf(r), (manifest) => {
        const current = versions.current(r.id)
        return {
          id: r.id,
          name: Option.match(manifest, { onNone: () => r.id, onSome: (m) => m.name }),
          version: Option.match(manifest, { onNone: () => "", onSome: (m) => m.version }),
          enabled: r.enabled,
          loaded: current !== undefined,
          capabilities: current?.plugin.capabilities ?? [],
          lastError: r.lastError,
          path: r.path,
          sha256: r.sha256,
          config: r.config,
          users: r.users,
          libraries: r.libraries,
          allowedNetworks: r.allowedNetworks,
          allowWrite: r.allowWrite
        }
      })

    const versions = yield* PluginVersions.make(loader, options, update)
    const { load, unload } = versions

    /** Loads, reloads or unloads one plugin so that it matches its registry row. */
    const reconcile = (r: PluginRecord) =>
      Effect.suspend(() => {
        if (!options.live) return Effect.void
        const current = versions.current(r.id)
        if (!r.enabled) return current === undefined ? Effect.void : unload(r.id)
        if (current !== undefined && current.loadKey === loadKeyOf(r)) return Effect.void
        return Effect.ignore(load(r))
      })

    const files = PluginsFolder.make({
      folder,
      options,
      registry,
      versions,
      registryError,
      update,
      reconcile,
      rescan: Effect.suspend(() => rescan)
    })

    const reconcileAll = Effect.gen(function* () {
      const records = yield* registry.list.pipe(Effect.mapError(registryError("")))
      // Rows another process deleted (e.g. `ndp plugins rescan` after a file was removed).
      const known = new Set(records.map((r) => r.id))
      for (const id of versions.ids()) {
        if (!known.has(id)) {
          yield* unload(id)
          versions.forget(id)
        }
      }
      yield* Effect.forEach(records, reconcile, { concurrency: options.loadConcurrency, discard: true })
    })

    const rescan = Effect.gen(function* () {
      const listed = files.listFolder()
      if (Either.isLeft(listed)) return yield* files.unreadableFolder(listed.left)
      for (const file of listed.right) yield* files.syncFile(file.id, file.path)
      yield* files.removeMissing(new Set(listed.right.map((f) => f.id)))
      yield* reconcileAll
    }).pipe(Effect.withSpan("PluginManager.rescan"))

    const gate = (r: PluginRecord) =>
      Effect.gen(function* () {
        const manifest = yield* decodeManifest(r.manifest).pipe(
          Effect.mapError(
            (error) =>
              new ManagerError({
                reason: "LoadFailed",
                pluginId: r.id,
                message: `plugin ${r.id} has an unreadable manifest: ${error.message}`
              })
          )
        )
        if (manifest.permissions.users !== undefined && r.users !== "all" && r.users.length === 0) {
          return yield* new ManagerError({
            reason: "PermissionGate",
            pluginId: r.id,
            message: `plugin ${r.id} needs the users permission: allow all users or at least one user first`
          })
        }
        if (manifest.permissions.library !== undefined && r.libraries !== "all" && r.libraries.length === 0) {
          return yield* new ManagerError({
            reason: "PermissionGate",
            pluginId: r.id,
            message: `plugin ${r.id} needs the library permission: allow all libraries or at least one library first`
          })
        }
        return manifest
      })

    const apply = (id: string) =>
      Effect.gen(function* () {
        const r = yield* record(id)
        if (options.live && r.enabled) {
          const current = versions.current(id)
          if (current === undefined || current.loadKey !== loadKeyOf(r)) yield* load(r)
        }
        return yield* statusOf(yield* record(id))
      })

    const enable = (id: string) =>
      Effect.gen(function* () {
        const r = yield* record(id)
        yield* gate(r)
        yield* update(id, { enabled: true, lastError: null })
        return yield* apply(id)
      })

    const disable = (id: string) =>
      Effect.gen(function* () {
        yield* record(id)
        yield* update(id, { enabled: false })
        yield* unload(id)
        return yield* statusOf(yield* record(id))
      })

    const setConfig = (id: string, config: unknown) =>
      Effect.gen(function* () {
        const r = yield* record(id)
        const manifest = yield* decodeManifest(r.manifest).pipe(
          Effect.mapError(
            (e) =>
              new ManagerError({
                reason: "InvalidConfig",
                pluginId: id,
                message: `cannot read the manifest: ${e.message}`
              })
          )
        )
        // As Navidrome: a plugin without a config schema has nothing to configure, so any save is
        // a mistake (usually the wrong plugin ID) rather than something to store unvalidated.
        if (manifest.config === undefined) {
          return yield* new ManagerError({
            reason: "InvalidConfig",
            pluginId: id,
            message: `plugin ${id} has no configurable options (its manifest declares no config schema); nothing was saved`
          })
        }
        const valid = yield* validateConfig(manifest, config).pipe(
          Effect.mapError(
            (e) => new ManagerError({ reason: "InvalidConfig", pluginId: id, message: e.message })
          )
        )
        yield* update(id, { config: valid })
        return yield* apply(id)
      })

    const setAccess = (
      id: string,
      patch: {
        users?: AccessList<string>
        libraries?: AccessList<number>
        allowedNetworks?: ReadonlyArray<string>
        allowWrite?: boolean
      }
    ) =>
      Effect.gen(function* () {
        yield* record(id)
        yield* update(id, patch)
        return yield* apply(id)
      })

    // Decoded here, where grants enter the manager, so the registry only ever holds canonical ones.
    const setNetworks = Effect.fn("PluginManager.setNetworks")(function* (
      id: string,
      networks: ReadonlyArray<string>
    ) {
      const allowedNetworks = yield* Either.match(decodeNetworkGrants(networks), {
        onLeft: (why) =>
          Effect.fail(
            new ManagerError({
              reason: "InvalidNetwork",
              pluginId: id,
              message: `cannot grant plugin ${id} this network: ${why}`
            })
          ),
        onRight: Effect.succeed
      })
      return yield* setAccess(id, { allowedNetworks })
    })

    yield* rescan.pipe(
      Effect.catchAll((error) => Effect.logError(`initial plugin scan failed: ${error.message}`))
    )

    if (options.autoReload) yield* files.watchFolder

    if (options.live) {
      // Changes made by another process (e.g. `ndp plugins enable`) reach a running server here.
      let seen = yield* Effect.orElseSucceed(registry.version, () => "")
      yield* Effect.forkScoped(
        Effect.gen(function* () {
          const now = yield* Effect.orElseSucceed(registry.version, () => seen)
          if (now !== seen) {
            seen = now
            yield* Effect.ignore(reconcileAll)
          }
        }).pipe(Effect.repeat(Schedule.spaced(options.pollMs)))
      )
    }

    return PluginManager.of({
      list: Effect.flatMap(registry.list.pipe(Effect.mapError(registryError(""))), (records) =>
        Effect.forEach(records, statusOf)
      ),
      get: Effect.fn("PluginManager.get")((id: string) => Effect.flatMap(record(id), statusOf)),
      enable: Effect.fn("PluginManager.enable")(enable),
      disable: Effect.fn("PluginManager.disable")(disable),
      setConfig: Effect.fn("PluginManager.setConfig")(setConfig),
      setUsers: Effect.fn("PluginManager.setUsers")((id: string, users: AccessList<string>) =>
        setAccess(id, { users })
      ),
      setLibraries: Effect.fn("PluginManager.setLibraries")((id: string, libraries: AccessList<number>) =>
        setAccess(id, { libraries })
      ),
      setAllowWrite: Effect.fn("PluginManager.setAllowWrite")((id: string, allowWrite: boolean) =>
        setAccess(id, { allowWrite })
      ),
      setNetworks,
      rescan,
      use: versions.use,
      loadedIds: versions.loadedIds
    })
  })

/** The manager over a plugins folder; it needs the engine (`PluginLoader`) and a `Registry`. */
export const layer = (options: ManagerOptions): Layer.Layer<PluginManager, never, Registry | PluginLoader> =>
  Layer.scoped(PluginManager, make(options))

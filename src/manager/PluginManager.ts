/**
 * The plugin manager: keeps the set of running plugins equal to what the plugins folder and the
 * registry say, while calls keep flowing.
 *
 * Each loaded plugin is a *version* living in its own scope. Calls go through `use`, which pins
 * the current version until the call ends. A reload loads the new version first, switches new calls
 * to it, and closes the old version's scope only once its last pinned call has finished — so calls
 * already running complete on the old version and none fails because of the reload.
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberMap from "effect/FiberMap"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import type * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import { mkdirSync, readdirSync, readFileSync, statSync, watch } from "node:fs"
import { basename, join, resolve } from "node:path"
import type { CapabilityName } from "../capabilities/Capabilities.js"
import type { AccessList } from "../host/HostFunctions.js"
import { type LoadedPlugin, PluginLoader } from "../loader/PluginLoader.js"
import { decodeManifest, type Manifest } from "../manifest/Manifest.js"
import { validateConfig } from "../manifest/PluginConfig.js"
import { pluginIdFromFileName, readPackageBytes } from "../package/PluginPackage.js"
import { type PluginRecord, Registry, type RegistryError } from "./Registry.js"

/** A manager operation failed; `reason` says why, `message` says what to do. */
export class ManagerError extends Schema.TaggedError<ManagerError>()("ManagerError", {
  reason: Schema.Literal(
    "NotFound",
    "NotLoaded",
    "PermissionGate",
    "InvalidConfig",
    "LoadFailed",
    "Registry"
  ),
  pluginId: Schema.String,
  message: Schema.String
}) {}

/** Settings of the manager. */
export interface ManagerOptions {
  /** The plugins folder (`*.ndp`). */
  readonly folder: string
  /** Load plugins (true for a server; false for tools that only edit the registry). */
  readonly live: boolean
  /** Watch the folder and act on changes. */
  readonly autoReload: boolean
  /** Quiet time per plugin before a folder change is acted on. */
  readonly debounceMs: number
  /** How often the registry is checked for changes made by other processes (e.g. `ndp plugins`). */
  readonly pollMs: number
  /** How many plugins load at once on start. */
  readonly loadConcurrency: number
  /** Per-plugin call timeouts, by plugin ID. */
  readonly timeoutsMs: Readonly<Record<string, number>>
  /** Per-plugin memory limits, by plugin ID. */
  readonly memoryBytes: Readonly<Record<string, number>>
  /** The most verbose guest log level passed on (default Info). */
  readonly logLevel?: LogLevel.LogLevel | undefined
}

export const defaultManagerOptions = (folder: string): ManagerOptions => ({
  folder,
  live: true,
  autoReload: false,
  debounceMs: 2_000,
  pollMs: 1_000,
  loadConcurrency: 4,
  timeoutsMs: {},
  memoryBytes: {}
})

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
}

interface Version {
  readonly plugin: LoadedPlugin
  readonly scope: Scope.CloseableScope
  /** What it was loaded from, to tell whether the registry now asks for something else. */
  readonly loadKey: string
  inflight: number
  retired: boolean
  readonly drained: Deferred.Deferred<void>
}

interface Slot {
  current: Version | undefined
  readonly lock: Effect.Semaphore
}

const loadKeyOf = (record: PluginRecord): string =>
  JSON.stringify([record.path, record.sha256, record.config, record.users, record.libraries])

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
    /** Syncs the folder with the registry, then loads what is enabled and not loaded. */
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
    const managerScope = yield* Effect.scope
    const background = yield* FiberSet.make()
    const slots = new Map<string, Slot>()
    const folder = resolve(options.folder)

    const slotOf = (id: string): Slot => {
      let slot = slots.get(id)
      if (slot === undefined) {
        slot = { current: undefined, lock: Effect.unsafeMakeSemaphore(1) }
        slots.set(id, slot)
      }
      return slot
    }

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
        const current = slots.get(r.id)?.current
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
          libraries: r.libraries
        }
      })

    /** Retires a version: closes its scope now if idle, else once its last call ends. */
    const retire = (version: Version | undefined) =>
      Effect.gen(function* () {
        if (version === undefined || version.retired) return
        version.retired = true
        const close = Scope.close(version.scope, Exit.void)
        if (version.inflight === 0) return yield* close
        yield* FiberSet.run(background, Effect.zipRight(Deferred.await(version.drained), close))
      })

    const use = <A, E, R>(id: string, f: (plugin: LoadedPlugin) => Effect.Effect<A, E, R>) =>
      Effect.acquireUseRelease(
        Effect.suspend(() => {
          const version = slots.get(id)?.current
          if (version === undefined) {
            return Effect.fail(
              new ManagerError({
                reason: "NotLoaded",
                pluginId: id,
                message: `plugin ${id} is not loaded; enable it first`
              })
            )
          }
          version.inflight++
          return Effect.succeed(version)
        }),
        (version) => f(version.plugin),
        (version) =>
          Effect.suspend(() => {
            version.inflight--
            return version.retired && version.inflight === 0
              ? Deferred.succeed(version.drained, undefined)
              : Effect.void
          })
      )

    /** Loads the record's package as a new version and makes it current; on failure disables it. */
    const load = (r: PluginRecord) =>
      slotOf(r.id).lock.withPermits(1)(
        Effect.gen(function* () {
          const slot = slotOf(r.id)
          // Another caller may have loaded exactly this while we waited for the lock.
          if (slot.current !== undefined && slot.current.loadKey === loadKeyOf(r)) return
          const scope = yield* Scope.fork(managerScope, ExecutionStrategy.sequential)
          const loaded = yield* loader
            .loadFile(r.path, {
              config: r.config,
              users: r.users,
              libraries: r.libraries,
              timeoutMs: options.timeoutsMs[r.id],
              memoryLimitBytes: options.memoryBytes[r.id],
              logLevel: options.logLevel
            })
            .pipe(Scope.extend(scope), Effect.either)
          if (loaded._tag === "Left" || loaded.right.sha256 !== r.sha256) {
            yield* Scope.close(scope, Exit.void)
            const message =
              loaded._tag === "Left"
                ? loaded.left.message
                : `plugin ${r.id} changed on disk since it was registered; rescan, then enable it again`
            yield* update(r.id, { enabled: false, lastError: message })
            yield* retire(slot.current)
            slot.current = undefined
            yield* Effect.logWarning(`plugin ${r.id} failed to load and was disabled: ${message}`)
            return yield* new ManagerError({ reason: "LoadFailed", pluginId: r.id, message })
          }
          const version: Version = {
            plugin: loaded.right,
            scope,
            loadKey: loadKeyOf(r),
            inflight: 0,
            retired: false,
            drained: yield* Deferred.make<void>()
          }
          const old = slot.current
          slot.current = version
          yield* retire(old)
          if (r.lastError !== null) yield* update(r.id, { lastError: null })
          yield* Effect.logInfo(
            `plugin ${r.id} loaded (${version.plugin.capabilities.join(", ") || "no capabilities"})`
          )
        }).pipe(Effect.annotateLogs("plugin", r.id))
      )

    const unload = (id: string) =>
      Effect.suspend(() => {
        const slot = slots.get(id)
        if (slot === undefined) return Effect.void
        return slot.lock.withPermits(1)(
          Effect.suspend(() => {
            const old = slot.current
            slot.current = undefined
            return retire(old)
          })
        )
      })

    /** Loads, reloads or unloads one plugin so that it matches its registry row. */
    const reconcile = (r: PluginRecord) =>
      Effect.suspend(() => {
        if (!options.live) return Effect.void
        const current = slots.get(r.id)?.current
        if (!r.enabled) return current === undefined ? Effect.void : unload(r.id)
        if (current !== undefined && current.loadKey === loadKeyOf(r)) return Effect.void
        return Effect.ignore(load(r))
      })

    /** Applies the folder's state of one file to the registry (contract of the `[Plugins]` folder). */
    const syncFile = (id: string, path: string) =>
      Effect.gen(function* () {
        const existing = yield* registry.get(id).pipe(Effect.mapError(registryError(id)))
        let bytes: Uint8Array
        try {
          if (!statSync(path).isFile()) return
          bytes = readFileSync(path)
        } catch {
          // Gone between listing and reading: the next event or rescan handles it.
          return
        }
        const sha256 = createHash("sha256").update(bytes).digest("hex")
        const contents = yield* Effect.either(readPackageBytes(bytes))
        const manifestJson = contents._tag === "Right" ? contents.right.manifestJson : ""
        const problem =
          contents._tag === "Left"
            ? contents.left.message
            : Option.match(yield* Effect.option(Effect.flip(decodeManifest(manifestJson))), {
                onNone: () => null,
                onSome: (error) => error.message
              })
        if (Option.isNone(existing)) {
          yield* registry
            .insert({ id, path, manifest: manifestJson, sha256, lastError: problem })
            .pipe(Effect.mapError(registryError(id)))
          yield* Effect.logInfo(`new plugin ${id} registered (disabled)`)
          return
        }
        const r = existing.value
        if (r.sha256 === sha256) {
          if (r.path !== path) yield* update(id, { path })
          return
        }
        // Changed content: disabled until re-enabled, as the reference server does.
        yield* update(id, { path, manifest: manifestJson, sha256, enabled: false, lastError: problem })
        yield* unload(id)
        yield* Effect.logInfo(`plugin ${id} changed on disk; disabled until enabled again`)
      })

    const removeMissing = (present: ReadonlySet<string>) =>
      Effect.gen(function* () {
        for (const r of yield* registry.list.pipe(Effect.mapError(registryError("")))) {
          if (present.has(r.id)) continue
          yield* unload(r.id)
          yield* registry.remove(r.id).pipe(Effect.mapError(registryError(r.id)))
          slots.delete(r.id)
          yield* Effect.logInfo(`plugin ${r.id} removed from the folder; unloaded and deregistered`)
        }
      })

    const listFolder = (): ReadonlyArray<{ id: string; path: string }> => {
      let names: Array<string>
      try {
        names = readdirSync(folder)
      } catch {
        return []
      }
      return names
        .filter((name) => name.endsWith(".ndp"))
        .flatMap((name) => {
          const id = Effect.runSync(Effect.option(pluginIdFromFileName(name)))
          return Option.isSome(id) ? [{ id: id.value, path: join(folder, name) }] : []
        })
    }

    const reconcileAll = Effect.gen(function* () {
      const records = yield* registry.list.pipe(Effect.mapError(registryError("")))
      // Rows another process deleted (e.g. `ndp plugins rescan` after a file was removed).
      const known = new Set(records.map((r) => r.id))
      for (const id of [...slots.keys()]) {
        if (!known.has(id)) {
          yield* unload(id)
          slots.delete(id)
        }
      }
      yield* Effect.forEach(records, reconcile, { concurrency: options.loadConcurrency, discard: true })
    })

    const rescan = Effect.gen(function* () {
      const files = listFolder()
      for (const file of files) yield* syncFile(file.id, file.path)
      yield* removeMissing(new Set(files.map((f) => f.id)))
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
          const current = slots.get(id)?.current
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
      }).pipe(Effect.withSpan("PluginManager.enable", { attributes: { id } }))

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
        const valid = yield* validateConfig(manifest, config).pipe(
          Effect.mapError(
            (e) => new ManagerError({ reason: "InvalidConfig", pluginId: id, message: e.message })
          )
        )
        yield* update(id, { config: valid })
        return yield* apply(id)
      })

    const setAccess = (id: string, patch: { users?: AccessList<string>; libraries?: AccessList<number> }) =>
      Effect.gen(function* () {
        yield* record(id)
        yield* update(id, patch)
        return yield* apply(id)
      })

    /** Acts on one file after a folder event: by whether it exists now, not by the event's kind. */
    const onFileSettled = (id: string) =>
      Effect.gen(function* () {
        const path = join(folder, `${id}.ndp`)
        let exists = false
        try {
          exists = statSync(path).isFile()
        } catch {
          exists = false
        }
        if (!exists) {
          yield* removeMissing(new Set(listFolder().map((f) => f.id)))
          return
        }
        yield* syncFile(id, path)
        const r = yield* registry.get(id).pipe(Effect.mapError(registryError(id)))
        if (Option.isSome(r)) yield* reconcile(r.value)
      }).pipe(
        Effect.catchAll((error) => Effect.logWarning(`could not act on a change of ${id}: ${error.message}`)),
        Effect.annotateLogs("plugin", id)
      )

    const watchFolder = Effect.gen(function* () {
      const pending = yield* FiberMap.make<string>()
      const runFork = Runtime.runFork(yield* Effect.runtime<never>())
      // Re-running a key interrupts its waiting fiber: each event restarts that plugin's quiet period,
      // so a file copied slowly is read once, after the copy has settled.
      const onEvent = (name: string | null) => {
        const id = name === null ? undefined : idOfPath(name)
        if (id !== undefined) {
          runFork(
            FiberMap.run(pending, id, Effect.zipRight(Effect.sleep(options.debounceMs), onFileSettled(id)))
          )
        }
      }
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          mkdirSync(folder, { recursive: true })
          return watch(folder, (_event, name) => onEvent(name))
        }),
        (watcher) => Effect.sync(() => watcher.close())
      )
    })

    // Shutdown: unload every plugin, letting running calls finish first.
    yield* Effect.addFinalizer(() =>
      Effect.forEach([...slots.keys()], (id) => Effect.ignore(unload(id)), { discard: true }).pipe(
        Effect.zipRight(FiberSet.awaitEmpty(background))
      )
    )

    yield* rescan.pipe(
      Effect.catchAll((error) => Effect.logError(`initial plugin scan failed: ${error.message}`))
    )

    if (options.autoReload) yield* watchFolder

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
      get: (id) => Effect.flatMap(record(id), statusOf),
      enable,
      disable,
      setConfig,
      setUsers: (id, users) => setAccess(id, { users }),
      setLibraries: (id, libraries) => setAccess(id, { libraries }),
      rescan,
      use,
      loadedIds: Effect.sync(() =>
        [...slots.entries()].filter(([, s]) => s.current !== undefined).map(([id]) => id)
      )
    })
  })

/** The manager over a plugins folder; it needs the engine (`PluginLoader`) and a `Registry`. */
export const layer = (options: ManagerOptions): Layer.Layer<PluginManager, never, Registry | PluginLoader> =>
  Layer.scoped(PluginManager, make(options))

/** Plugin ID of a path in the folder (for watchers). */
export const idOfPath = (path: string): string | undefined => {
  const name = basename(path)
  if (!name.endsWith(".ndp")) return undefined
  return Option.getOrUndefined(Effect.runSync(Effect.option(pluginIdFromFileName(name))))
}

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
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
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
import { type FSWatcher, mkdirSync, readdirSync, readFileSync, statSync, watch } from "node:fs"
import { basename, join, resolve } from "node:path"
import type { CapabilityName } from "../capabilities/Capabilities.js"
import type { AccessList } from "../host/HostFunctions.js"
import { type LoadedPlugin, PluginLoader } from "../loader/PluginLoader.js"
import { decodeManifest, type Manifest } from "../manifest/Manifest.js"
import { validateConfig } from "../manifest/PluginConfig.js"
import { pluginIdFromFileName, readPackageBytes } from "../package/PluginPackage.js"
import { decodeNetworkGrants } from "../host/network/NetworkPolicy.js"
import { type PluginRecord, Registry, type RegistryError } from "./Registry.js"

export { CanonicalNetworkGrant as NetworkGrant, decodeNetworkGrants } from "../host/network/NetworkPolicy.js"

/** A manager operation failed; `reason` says why, `message` says what to do. */
export class ManagerError extends Schema.TaggedError<ManagerError>()("ManagerError", {
  reason: Schema.Literal(
    "NotFound",
    "NotLoaded",
    "PermissionGate",
    "InvalidConfig",
    "InvalidNetwork",
    "LoadFailed",
    "Registry",
    "Watch"
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
  /**
   * On shutdown, how long calls already running may take to finish before every plugin is closed
   * anyway (default 10 s).
   */
  readonly drainTimeoutMs?: number | undefined
}

/** Default of `ManagerOptions.drainTimeoutMs`. */
export const defaultDrainTimeoutMs = 10_000

export const defaultManagerOptions = (folder: string): ManagerOptions => ({
  folder,
  live: true,
  autoReload: false,
  debounceMs: 2_000,
  pollMs: 1_000,
  loadConcurrency: 4,
  timeoutsMs: {},
  memoryBytes: {},
  drainTimeoutMs: defaultDrainTimeoutMs
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
  /** The networks the administrator grants the plugin (see `NetworkGrant`). */
  readonly allowedNetworks: ReadonlyArray<string>
}

interface Version {
  readonly id: string
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
  JSON.stringify([
    record.path,
    record.sha256,
    record.config,
    record.users,
    record.libraries,
    record.allowedNetworks
  ])

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
    const background = yield* FiberSet.make()
    // Versions live in a scope of their own, closed by the shutdown finalizer only after the drain:
    // children of the manager's scope would close before any finalizer added earlier could drain them.
    const versionsScope = yield* Scope.make(ExecutionStrategy.sequential)
    /** Retired versions whose scope is not closed yet (calls still running on them). */
    const draining = new Set<Version>()
    const slots = new Map<string, Slot>()
    const folder = resolve(options.folder)
    const drainTimeoutMs = options.drainTimeoutMs ?? defaultDrainTimeoutMs
    let shuttingDown = false

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
          libraries: r.libraries,
          allowedNetworks: r.allowedNetworks
        }
      })

    /** Closes a version's scope; a failing finalizer is logged, never left to stop the caller. */
    const closeVersion = (version: Version) =>
      Scope.close(version.scope, Exit.void).pipe(
        Effect.catchAllCause((cause) =>
          Effect.logError(`plugin ${version.id}: closing a retired version failed`, cause)
        ),
        Effect.ensuring(Effect.sync(() => draining.delete(version))),
        Effect.uninterruptible
      )

    /**
     * Retires a version that is no longer any slot's current one: closes its scope now if idle,
     * else once its last call ends. Uninterruptible, so an interrupted caller cannot leave a version
     * half closed.
     */
    const retire = (version: Version | undefined) =>
      Effect.uninterruptible(
        Effect.suspend(() => {
          if (version === undefined || version.retired) return Effect.void
          version.retired = true
          draining.add(version)
          if (version.inflight === 0) return closeVersion(version)
          // Forked from an uninterruptible region: only the wait may be interrupted (on shutdown).
          return FiberSet.run(
            background,
            Effect.zipRight(Effect.interruptible(Deferred.await(version.drained)), closeVersion(version))
          )
        })
      )

    /** Takes the slot's version out of service (new calls see none at once), then retires it. */
    const takeOut = (slot: Slot) =>
      Effect.suspend(() => {
        const old = slot.current
        slot.current = undefined
        return retire(old)
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
                message: shuttingDown
                  ? `plugin ${id} is not available: the plugin manager is shutting down; retry once it has restarted`
                  : `plugin ${id} is not loaded; enable it first`
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

    const shuttingDownError = (id: string) =>
      new ManagerError({
        reason: "LoadFailed",
        pluginId: id,
        message: `plugin ${id} was not loaded: the plugin manager is shutting down`
      })

    /**
     * Loads the record's package as a new version and makes it current. On failure the plugin is
     * left in its error state: out of service at once (the old version, if any, drains), then
     * disabled with `lastError` in the registry. Only the load itself can be interrupted; what
     * follows it runs to the end, so the slot and the registry always agree.
     */
    const load = (r: PluginRecord) =>
      slotOf(r.id).lock.withPermits(1)(
        Effect.uninterruptibleMask((restore) =>
          Effect.gen(function* () {
            const slot = slotOf(r.id)
            if (shuttingDown) return yield* shuttingDownError(r.id)
            // Another caller may have loaded exactly this while we waited for the lock.
            if (slot.current !== undefined && slot.current.loadKey === loadKeyOf(r)) return
            const scope = yield* Scope.fork(versionsScope, ExecutionStrategy.sequential)
            const loaded = yield* restore(
              loader
                .loadFile(r.path, {
                  config: r.config,
                  users: r.users,
                  libraries: r.libraries,
                  allowedNetworks: r.allowedNetworks,
                  timeoutMs: options.timeoutsMs[r.id],
                  memoryLimitBytes: options.memoryBytes[r.id],
                  logLevel: options.logLevel
                })
                .pipe(Scope.extend(scope))
            ).pipe(
              Effect.either,
              Effect.onInterrupt(() => Scope.close(scope, Exit.void))
            )
            if (loaded._tag === "Left" || loaded.right.sha256 !== r.sha256) {
              yield* Scope.close(scope, Exit.void)
              const message =
                loaded._tag === "Left"
                  ? loaded.left.message
                  : `plugin ${r.id} changed on disk since it was registered; rescan, then enable it again`
              // Out of service first: a version whose settings the registry no longer holds (a
              // narrowed grant, say) must not take one more call while the error is recorded.
              yield* takeOut(slot)
              yield* update(r.id, { enabled: false, lastError: message })
              yield* Effect.logWarning(`plugin ${r.id} failed to load and was disabled: ${message}`)
              return yield* new ManagerError({ reason: "LoadFailed", pluginId: r.id, message })
            }
            if (shuttingDown) {
              yield* Scope.close(scope, Exit.void)
              return yield* shuttingDownError(r.id)
            }
            const version: Version = {
              id: r.id,
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
          })
        ).pipe(Effect.annotateLogs("plugin", r.id))
      )

    const unload = (id: string) =>
      Effect.suspend(() => {
        const slot = slots.get(id)
        if (slot === undefined) return Effect.void
        return slot.lock.withPermits(1)(takeOut(slot))
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

    /** The folder's plugin files, or why the folder cannot be read. */
    const listFolder = (): Either.Either<ReadonlyArray<{ id: string; path: string }>, string> => {
      let names: Array<string>
      try {
        names = readdirSync(folder)
      } catch (error) {
        return Either.left(errorText(error))
      }
      return Either.right(
        names
          .filter((name) => name.endsWith(".ndp"))
          .flatMap((name) => {
            const id = Effect.runSync(Effect.option(pluginIdFromFileName(name)))
            return Option.isSome(id) ? [{ id: id.value, path: join(folder, name) }] : []
          })
      )
    }

    // A folder that cannot be read (unmounted, being replaced) is not an empty one: deregistering
    // every plugin would throw away the administrator's decisions for all of them.
    const unreadableFolder = (why: string) =>
      Effect.logWarning(
        `the plugins folder ${folder} cannot be read (${why}); registered plugins are kept as they are until it can`
      )

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
      const listed = listFolder()
      if (Either.isLeft(listed)) return yield* unreadableFolder(listed.left)
      for (const file of listed.right) yield* syncFile(file.id, file.path)
      yield* removeMissing(new Set(listed.right.map((f) => f.id)))
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

    const setAccess = (
      id: string,
      patch: {
        users?: AccessList<string>
        libraries?: AccessList<number>
        allowedNetworks?: ReadonlyArray<string>
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
          const listed = listFolder()
          if (Either.isLeft(listed)) return yield* unreadableFolder(listed.left)
          yield* removeMissing(new Set(listed.right.map((f) => f.id)))
          return
        }
        yield* syncFile(id, path)
        const r = yield* registry.get(id).pipe(Effect.mapError(registryError(id)))
        if (Option.isSome(r)) yield* reconcile(r.value)
      }).pipe(
        Effect.catchAll((error) => Effect.logWarning(`could not act on a change of ${id}: ${error.message}`)),
        Effect.annotateLogs("plugin", id)
      )

    /** The folder's identity, to notice it being removed or replaced under a running watcher. */
    const folderIdentity = (): Either.Either<string, string> => {
      try {
        const stat = statSync(folder)
        return stat.isDirectory()
          ? Either.right(`${stat.dev}:${stat.ino}`)
          : Either.left("it is not a folder")
      } catch (error) {
        return Either.left(errorText(error))
      }
    }

    const watchError = (message: string) => new ManagerError({ reason: "Watch", pluginId: "", message })

    /**
     * One watcher on the folder. Fails if it cannot start; once started, ends with the reason it
     * stopped: the watcher reported an error, or the folder was removed or replaced (on Linux the
     * watcher then goes quiet without an error). A restarted watcher resyncs the whole folder, since
     * changes made while nothing watched were missed.
     */
    const watchSession = (
      pending: FiberMap.FiberMap<string>,
      restarted: boolean,
      started: Deferred.Deferred<void>
    ) =>
      Effect.scoped(
        Effect.gen(function* () {
          const runFork = Runtime.runFork(yield* Effect.runtime<never>())
          const stopped = yield* Deferred.make<string>()
          const stop = (why: string) => Deferred.unsafeDone(stopped, Exit.succeed(why))
          if (!restarted) {
            try {
              mkdirSync(folder, { recursive: true })
            } catch {
              // Reported just below, by the identity check, with the reason.
            }
          }
          const identity = folderIdentity()
          if (Either.isLeft(identity)) {
            return yield* watchError(`cannot watch the plugins folder ${folder}: ${identity.left}`)
          }
          const checkFolder = () => {
            const now = folderIdentity()
            if (Either.isLeft(now)) stop(`the plugins folder ${folder} is gone (${now.left})`)
            else if (now.right !== identity.right) stop(`the plugins folder ${folder} was replaced`)
          }
          const folderName = basename(folder)
          // Re-running a key interrupts its waiting fiber: each event restarts that plugin's quiet
          // period, so a file copied slowly is read once, after the copy has settled.
          const onEvent = (name: string | null) => {
            if (name === folderName) return checkFolder()
            const id = name === null ? undefined : idOfPath(name)
            if (id !== undefined) {
              runFork(
                FiberMap.run(
                  pending,
                  id,
                  Effect.zipRight(Effect.sleep(options.debounceMs), onFileSettled(id))
                )
              )
            }
          }
          yield* Effect.acquireRelease(
            Effect.try({
              try: (): FSWatcher => {
                const watcher = watch(folder, (_event, name) => onEvent(name))
                watcher.on("error", (error) => stop(`the watcher on ${folder} failed: ${errorText(error)}`))
                return watcher
              },
              catch: (error) => watchError(`cannot watch the plugins folder ${folder}: ${errorText(error)}`)
            }),
            (watcher) => Effect.sync(() => watcher.close())
          )
          yield* Deferred.succeed(started, undefined)
          if (restarted) {
            yield* Effect.logInfo(`watching the plugins folder ${folder} again; rescanning it`)
            yield* rescan.pipe(
              Effect.catchAll((error) =>
                Effect.logWarning(`rescan after restarting the watcher failed: ${error.message}`)
              )
            )
          }
          yield* Effect.forkScoped(Effect.repeat(Effect.sync(checkFolder), Schedule.spaced(options.pollMs)))
          return yield* Deferred.await(stopped)
        })
      )

    /**
     * Keeps a watcher on the folder for as long as the manager runs: a watcher that stops is logged
     * and started again; one that cannot start is retried with back-off (0.1 s doubling to 30 s).
     */
    const watchFolder = Effect.gen(function* () {
      const pending = yield* FiberMap.make<string>()
      const retryStart = Schedule.exponential(Duration.millis(100)).pipe(
        Schedule.union(Schedule.spaced(Duration.seconds(30)))
      )
      // The manager is built once the first watcher runs (or failed to start and is being retried).
      const started = yield* Deferred.make<void>()
      let attempts = 0
      const supervised = Effect.suspend(() => watchSession(pending, attempts++ > 0, started)).pipe(
        // A defect in a session is one more reason to restart it, never the end of watching.
        Effect.catchAllDefect((defect) =>
          Effect.fail(watchError(`the watcher on ${folder} crashed: ${errorText(defect)}`))
        ),
        Effect.tapError((error) =>
          Effect.zipRight(
            Effect.logWarning(`${error.message}; trying again`),
            Deferred.succeed(started, undefined)
          )
        ),
        Effect.retry(retryStart),
        Effect.flatMap((why) => Effect.logWarning(`${why}; restarting the watcher`)),
        // A watcher that stops at once again and again must not spin: pause before each restart.
        Effect.zipLeft(Effect.sleep(Duration.millis(100))),
        Effect.forever
      )
      yield* Effect.forkScoped(supervised.pipe(Effect.ensuring(Deferred.succeed(started, undefined))))
      yield* Deferred.await(started)
    })

    // Shutdown: take every plugin out of service (new calls are refused), give the calls already
    // running `drainTimeoutMs` to finish, then close every version, finished or not.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        shuttingDown = true
        for (const slot of slots.values()) yield* takeOut(slot)
        const drained = yield* Effect.timeoutOption(
          // Finalizers run uninterruptibly; the wait must not, or the bound could never cut it.
          Effect.interruptible(FiberSet.awaitEmpty(background)),
          Duration.millis(drainTimeoutMs)
        )
        if (Option.isNone(drained)) {
          const running = [...draining].filter((v) => v.inflight > 0)
          const calls = running.reduce((n, v) => n + v.inflight, 0)
          yield* Effect.logWarning(
            `${calls} plugin call(s) still running after ${drainTimeoutMs} ms (${running.map((v) => v.id).join(", ")}); closing their plugins anyway`
          )
        }
        yield* FiberSet.clear(background)
        yield* Scope.close(versionsScope, Exit.void).pipe(
          Effect.catchAllCause((cause) => Effect.logError("closing the plugins on shutdown failed", cause))
        )
      })
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
      setNetworks,
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

const errorText = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : JSON.stringify(error)

/** Plugin ID of a path in the folder (for watchers). */
export const idOfPath = (path: string): string | undefined => {
  const name = basename(path)
  if (!name.endsWith(".ndp")) return undefined
  return Option.getOrUndefined(Effect.runSync(Effect.option(pluginIdFromFileName(name))))
}

/**
 * The running versions of the manager's plugins, and their draining. Each loaded plugin is a
 * *version* living in its own scope. Calls go through `use`, which pins the current version until
 * the call ends. A reload loads the new version first, switches new calls to it, and closes the old
 * version's scope only once its last pinned call has finished. Shutdown (the finalizer added by
 * `make`) takes every version out of service at once and gives running calls `drainTimeoutMs`.
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type { LoadedPlugin, PluginLoader } from "../loader/PluginLoader.js"
import { ManagerError } from "./ManagerError.js"
import { defaultDrainTimeoutMs, type ManagerOptions } from "./ManagerOptions.js"
import type { PluginRecord, Registry } from "./Registry.js"

/** One loaded version of a plugin. */
export interface Version {
  readonly id: string
  readonly plugin: LoadedPlugin
  readonly scope: Scope.CloseableScope
  /** What it was loaded from, to tell whether the registry now asks for something else. */
  readonly loadKey: string
  inflight: number
  retired: boolean
  readonly drained: Deferred.Deferred<void>
}

/** A plugin's place: its current version, and the lock its loads and unloads take. */
export interface Slot {
  current: Version | undefined
  readonly lock: Effect.Semaphore
}

/** What a version was loaded from: a record asking for anything else needs a reload. */
export const loadKeyOf = (record: PluginRecord): string =>
  JSON.stringify([
    record.path,
    record.sha256,
    record.config,
    record.users,
    record.libraries,
    record.allowedNetworks,
    record.allowWrite
  ])

/**
 * The versions of every plugin, in the manager's scope. `update` records a failed load in the
 * registry (the plugin is disabled with its `lastError`).
 */
export const make = (
  loader: PluginLoader["Type"],
  options: ManagerOptions,
  update: (id: string, patch: Parameters<Registry["Type"]["update"]>[1]) => Effect.Effect<void, ManagerError>
) =>
  Effect.gen(function* () {
    const background = yield* FiberSet.make()
    // Versions live in a scope of their own, closed by the shutdown finalizer only after the drain:
    // children of the manager's scope would close before any finalizer added earlier could drain them.
    const versionsScope = yield* Scope.make(ExecutionStrategy.sequential)
    /** Retired versions whose scope is not closed yet (calls still running on them). */
    const draining = new Set<Version>()
    const slots = new Map<string, Slot>()
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
                  allowLibraryWrite: r.allowWrite,
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

    return {
      /** The current version of a plugin, if it is loaded. */
      current: (id: string): Version | undefined => slots.get(id)?.current,
      /** IDs with a slot (loaded now, or loaded once and not forgotten). */
      ids: (): ReadonlyArray<string> => [...slots.keys()],
      /** Drops a plugin's slot once it is unloaded and deregistered. */
      forget: (id: string): void => {
        slots.delete(id)
      },
      use,
      load,
      unload,
      loadedIds: Effect.sync(() =>
        [...slots.entries()].filter(([, s]) => s.current !== undefined).map(([id]) => id)
      )
    }
  })

/** The versions of the manager's plugins (see `make`). */
export type Versions = Effect.Effect.Success<ReturnType<typeof make>>

/**
 * The manager's side of the plugins folder: syncing the registry with the `*.ndp` files in it, and
 * watching it for changes (auto-reload). What runs is the versions' business (`PluginVersions`).
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberMap from "effect/FiberMap"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import { type FSWatcher, mkdirSync, readdirSync, readFileSync, statSync, watch } from "node:fs"
import { basename, join } from "node:path"
import { decodeManifest } from "../manifest/Manifest.js"
import { PluginId, readPackageBytes } from "../package/PluginPackage.js"
import { ManagerError } from "./ManagerError.js"
import type { ManagerOptions } from "./ManagerOptions.js"
import type { Versions } from "./PluginVersions.js"
import type { PluginRecord, Registry, RegistryError } from "./Registry.js"

const isPluginId = Schema.is(PluginId)

/** Plugin ID of a path in the folder (for watchers). */
export const idOfPath = (path: string): string | undefined => {
  const name = basename(path)
  if (!name.endsWith(".ndp")) return undefined
  const id = name.slice(0, -".ndp".length)
  return isPluginId(id) ? id : undefined
}

const errorText = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : JSON.stringify(error)

/**
 * The folder at `folder` over the registry. `reconcile` brings one plugin's versions in line with
 * its row; `rescan` is the manager's whole resync (a restarted watcher runs it).
 */
export const make = (deps: {
  readonly folder: string
  readonly options: ManagerOptions
  readonly registry: Registry["Type"]
  readonly versions: Versions
  readonly registryError: (id: string) => (error: RegistryError) => ManagerError
  readonly update: (
    id: string,
    patch: Parameters<Registry["Type"]["update"]>[1]
  ) => Effect.Effect<void, ManagerError>
  readonly reconcile: (r: PluginRecord) => Effect.Effect<void>
  readonly rescan: Effect.Effect<void, ManagerError>
}) => {
  const { folder, options, registry, registryError, update, reconcile } = deps
  const unload = deps.versions.unload

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
        deps.versions.forget(r.id)
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
      names.flatMap((name) => {
        const id = idOfPath(name)
        return id === undefined ? [] : [{ id, path: join(folder, name) }]
      })
    )
  }

  // A folder that cannot be read (unmounted, being replaced) is not an empty one: deregistering
  // every plugin would throw away the administrator's decisions for all of them.
  const unreadableFolder = (why: string) =>
    Effect.logWarning(
      `the plugins folder ${folder} cannot be read (${why}); registered plugins are kept as they are until it can`
    )

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
      return stat.isDirectory() ? Either.right(`${stat.dev}:${stat.ino}`) : Either.left("it is not a folder")
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
              FiberMap.run(pending, id, Effect.zipRight(Effect.sleep(options.debounceMs), onFileSettled(id)))
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
          yield* deps.rescan.pipe(
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

  return { syncFile, removeMissing, listFolder, unreadableFolder, watchFolder }
}

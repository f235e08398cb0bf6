import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Engine from "../../src/Engine.js"
import { type LoadOptions, PluginLoader } from "../../src/loader/PluginLoader.js"
import * as PluginManagerModule from "../../src/manager/PluginManager.js"
import * as Registry from "../../src/manager/Registry.js"
import { copyFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import * as MetadataAgent from "../../src/capabilities/MetadataAgent.js"
import { PluginManager } from "../../src/manager/PluginManager.js"
import { WasmRuntime } from "../../src/runtime/WasmRuntime.js"
import { fixture } from "../support/fixtures.js"
import { makeFolders, managerLayer, type TestFolders } from "../support/manager.js"

const withManager = <A, E>(folders: TestFolders, body: Effect.Effect<A, E, PluginManager | WasmRuntime>) =>
  Effect.scoped(Effect.provide(body, Layer.fresh(managerLayer(folders))))

const bio = (id: string) =>
  Effect.flatMap(PluginManager, (m) =>
    m.use(id, (plugin) => MetadataAgent.fromPlugin(plugin).getArtistBiography({ id: "1", name: "Ana" }))
  )

describe("PluginManager", () => {
  it.scopedLive("new files are registered disabled; enabling loads; state survives a restart", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["agent-full", "scrobbler"])
      yield* withManager(
        folders,
        Effect.gen(function* () {
          const manager = yield* PluginManager
          const listed = yield* manager.list
          expect(listed.map((p) => [p.id, p.enabled, p.loaded])).toEqual([
            ["agent-full", false, false],
            ["scrobbler", false, false]
          ])
          expect(yield* Effect.flip(bio("agent-full"))).toMatchObject({
            _tag: "ManagerError",
            reason: "NotLoaded"
          })
          const enabled = yield* manager.enable("agent-full")
          expect(enabled).toMatchObject({ enabled: true, loaded: true, capabilities: ["MetadataAgent"] })
          expect(yield* bio("agent-full")).toMatchObject({ _tag: "Some", value: "Biography for Ana" })
        })
      )
      // Restart: the registry remembers, and the enabled plugin is loaded again on start.
      yield* withManager(
        folders,
        Effect.gen(function* () {
          const manager = yield* PluginManager
          expect(yield* manager.loadedIds).toEqual(["agent-full"])
          expect(yield* bio("agent-full")).toMatchObject({ _tag: "Some" })
        })
      )
    })
  )

  it.scopedLive("permission gates: users and library need someone allowed before enabling", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["scrobbler"])
      yield* withManager(
        folders,
        Effect.gen(function* () {
          const manager = yield* PluginManager
          const refused = yield* Effect.flip(manager.enable("scrobbler"))
          expect(refused).toMatchObject({ reason: "PermissionGate" })
          expect(refused.message).toContain("users")
          expect((yield* manager.get("scrobbler")).enabled).toBe(false)
          yield* manager.setUsers("scrobbler", ["alice"])
          expect(yield* manager.enable("scrobbler")).toMatchObject({ enabled: true, loaded: true })
        })
      )
    })
  )

  it.scopedLive("config is validated and applied by reloading", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["agent-full"])
      yield* withManager(
        folders,
        Effect.gen(function* () {
          const manager = yield* PluginManager
          yield* manager.enable("agent-full")
          yield* manager.setConfig("agent-full", { error: "configured failure" })
          const failed = yield* Effect.flip(bio("agent-full"))
          expect(failed.message).toBe("configured failure")
          expect((yield* Effect.flip(manager.setConfig("agent-full", [1, 2]))).reason).toBe("InvalidConfig")
          yield* manager.setConfig("agent-full", {})
          expect(yield* bio("agent-full")).toMatchObject({ _tag: "Some" })
        })
      )
    })
  )

  it.scopedLive("config for a plugin whose manifest has no config schema is refused", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["agent-partial"])
      yield* withManager(
        folders,
        Effect.gen(function* () {
          const manager = yield* PluginManager
          const refused = yield* Effect.flip(manager.setConfig("agent-partial", {}))
          expect(refused.reason).toBe("InvalidConfig")
          expect(refused.message).toContain("has no configurable options")
          expect((yield* manager.get("agent-partial")).config).toEqual({})
        })
      )
    })
  )

  it.scopedLive(
    "a changed file is disabled until enabled again; a removed file is unloaded and deregistered",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders([{ id: "agent-full", as: "meta" }])
        yield* withManager(
          folders,
          Effect.gen(function* () {
            const manager = yield* PluginManager
            yield* manager.enable("meta")
            copyFileSync(fixture("agent-partial"), join(folders.folder, "meta.ndp"))
            yield* manager.rescan
            expect(yield* manager.get("meta")).toMatchObject({
              enabled: false,
              loaded: false,
              name: "agent-partial"
            })
            rmSync(join(folders.folder, "meta.ndp"))
            yield* manager.rescan
            expect((yield* Effect.flip(manager.get("meta"))).reason).toBe("NotFound")
          })
        )
      })
  )

  it.scopedLive("a plugin that fails to load is disabled with its error recorded", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["forbidden-import"])
      yield* withManager(
        folders,
        Effect.gen(function* () {
          const manager = yield* PluginManager
          const error = yield* Effect.flip(manager.enable("forbidden-import"))
          expect(error.reason).toBe("LoadFailed")
          const status = yield* manager.get("forbidden-import")
          expect(status.enabled).toBe(false)
          expect(status.lastError).toContain("kvstore")
        })
      )
    })
  )

  it.scopedLive("100 reloads while callers keep calling: zero failed calls, nothing leaked", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["agent-full"])
      yield* withManager(
        folders,
        Effect.gen(function* () {
          const manager = yield* PluginManager
          const runtime = yield* WasmRuntime
          yield* manager.enable("agent-full")
          const workers = yield* runtime.workerThreadIds
          let calls = 0
          let failures = 0
          let stop = false
          const caller = Effect.gen(function* () {
            while (!stop) {
              const result = yield* Effect.either(bio("agent-full"))
              calls++
              if (result._tag === "Left" || result.right._tag !== "Some") failures++
              // A breath between calls, as real clients have; without it four callers starve the reloads.
              yield* Effect.sleep("1 millis")
            }
          })
          const callers = yield* Effect.forkAll(Array.from({ length: 4 }, () => caller))
          for (let i = 0; i < 100; i++) yield* manager.setConfig("agent-full", { round: i })
          stop = true
          yield* Fiber.join(callers)
          expect(failures).toBe(0)
          expect(calls).toBeGreaterThan(100)
          expect(yield* runtime.workerThreadIds).toEqual(workers)
          expect(yield* manager.loadedIds).toEqual(["agent-full"])
        })
      )
    })
  )

  it.scopedLive(
    "network grants are decoded, stored canonical and handed to the loader, reloading the plugin",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders(["agent-full"])
        const engine = Engine.layer({ dataFolder: folders.dataFolder, runtime: { poolSize: 2 } })
        // The real loader, watched: every LoadOptions the manager passes is kept.
        const seen: Array<LoadOptions | undefined> = []
        const watchedLoader = Layer.effect(
          PluginLoader,
          Effect.map(PluginLoader, (real) =>
            PluginLoader.of({
              ...real,
              loadFile: (path, options) => {
                seen.push(options)
                return real.loadFile(path, options)
              }
            })
          )
        ).pipe(Layer.provide(engine))
        const layer = PluginManagerModule.layer(
          PluginManagerModule.defaultManagerOptions(folders.folder)
        ).pipe(
          // The same engine value: built once, one storage for the registry and the loader.
          Layer.provideMerge(Registry.layer.pipe(Layer.provide(engine))),
          Layer.provideMerge(watchedLoader),
          Layer.orDie
        )
        yield* Effect.scoped(
          Effect.provide(
            Effect.gen(function* () {
              const manager = yield* PluginManager
              const call = (fn: string, input = "") =>
                manager.use("agent-full", (plugin) =>
                  Effect.map(plugin.call(fn, input), (out) =>
                    new TextDecoder().decode(out ?? new Uint8Array())
                  )
                )
              yield* manager.enable("agent-full")
              expect(seen.at(-1)?.allowedNetworks).toEqual([])
              yield* call("remember", "first version")

              const granted = yield* manager.setNetworks("agent-full", [
                "10.0.0.0/8",
                "Media.Example.ORG",
                "10.0.0.0/8"
              ])
              expect(granted.allowedNetworks).toEqual(["10.0.0.0/8", "media.example.org"])
              expect(seen.at(-1)?.allowedNetworks).toEqual(["10.0.0.0/8", "media.example.org"])
              // A new version serves (its module state is fresh).
              expect(yield* call("recall")).toBe("")

              const loads = seen.length
              const refused = yield* Effect.flip(manager.setNetworks("agent-full", ["10.0.0.1/8"]))
              expect(refused).toMatchObject({
                _tag: "ManagerError",
                reason: "InvalidNetwork",
                pluginId: "agent-full"
              })
              expect(refused.message).toContain("the block is 10.0.0.0/8")
              expect((yield* manager.get("agent-full")).allowedNetworks).toEqual([
                "10.0.0.0/8",
                "media.example.org"
              ])
              expect(seen.length).toBe(loads)
            }),
            layer
          )
        )
      })
  )
})

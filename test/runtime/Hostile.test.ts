/**
 * Every hostile or broken plugin fails alone, with a typed error, while a healthy plugin loaded in
 * the same engine keeps answering in the same test.
 */
import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import { readdirSync } from "node:fs"
import * as Option from "effect/Option"
import * as MetadataAgent from "../../src/capabilities/MetadataAgent.js"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import { WasmRuntime } from "../../src/runtime/WasmRuntime.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { alongsideHealthy, loadHealthy } from "../support/neighbour.js"
import { eventually } from "../support/wait.js"

const artist = { id: "ar-1", name: "Healthy" }
const bio = JSON.stringify(artist)

const callFixture = (id: string, options: Parameters<PluginLoader["Type"]["loadFile"]>[1] = {}) =>
  Effect.flatMap(PluginLoader, (loader) =>
    loader
      .loadFile(fixture(id), options)
      .pipe(Effect.flatMap((plugin) => plugin.call("nd_get_artist_biography", bio)))
  )

layer(testEngine({ runtime: { poolSize: 3, defaultTimeoutMs: 10_000 } }), { excludeTestServices: true })(
  "hostile plugins",
  (it) => {
    it.scoped(
      "an endless loop in an export times out, only its worker is replaced, and the plugin still serves",
      () =>
        Effect.gen(function* () {
          const runtime = yield* WasmRuntime
          const before = yield* runtime.workerThreadIds
          const loader = yield* PluginLoader
          const looping = yield* loader.loadFile(fixture("loop-export"), { timeoutMs: 300 })
          const result = yield* alongsideHealthy(
            yield* loadHealthy,
            looping.call("nd_get_artist_biography", bio)
          )
          expect(result._tag).toBe("Left")
          const error = result._tag === "Left" ? result.left : undefined
          expect(error).toMatchObject({ _tag: "PluginTimeoutError", timeoutMs: 300, pluginId: "loop-export" })
          expect(error?.message).toContain("raise its timeout")
          expect(yield* looping.call("ping")).toBeNull()
          const after = yield* runtime.workerThreadIds
          expect(after).toHaveLength(before.length)
          expect(after.filter((id) => !before.includes(id))).toHaveLength(1)
        })
    )

    it.scoped("an endless loop in the start function fails the load", () =>
      Effect.gen(function* () {
        const loader = yield* PluginLoader
        const result = yield* alongsideHealthy(
          yield* loadHealthy,
          loader.loadFile(fixture("loop-start"), { timeoutMs: 300 })
        )
        expect(result._tag === "Left" && result.left).toMatchObject({
          _tag: "PluginLoadError",
          reason: "Start"
        })
        expect(result._tag === "Left" && result.left.message).toContain("did not finish within 300 ms")
      })
    )

    it.scoped("memory.grow beyond the plugin's memory limit fails with a memory error", () =>
      Effect.gen(function* () {
        const result = yield* alongsideHealthy(
          yield* loadHealthy,
          callFixture("memory-hog", { memoryLimitBytes: 32 * 1024 * 1024 })
        )
        expect(result._tag === "Left" && result.left).toMatchObject({
          _tag: "PluginMemoryError",
          pluginId: "memory-hog"
        })
      })
    )

    it.scoped("allocating host memory without end fails with a memory error, not a hang", () =>
      Effect.gen(function* () {
        const result = yield* alongsideHealthy(
          yield* loadHealthy,
          callFixture("alloc-hog", { memoryLimitBytes: 64 * 1024 * 1024 })
        )
        expect(result._tag === "Left" && result.left).toMatchObject({ _tag: "PluginMemoryError" })
        expect(result._tag === "Left" && result.left.message).toContain("host memory")
      })
    )

    it.scoped("a trap is a typed trap error and the instance is not reused", () =>
      Effect.gen(function* () {
        const result = yield* alongsideHealthy(yield* loadHealthy, callFixture("trap"))
        expect(result._tag === "Left" && result.left).toMatchObject({ _tag: "PluginTrapError" })
        expect(result._tag === "Left" && result.left.message).toContain("unreachable")
      })
    )

    it.scoped("runaway recursion is a trap that names the stack", () =>
      Effect.gen(function* () {
        const result = yield* alongsideHealthy(yield* loadHealthy, callFixture("deep-recursion"))
        expect(result._tag === "Left" && result.left).toMatchObject({ _tag: "PluginTrapError" })
        expect(result._tag === "Left" && result.left.message).toContain("stack")
      })
    )

    it.scoped("a non-zero return code without an error is a failure with that code", () =>
      Effect.gen(function* () {
        const result = yield* alongsideHealthy(yield* loadHealthy, callFixture("exit-42"))
        expect(result._tag === "Left" && result.left).toMatchObject({
          _tag: "PluginFailedError",
          exitCode: 42
        })
        expect(result._tag === "Left" && result.left.message).toContain("exited with code 42")
      })
    )

    it.scoped("return code -2 is 'not implemented', which metadata clients treat as a miss", () =>
      Effect.gen(function* () {
        const result = yield* alongsideHealthy(yield* loadHealthy, callFixture("not-implemented"))
        expect(result._tag === "Left" && result.left).toMatchObject({ _tag: "PluginNotImplementedError" })
        const loader = yield* PluginLoader
        const agent = MetadataAgent.fromPlugin(yield* loader.loadFile(fixture("not-implemented")))
        expect(yield* agent.getArtistBiography(artist)).toEqual(Option.none())
      })
    )

    it.scoped("a 64 MB output is refused as too large", () =>
      Effect.gen(function* () {
        const result = yield* alongsideHealthy(yield* loadHealthy, callFixture("huge-output"))
        expect(result._tag === "Left" && result.left).toMatchObject({
          _tag: "PluginOutputError",
          reason: "TooLarge"
        })
      })
    )

    it.scoped("importing a host function without its permission fails the load, naming both", () =>
      Effect.gen(function* () {
        const loader = yield* PluginLoader
        const result = yield* alongsideHealthy(
          yield* loadHealthy,
          loader.loadFile(fixture("forbidden-import"))
        )
        expect(result._tag === "Left" && result.left).toMatchObject({
          _tag: "PluginLoadError",
          reason: "Link",
          missingImport: { module: "extism:host/user", name: "kvstore_get" },
          permission: "kvstore"
        })
        expect(result._tag === "Left" && result.left.message).toContain('needs the "kvstore" permission')
      })
    )

    it.scoped("importing from an unknown module fails the load", () =>
      Effect.gen(function* () {
        const loader = yield* PluginLoader
        const result = yield* alongsideHealthy(yield* loadHealthy, loader.loadFile(fixture("unknown-module")))
        expect(result._tag === "Left" && result.left).toMatchObject({
          _tag: "PluginLoadError",
          reason: "Link",
          missingImport: { module: "env", name: "mystery" }
        })
      })
    )

    it.scoped("proc_exit ends the call with a typed error naming the exit code", () =>
      Effect.gen(function* () {
        const result = yield* alongsideHealthy(yield* loadHealthy, callFixture("proc-exit"))
        expect(result._tag === "Left" && result.left).toMatchObject({ _tag: "PluginTrapError" })
        expect(result._tag === "Left" && result.left.message).toContain("proc_exit(3)")
      })
    )

    it.scoped("several loopers at once never take every worker from a healthy plugin", () =>
      Effect.gen(function* () {
        const loader = yield* PluginLoader
        const looping = yield* loader.loadFile(fixture("loop-export"), { timeoutMs: 400 })
        const loops = Effect.all(
          Array.from({ length: 4 }, () => Effect.either(looping.call("nd_get_artist_biography", bio))),
          { concurrency: "unbounded" }
        )
        const result = yield* alongsideHealthy(yield* loadHealthy, loops)
        expect(result._tag === "Right" && result.right.every((r) => r._tag === "Left")).toBe(true)
      })
    )

    it.scoped("timeouts replace workers without leaving threads behind", () =>
      Effect.gen(function* () {
        const threads = () => readdirSync("/proc/self/task").length
        const loader = yield* PluginLoader
        const looping = yield* loader.loadFile(fixture("loop-export"), { timeoutMs: 100 })
        // A queued call fails at its own deadline: give ping time to wait for restarted workers.
        const ping = looping.call("ping", undefined, { timeoutMs: 10_000 })
        yield* ping
        const before = threads()
        for (let i = 0; i < 5; i++) yield* Effect.either(looping.call("nd_get_artist_biography", bio))
        yield* ping
        // Terminated workers take a moment to exit; allow for that, then compare.
        yield* Effect.sleep("300 millis")
        expect(threads()).toBeLessThanOrEqual(before)
      })
    )

    it.scoped("calls still queued when their plugin unloads fail as unavailable", () =>
      Effect.gen(function* () {
        const loader = yield* PluginLoader
        const scope = yield* Scope.make()
        const looping = yield* loader
          .loadFile(fixture("loop-export"), { timeoutMs: 500 })
          .pipe(Scope.extend(scope))
        // Occupy every worker this plugin may use, then queue one more call behind them.
        const busy = yield* Effect.forkAll(
          [1, 2].map(() => Effect.either(looping.call("nd_get_artist_biography", bio)))
        )
        yield* Effect.sleep("50 millis")
        const queued = yield* Effect.fork(Effect.either(looping.call("ping")))
        yield* Effect.sleep("20 millis")
        yield* Scope.close(scope, Exit.void)
        const result = yield* Fiber.join(queued)
        expect(result._tag === "Left" && result.left._tag).toBe("PluginUnavailableError")
        yield* Fiber.join(busy)
      })
    )

    it.scoped("an error set with return code 0 is ignored, as Extism's Go SDK does; with 1 it fails", () =>
      Effect.gen(function* () {
        const loader = yield* PluginLoader
        const plugin = yield* loader.loadFile(fixture("error-rc0"))
        const agent = MetadataAgent.fromPlugin(plugin)
        expect(yield* agent.getArtistBiography(artist)).toEqual(Option.some("kept"))
        const failed = yield* Effect.flip(plugin.call("fail_with_error"))
        expect(failed).toMatchObject({ _tag: "PluginFailedError", message: "stale error" })
      })
    )

    it.scoped(
      "after a timeout a plugin is held to one worker: a second concurrent call waits in the queue",
      () =>
        Effect.gen(function* () {
          const loader = yield* PluginLoader
          const scope = yield* Scope.make()
          const looping = yield* loader
            .loadFile(fixture("loop-export"), { timeoutMs: 300 })
            .pipe(Scope.extend(scope))
          // Workers replaced by the tests before must be up, or these calls wait out their 300 ms.
          const runtime = yield* WasmRuntime
          yield* eventually(
            "every worker to be ready",
            () => Effect.runSync(runtime.poolStats).starting === 0
          )
          yield* Effect.either(looping.call("nd_get_artist_biography", bio))
          yield* eventually("the replacement worker", () => Effect.runSync(runtime.poolStats).starting === 0)
          // Long timeouts now, so the state can be seen: one call runs, the other waits although a
          // worker is free. Without the penalty both would run on two workers.
          const calls = yield* Effect.forkAll(
            [1, 2].map(() =>
              Effect.either(looping.call("nd_get_artist_biography", bio, { timeoutMs: 60_000 }))
            ),
            { discard: false }
          )
          yield* eventually(
            "one call running and one queued",
            () => {
              const stats = Effect.runSync(runtime.poolStats)
              return stats.busy === 1 && stats.queued === 1
            },
            30_000
          )
          // Unloading ends both: the queued call and the running one (its worker is replaced).
          yield* Scope.close(scope, Exit.void)
          const results = yield* Fiber.join(calls)
          const tags = results.map((r) => (r._tag === "Left" ? r.left._tag : "Right"))
          expect(tags).toEqual(["PluginUnavailableError", "PluginUnavailableError"])
        })
    )
  }
)

import { describe, expect, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Scope from "effect/Scope"
import { readFileSync } from "node:fs"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import { WasmRuntime } from "../../src/runtime/WasmRuntime.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { captureLogs } from "../support/logs.js"

const text = (bytes: Uint8Array | null) => (bytes === null ? null : new TextDecoder().decode(bytes))

const loadFull = (config: Record<string, unknown> = {}, options: { freshInstance?: boolean } = {}) =>
  Effect.flatMap(PluginLoader, (loader) => loader.loadFile(fixture("agent-full"), { config, ...options }))

layer(testEngine({ runtime: { poolSize: 2 } }), { excludeTestServices: true })("PluginLoader", (it) => {
  it.scoped("config_get crosses the host-call channel in both directions, misses as {}", () =>
    Effect.gen(function* () {
      const plugin = yield* loadFull({ greeting: "hej då", retries: 3, nested: { b: 1, a: [true] } })
      expect(text(yield* plugin.call("config_value", '{"key":"greeting"}'))).toBe(
        '{"value":"hej då","exists":true}'
      )
      // Non-string values are flattened to compact JSON with sorted keys.
      expect(text(yield* plugin.call("config_value", '{"key":"retries"}'))).toBe(
        '{"value":"3","exists":true}'
      )
      expect(text(yield* plugin.call("config_value", '{"key":"nested"}'))).toBe(
        JSON.stringify({ value: '{"a":[true],"b":1}', exists: true })
      )
      expect(text(yield* plugin.call("config_value", '{"key":"absent"}'))).toBe("{}")
      expect(text(yield* plugin.call("host_calls", '{"key":"greeting","n":250}'))).toBe('{"calls":250}')
    })
  )

  it.scoped("host replies larger than the shared buffer arrive intact", () =>
    Effect.gen(function* () {
      const big = "é".repeat(200_000)
      const plugin = yield* loadFull({ big })
      const reply = JSON.parse(text(yield* plugin.call("config_value", '{"key":"big"}'))!) as {
        value: string
      }
      expect(reply.value).toBe(big)
    })
  )

  it.scoped("input and output bytes round-trip unchanged, including large ones", () =>
    Effect.gen(function* () {
      const plugin = yield* loadFull()
      const input = new Uint8Array(3 * 1024 * 1024).map((_, i) => i % 251)
      const echoed = yield* plugin.call("echo", input)
      // Buffer.equals: a deep toEqual over megabytes is needlessly slow.
      expect(echoed !== null && Buffer.from(echoed).equals(input)).toBe(true)
      expect((yield* plugin.call("big_output", '{"bytes":5000000}'))?.byteLength).toBe(5_000_000)
      expect(text(yield* plugin.call("var_roundtrip", "kept in a var"))).toBe("kept in a var")
    })
  )

  it.scoped("an oversized input is refused before it reaches the plugin", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const plugin = yield* loader.loadFile(fixture("agent-full"))
      const runtime = yield* WasmRuntime
      const tooBig = new Uint8Array(runtime.options.maxInputBytes + 1)
      const error = yield* Effect.flip(plugin.call("echo", tooBig))
      expect(error).toMatchObject({
        _tag: "PluginInputTooLargeError",
        limitBytes: runtime.options.maxInputBytes,
        inputBytes: runtime.options.maxInputBytes + 1
      })
      expect(error.message).toContain("exceeds the limit")
    })
  )

  it.scoped("two plugins from one package never share state", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const bytes = readFileSync(fixture("agent-full"))
      const a = yield* loader.loadBytes("copy-a", bytes)
      const b = yield* loader.loadBytes("copy-b", bytes)
      expect(a.sha256).toBe(b.sha256)
      yield* a.call("remember", "secret of a")
      for (let i = 0; i < 10; i++) expect(text(yield* b.call("recall"))).toBe("")
      expect(text(yield* a.call("recall"))).toBe("secret of a")
    })
  )

  it.scoped("instances are reused between calls unless a fresh one is asked for", () =>
    Effect.gen(function* () {
      const reused = yield* loadFull()
      const counts = []
      for (let i = 0; i < 5; i++) counts.push(Number(text(yield* reused.call("counter"))))
      expect(counts).toEqual([1, 2, 3, 4, 5])
      const fresh = yield* loadFull({}, { freshInstance: true })
      for (let i = 0; i < 5; i++) expect(text(yield* fresh.call("counter"))).toBe("1")
    })
  )

  it.scoped("guest logs reach Effect's logger with the plugin ID and level; the level filters", () =>
    Effect.gen(function* () {
      const logs = captureLogs()
      const loader = yield* PluginLoader
      yield* logs.provide(
        Effect.gen(function* () {
          const info = yield* loader.loadFile(fixture("agent-full"))
          yield* info.call("log_all")
          const debug = yield* loader.loadBytes("debug-copy", readFileSync(fixture("agent-full")), {
            logLevel: LogLevel.Debug
          })
          yield* debug.call("log_all")
        }).pipe(Logger.withMinimumLogLevel(LogLevel.Debug))
      )
      const of = (id: string) =>
        logs.lines.filter((l) => l.annotations.plugin === id && l.message.endsWith(" message"))
      expect(of("agent-full").map((l) => [l.level, l.message])).toEqual([
        ["INFO", "info message"],
        ["WARN", "warn message"],
        ["ERROR", "error message"]
      ])
      expect(of("debug-copy").map((l) => l.level)).toEqual(["DEBUG", "INFO", "WARN", "ERROR"])
    })
  )

  it.scoped("nd_on_init runs once after load; a failing init is logged and the plugin stays loaded", () =>
    Effect.gen(function* () {
      const logs = captureLogs()
      const loader = yield* PluginLoader
      const [ok, failing] = yield* logs.provide(
        Effect.all([
          loader.loadFile(fixture("lifecycle"), { config: { greeting: "hello" } }),
          loader.loadBytes("lifecycle-broken", readFileSync(fixture("lifecycle")), {
            config: { fail_init: "no db" }
          })
        ])
      )
      const messages = logs.lines.map((l) => `${l.level} ${String(l.annotations.plugin)} ${l.message}`)
      expect(messages.filter((m) => m.startsWith("INFO lifecycle ") && m.includes("initialised"))).toEqual([
        "INFO lifecycle initialised hello"
      ])
      expect(
        messages.some((m) => m.startsWith("ERROR lifecycle-broken nd_on_init failed") && m.includes("no db"))
      ).toBe(true)
      expect(text(yield* ok.call("nd_get_artist_biography", '{"id":"1","name":"Ana"}'))).toContain("Ana")
      expect(text(yield* failing.call("nd_get_artist_biography", '{"id":"1","name":"Ana"}'))).toContain("Ana")
    })
  )

  it.scoped("config is validated against the manifest's schema before anything runs", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const error = yield* Effect.flip(
        loader.loadFile(fixture("agent-full"), { config: ["not", "an", "object"] })
      )
      expect(error).toMatchObject({ _tag: "PluginLoadError", reason: "Config" })
    })
  )
})

describe("PluginLoader unload", () => {
  it.live("closing a plugin's scope unloads it: calls fail typed, and nothing is left behind", () =>
    Effect.gen(function* () {
      const runtime = yield* WasmRuntime
      const workers = yield* runtime.workerThreadIds
      const loader = yield* PluginLoader
      for (let round = 0; round < 20; round++) {
        const scope = yield* Scope.make()
        const plugin = yield* loader.loadFile(fixture("agent-full")).pipe(Scope.extend(scope))
        yield* plugin.call("noop")
        yield* Scope.close(scope, Exit.void)
        const error = yield* Effect.flip(plugin.call("noop"))
        expect(error._tag).toBe("PluginUnavailableError")
      }
      expect(yield* runtime.workerThreadIds).toEqual(workers)
    }).pipe(Effect.provide(testEngine({ runtime: { poolSize: 2 } })))
  )
})

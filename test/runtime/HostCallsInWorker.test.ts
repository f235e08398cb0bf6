/**
 * Config host calls answered inside the worker (docs/decisions/0035-host-calls-in-the-worker.md):
 * the same bytes as the main thread's Config service for every request, malformed ones included;
 * well-formed requests never cross to the main thread; `hostCallsInWorker: false` sends them all
 * across again; a provider that overrides a config function is never bypassed.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { unzipSync } from "fflate"
import { readFileSync } from "node:fs"
import * as ConfigService from "../../src/host/config/ConfigService.js"
import type { HostServiceProvider } from "../../src/host/HostFunctions.js"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import * as WasmRuntimeModule from "../../src/runtime/WasmRuntime.js"
import { WasmRuntime } from "../../src/runtime/WasmRuntime.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"

const config = {
  apiKey: "k-1",
  "api.region": "eu",
  retries: "3",
  zero: "0",
  big: "99999999999999999999",
  name: ""
}
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Requests as raw bytes: well-formed, odd, and ones the codec refuses. */
const requests: ReadonlyArray<Uint8Array> = [
  '{"key":"apiKey"}',
  '{"key":"missing"}',
  '{"key":"name"}',
  '{"key":"retries"}',
  '{"key":"zero"}',
  '{"key":"big"}',
  '{"key":"__proto__"}',
  '{"key":"toString"}',
  '{"__proto__":{"key":"apiKey"}}',
  '{"ke_y":"x","key":"apiKey","extra":[1,2]}',
  '{"prefix":"api"}',
  '{"prefix":""}',
  '{"prefix":"zzz"}',
  '{"prefix":3}',
  "{}",
  "",
  "{not json",
  '{"key":5}',
  "[1,2]",
  "null",
  '"key"'
]
  .map((text) => encoder.encode(text))
  .concat([new Uint8Array([0x7b, 0x22, 0x6b, 0x65, 0x79, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])])

const exportsOf = { config_get: "get", config_getint: "getint", config_keys: "keys" } as const

/** Every request through every config function of the fixture, in an engine with these options. */
const answers = (hostCallsInWorker: boolean) =>
  Effect.gen(function* () {
    const loader = yield* PluginLoader
    const plugin = yield* loader.loadFile(fixture("config-raw"), { config })
    const out: Array<string> = []
    for (const name of Object.values(exportsOf)) {
      for (const request of requests) {
        out.push(decoder.decode((yield* plugin.call(name, request)) ?? new Uint8Array(0)))
      }
    }
    return out
  }).pipe(Effect.scoped, Effect.provide(testEngine({ runtime: { hostCallsInWorker } })))

/** The fixture instantiated directly, with a main-thread handler that counts what reaches it. */
const counted = Effect.gen(function* () {
  const runtime = yield* WasmRuntime
  const wasm = unzipSync(readFileSync(fixture("config-raw")))["plugin.wasm"]!
  const compiled = yield* runtime.compile("config-raw", "config-raw-test", wasm)
  const handlers = ConfigService.functions(config)
  const crossed: Array<string> = []
  const plugin = yield* runtime.instantiate({
    pluginId: "config-raw",
    compiled,
    config,
    userFunctions: ["config_get", "config_getint", "config_keys"],
    workerFunctions: ["config_get", "config_getint", "config_keys"],
    envHttp: false,
    host: (fn, payload) => {
      crossed.push(fn)
      return handlers[fn as keyof typeof handlers](payload)
    }
  })
  const call = (name: string, request: string) =>
    Effect.map(plugin.call(name, encoder.encode(request)), (bytes) =>
      decoder.decode(bytes ?? new Uint8Array(0))
    )
  return { call, crossed }
})

const withRuntime = (hostCallsInWorker: boolean) =>
  Effect.provide(WasmRuntimeModule.layer({ poolSize: 1, hostCallsInWorker }))

describe("config host calls in the worker", () => {
  it.live(
    "give the same bytes as the main thread's Config service, malformed requests included",
    () =>
      Effect.gen(function* () {
        const inWorker = yield* answers(true)
        const onMain = yield* answers(false)
        expect(inWorker).toEqual(onMain)
        // The comparison covers answers and in-band errors, not only one kind.
        expect(inWorker).toContain('{"value":"k-1","exists":true}')
        expect(inWorker).toContain('{"exists":true}')
        expect(inWorker).toContain('{"value":3,"exists":true}')
        expect(inWorker).toContain('{"keys":["api.region","apiKey"]}')
        expect(
          inWorker.filter((reply) => reply.startsWith('{"error":"invalid request')).length
        ).toBeGreaterThan(5)
      }),
    60_000
  )

  it.scoped("well-formed requests stay in the worker; requests the codec refuses cross", () =>
    Effect.gen(function* () {
      const local = yield* counted
      expect(yield* local.call("get", '{"key":"apiKey"}')).toBe('{"value":"k-1","exists":true}')
      expect(yield* local.call("getint", '{"key":"retries"}')).toBe('{"value":3,"exists":true}')
      expect(yield* local.call("keys", "")).toBe(`{"keys":${JSON.stringify(Object.keys(config).sort())}}`)
      expect(local.crossed).toEqual([])
      // The codec's own error, from the main thread.
      expect(yield* local.call("get", '{"key":5}')).toContain('"error":"invalid request')
      expect(local.crossed).toEqual(["config_get"])
    }).pipe(withRuntime(true))
  )

  it.scoped("with hostCallsInWorker off, every config call crosses to the main thread", () =>
    Effect.gen(function* () {
      const remote = yield* counted
      expect(yield* remote.call("get", '{"key":"apiKey"}')).toBe('{"value":"k-1","exists":true}')
      expect(yield* remote.call("keys", '{"prefix":"api"}')).toBe('{"keys":["api.region","apiKey"]}')
      expect(remote.crossed).toEqual(["config_get", "config_keys"])
    }).pipe(withRuntime(false))
  )

  it("a provider installed after Config that overrides a config function keeps it on the main thread", () => {
    const override: HostServiceProvider = {
      grant: "config",
      functions: ["config_keys"],
      make: () => Effect.succeed({})
    }
    const imported = ["config_get", "config_keys", "kvstore_get"]
    expect(ConfigService.servedInWorker([ConfigService.provider], imported)).toEqual([
      "config_get",
      "config_keys"
    ])
    expect(ConfigService.servedInWorker([ConfigService.provider, override], imported)).toEqual(["config_get"])
    expect(ConfigService.servedInWorker([], imported)).toEqual([])
  })
})

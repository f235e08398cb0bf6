/** Host services built from their own layers: settings from `Config` reach the per-plugin service. */
import { describe, expect, it } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as CacheService from "../../src/host/cache/CacheService.js"
import type { PluginContext } from "../../src/host/HostFunctions.js"
import { decodeManifest } from "../../src/manifest/Manifest.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const context = Effect.map(
  decodeManifest(JSON.stringify({ name: "p", author: "a", version: "1", permissions: { cache: {} } })),
  (manifest): PluginContext => ({
    pluginId: "p",
    manifest,
    config: {},
    dataFolder: "/tmp/unused",
    users: [],
    libraries: [],
    callPlugin: () => Effect.succeed(null)
  })
)

const settings = (entries: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(entries))))

const cacheFromConfig = CacheService.layerConfig({ maxEntries: Config.integer("CACHE_MAX_ENTRIES") })

describe("CacheService.layerConfig", () => {
  it.scoped("reads the limits from Config: with one entry allowed, a second set evicts the first", () =>
    Effect.gen(function* () {
      const provider = yield* CacheService.CacheService
      const functions = yield* provider.make(yield* context)
      const call = (name: string, request: unknown) =>
        Effect.map(functions[name]!(encoder.encode(JSON.stringify(request))), (out) =>
          JSON.parse(decoder.decode(out))
        )
      expect(yield* call("cache_setstring", { key: "a", value: "1" })).toEqual({})
      expect(yield* call("cache_setstring", { key: "b", value: "2" })).toEqual({})
      expect(yield* call("cache_has", { key: "a" })).toEqual({})
      expect(yield* call("cache_getstring", { key: "b" })).toEqual({ value: "2", exists: true })
    }).pipe(Effect.provide(cacheFromConfig), settings({ CACHE_MAX_ENTRIES: "1" }))
  )

  it.effect("a malformed setting fails building the layer, naming the setting", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(
        Effect.provide(CacheService.CacheService, cacheFromConfig).pipe(
          settings({ CACHE_MAX_ENTRIES: "many" })
        )
      )
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toContain("CACHE_MAX_ENTRIES")
    })
  )
})

/**
 * The kernel's own limits against plugins that abuse Extism memory and vars, and a legitimate
 * plugin that uses a lot of it: each runs while a healthy plugin keeps answering.
 */
import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { alongsideHealthy, loadHealthy } from "../support/neighbour.js"

const bio = JSON.stringify({ id: "ar-1", name: "Hostile" })

const load = (id: string, options: Parameters<PluginLoader["Type"]["loadFile"]>[1] = {}) =>
  Effect.flatMap(PluginLoader, (loader) => loader.loadFile(fixture(id), options))

layer(testEngine({ runtime: { poolSize: 3, defaultTimeoutMs: 60_000 } }), { excludeTestServices: true })(
  "kernel limits",
  (it) => {
    it.scoped(
      "vars count their keys: endless long keys with empty values hit the vars limit",
      () =>
        Effect.gen(function* () {
          const hog = yield* load("vars-key-hog")
          const result = yield* alongsideHealthy(yield* loadHealthy, hog.call("nd_get_artist_biography", bio))
          expect(result._tag === "Left" && result.left).toMatchObject({
            _tag: "PluginMemoryError",
            pluginId: "vars-key-hog"
          })
          const message = result._tag === "Left" ? result.left.message : ""
          expect(message).toContain("over the limit of 1048576 bytes")
          expect(message).toContain("keys + values")
          expect(message).toContain("raise maxVarBytes")
        }),
      120_000
    )

    it.scoped(
      "alloc(0) is not free: endless empty blocks hit the host-memory cap",
      () =>
        Effect.gen(function* () {
          const hog = yield* load("alloc-zero-hog", { memoryLimitBytes: 16 * 1024 * 1024 })
          const result = yield* alongsideHealthy(yield* loadHealthy, hog.call("nd_get_artist_biography", bio))
          expect(result._tag === "Left" && result.left).toMatchObject({
            _tag: "PluginMemoryError",
            pluginId: "alloc-zero-hog"
          })
          const message = result._tag === "Left" ? result.left.message : ""
          expect(message).toContain("more than 16777216 bytes of host memory")
          expect(message).toContain("free blocks it no longer needs")
        }),
      120_000
    )

    it.scoped(
      "with the default cap, endless alloc(0) hits the live-block limit",
      () =>
        Effect.gen(function* () {
          const hog = yield* load("alloc-zero-hog")
          const result = yield* alongsideHealthy(yield* loadHealthy, hog.call("nd_get_artist_biography", bio))
          expect(result._tag === "Left" && result.left).toMatchObject({ _tag: "PluginMemoryError" })
          expect(result._tag === "Left" && result.left.message).toContain("Extism memory blocks at once")
        }),
      120_000
    )

    it.scoped(
      "freed blocks are reused: millions of alloc/free pairs and 100k kept replies succeed",
      () =>
        Effect.gen(function* () {
          const churn = yield* load("alloc-churn")
          const result = yield* alongsideHealthy(
            yield* loadHealthy,
            churn.call("nd_get_artist_biography", bio)
          )
          expect(result).toMatchObject({ _tag: "Right", right: null })
          // The same instance again: nothing is left over from the last call.
          expect(yield* churn.call("nd_get_artist_biography", bio)).toBeNull()
        }),
      120_000
    )

    it.scoped(
      "a freed handle never reads the block that reuses its slot",
      () =>
        Effect.gen(function* () {
          const churn = yield* load("alloc-churn")
          // The export returns length(stale handle) as its return code: 0 unless it aliases.
          expect(yield* churn.call("stale_length")).toBeNull()
        }),
      120_000
    )
  }
)

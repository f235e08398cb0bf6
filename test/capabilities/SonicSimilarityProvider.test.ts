/**
 * The SonicSimilarity capability client through the real path: the `sonic` fixture answers
 * nd_get_sonic_similar_tracks and nd_find_sonic_path from inside Wasm, or misbehaves by its config.
 */
import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as SonicSimilarityProvider from "../../src/capabilities/SonicSimilarityProvider.js"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { captureLogs } from "../support/logs.js"
import { alongsideHealthy, loadHealthy } from "../support/neighbour.js"

const load = (mode: string) =>
  Effect.flatMap(PluginLoader, (loader) => loader.loadFile(fixture("sonic"), { config: { mode } }))

const client = (mode: string) =>
  Effect.map(load(mode), (plugin) => SonicSimilarityProvider.fromPlugin(plugin))

const seed = { id: "mf-6", name: "Low Tide", artists: [{ name: "Nadia Océano" }] }
const end = { id: "mf-10", name: "One Sample", artist: "Zero Crossing" }

layer(testEngine({ runtime: { poolSize: 2 } }), { excludeTestServices: true })(
  "SonicSimilarityProvider",
  (it) => {
    it.scoped("the capability is detected from the exports", () =>
      Effect.gen(function* () {
        expect((yield* load("songs")).capabilities).toEqual(["SonicSimilarity"])
      })
    )

    it.scoped("similar tracks from inside Wasm arrive normalized, with their similarity, cut to count", () =>
      Effect.gen(function* () {
        const sonic = yield* client("songs")
        const matches = yield* sonic.similarTracks(seed, 10)
        expect(matches.map((m) => [m.song.name, m.similarity])).toEqual([
          ["still water (2020 Remaster)", 0.93],
          ["A Song Nobody Has", 0.8],
          ["Zero", 0.5],
          ["Low Tide", 0.25]
        ])
        // The seed came back with the ID the host sent; artists are always a list.
        expect(matches[3]!.song).toMatchObject({ id: "mf-6", artists: [], durationMs: 0 })
        expect(matches[0]!.song.artists).toEqual([{ name: "NADIA OCEANO" }])
        expect(yield* sonic.similarTracks(seed, 2)).toHaveLength(2)
      })
    )

    it.scoped("a sonic path runs from the start song to the end song", () =>
      Effect.gen(function* () {
        const path = yield* (yield* client("songs")).sonicPath(seed, end, 10)
        expect(path.map((m) => [m.song.id ?? m.song.name, m.similarity])).toEqual([
          ["mf-6", 1],
          ["Undertow", 0.7],
          ["A Song Nobody Has", 0.6],
          ["mf-10", 0.4]
        ])
      })
    )

    it.scoped("matches past the count asked for are dropped and logged", () =>
      Effect.gen(function* () {
        const logs = captureLogs()
        const matches = yield* logs.provide(
          Effect.flatMap(client("ignore-count"), (sonic) => sonic.similarTracks(seed, 1))
        )
        expect(matches.map((m) => m.song.name)).toEqual(["still water (2020 Remaster)"])
        expect(logs.lines.some((l) => l.message.includes("answered 4 matches for 1 asked"))).toBe(true)
      })
    )

    it.scoped("no matches, not implemented and a missing export are empty; a plugin error is an error", () =>
      Effect.gen(function* () {
        expect(yield* (yield* client("empty")).similarTracks(seed, 5)).toEqual([])
        expect(yield* (yield* client("not-implemented")).sonicPath(seed, end, 5)).toEqual([])
        const loader = yield* PluginLoader
        const agent = SonicSimilarityProvider.fromPlugin(yield* loader.loadFile(fixture("agent-full")))
        expect(yield* agent.similarTracks(seed, 5)).toEqual([])
        const failed = yield* Effect.flip((yield* client("fail")).similarTracks(seed, 5))
        expect(failed).toMatchObject({
          _tag: "PluginFailedError",
          message: "the similarity index is offline"
        })
      })
    )

    it.scoped(
      "oversized, misshapen and non-JSON answers are refused with typed errors while a healthy plugin keeps answering",
      () =>
        Effect.gen(function* () {
          const healthy = yield* loadHealthy
          const sane = yield* client("songs")
          const outcome = yield* alongsideHealthy(
            healthy,
            Effect.gen(function* () {
              const huge = yield* Effect.flip((yield* client("huge")).similarTracks(seed, 5))
              const shape = yield* Effect.flip((yield* client("bad-shape")).sonicPath(seed, end, 5))
              const json = yield* Effect.flip((yield* client("not-json")).similarTracks(seed, 5))
              // The sonic neighbour answers as before.
              const still = yield* sane.similarTracks(seed, 1)
              return { huge, shape, json, still }
            })
          )
          if (outcome._tag === "Left") return expect.fail(String(outcome.left))
          const { huge, json, shape, still } = outcome.right
          expect(huge).toMatchObject({ _tag: "PluginOutputError", reason: "TooLarge" })
          expect(huge.message).toContain(`limited to ${SonicSimilarityProvider.defaultMaxAnswerBytes} bytes`)
          expect(shape).toMatchObject({ _tag: "PluginOutputError", reason: "InvalidShape" })
          expect(json).toMatchObject({ _tag: "PluginOutputError", reason: "InvalidJson" })
          expect(still.map((m) => m.similarity)).toEqual([0.93])
        }),
      120_000
    )

    it.scoped("a smaller answer cap applies when set", () =>
      Effect.gen(function* () {
        const sonic = SonicSimilarityProvider.fromPlugin(yield* load("songs"), { maxAnswerBytes: 64 })
        expect(yield* Effect.flip(sonic.similarTracks(seed, 5))).toMatchObject({ reason: "TooLarge" })
      })
    )
  }
)

/**
 * SonicSimilarity over real plugins in a real manager: copies of the `sonic` fixture suggest songs
 * from inside Wasm, and the engine resolves them against the demo library through the matcher.
 * Demo library: mf-6 "Low Tide", mf-7 "Still Water", mf-8 "Undertow" (Nadia Océano); mf-9 "Zero",
 * mf-10 "One Sample" (Zero Crossing).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as SonicSimilarity from "../../src/manager/SonicSimilarity.js"
import { PluginManager } from "../../src/manager/PluginManager.js"
import { alongsideHealthy } from "../support/neighbour.js"
import { makeFolders, managerLayer, type TestFolders } from "../support/manager.js"

const withSonic = <A, E>(
  folders: TestFolders,
  options: SonicSimilarity.SonicSimilarityOptions,
  body: Effect.Effect<A, E, SonicSimilarity.SonicSimilarity | PluginManager>
) =>
  Effect.scoped(
    Effect.provide(body, SonicSimilarity.layer(options).pipe(Layer.provideMerge(managerLayer(folders))))
  )

/** Enables `sonic` copies, each configured with its mode (`<id>` → mode). */
const setUp = (modes: Record<string, string>) =>
  Effect.flatMap(PluginManager, (manager) =>
    Effect.forEach(
      Object.entries(modes),
      ([id, mode]) => Effect.zipRight(manager.setConfig(id, { mode }), manager.enable(id)),
      { discard: true }
    )
  )

const copies = (...ids: ReadonlyArray<string>) => ids.map((as) => ({ id: "sonic", as }))

const summary = (answer: SonicSimilarity.Answer) => ({
  provider: answer.provider,
  tracks: answer.tracks.map((t) => [t.track.id, t.similarity])
})

describe("SonicSimilarity", () => {
  it("a library track is sent as Navidrome describes one: seconds and milliseconds, artists with a role", () => {
    const track = {
      id: "t1",
      libraryId: 1,
      title: "T",
      artist: "A",
      album: "B",
      durationMs: 247_333,
      path: "x"
    }
    expect(SonicSimilarity.songRefOf({ ...track, isrc: "ISRC1" })).toEqual({
      id: "t1",
      name: "T",
      artist: "A",
      album: "B",
      duration: 247.333,
      durationMs: 247_333,
      artists: [{ name: "A", role: "artist" }],
      isrc: "ISRC1"
    })
  })

  it.scopedLive(
    "suggestions are resolved to library tracks: unknown songs dropped, similarity kept, in order",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders(copies("sonic"))
        const { path, similar } = yield* withSonic(
          folders,
          {},
          Effect.gen(function* () {
            yield* setUp({ sonic: "songs" })
            const sonic = yield* SonicSimilarity.SonicSimilarity
            return {
              similar: yield* sonic.similarTracks("mf-6", 10),
              path: yield* sonic.sonicPath("mf-6", "mf-10", 10)
            }
          })
        )
        // "still water (2020 Remaster)" by "NADIA OCEANO" is found fuzzily, mf-9 by ID, the seed by
        // the ID the host sent it with; "A Song Nobody Has" is not in the library.
        expect(summary(similar)).toEqual({
          provider: "sonic",
          tracks: [
            ["mf-7", 0.93],
            ["mf-9", 0.5],
            ["mf-6", 0.25]
          ]
        })
        expect(similar.tracks[0]!.track).toMatchObject({ title: "Still Water", artist: "Nadia Océano" })
        expect(summary(path).tracks).toEqual([
          ["mf-6", 1],
          ["mf-8", 0.7],
          ["mf-10", 0.4]
        ])
      })
  )

  it.scopedLive("the provider is chosen the same way every time: configured order, else lowest ID", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(copies("b-sonic", "a-sonic", "c-sonic"))
      const ask = (options: SonicSimilarity.SonicSimilarityOptions) =>
        withSonic(
          folders,
          options,
          Effect.gen(function* () {
            yield* setUp({ "b-sonic": "songs", "a-sonic": "songs", "c-sonic": "songs" })
            const sonic = yield* SonicSimilarity.SonicSimilarity
            const answers = yield* Effect.forEach([1, 2, 3], () => sonic.similarTracks("mf-6", 1))
            return { provider: yield* sonic.provider, answered: answers.map((a) => a.provider) }
          })
        )
      expect(yield* ask({})).toEqual({
        provider: Option.some("a-sonic"),
        answered: ["a-sonic", "a-sonic", "a-sonic"]
      })
      expect(yield* ask({ providers: ["not-installed", "c-sonic", "b-sonic"] })).toEqual({
        provider: Option.some("c-sonic"),
        answered: ["c-sonic", "c-sonic", "c-sonic"]
      })
    })
  )

  it.scopedLive("a failing provider is an error, not an empty answer, and the next one is not asked", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(copies("a-broken", "b-sane"))
      const error = yield* withSonic(
        folders,
        {},
        Effect.zipRight(
          setUp({ "a-broken": "fail", "b-sane": "songs" }),
          Effect.flip(Effect.flatMap(SonicSimilarity.SonicSimilarity, (s) => s.similarTracks("mf-6", 5)))
        )
      )
      expect(error).toMatchObject({
        _tag: "SonicSimilarityError",
        reason: "ProviderFailed",
        pluginId: "a-broken",
        failure: "PluginFailedError"
      })
      expect(error.message).toContain("the similarity index is offline")
    })
  )

  it.scopedLive(
    "a hostile provider's oversized answer is refused with a typed error while a healthy plugin keeps answering",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders([...copies("a-huge", "b-sane"), "agent-full"])
        const { huge, sane } = yield* withSonic(
          folders,
          { providers: ["a-huge"] },
          Effect.gen(function* () {
            yield* setUp({ "a-huge": "huge", "b-sane": "songs" })
            const manager = yield* PluginManager
            yield* manager.enable("agent-full")
            const sonic = yield* SonicSimilarity.SonicSimilarity
            const outcome = yield* manager.use("agent-full", (healthy) =>
              alongsideHealthy(
                healthy,
                Effect.forEach([1, 2, 3], () => sonic.similarTracks("mf-6", 5))
              )
            )
            // Once the hostile provider is gone, the sane one answers.
            yield* manager.disable("a-huge")
            return { huge: outcome, sane: yield* sonic.similarTracks("mf-6", 5) }
          })
        )
        if (huge._tag === "Left") {
          expect(huge.left).toMatchObject({ reason: "ProviderFailed", failure: "PluginOutputError" })
          expect(huge.left.message).toContain("limited to")
        } else expect.fail("the oversized answer was accepted")
        expect(summary(sane).provider).toBe("b-sane")
        expect(sane.tracks.length).toBeGreaterThan(0)
      }),
    120_000
  )

  it.scopedLive("an unknown track, a track outside the libraries and no provider are typed errors", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(copies("sonic"))
      const errors = yield* withSonic(
        folders,
        {},
        Effect.gen(function* () {
          const sonic = yield* SonicSimilarity.SonicSimilarity
          const none = yield* Effect.flip(sonic.similarTracks("mf-6", 5))
          const noneYet = yield* sonic.provider
          yield* setUp({ sonic: "songs" })
          const unknown = yield* Effect.flip(sonic.similarTracks("mf-999", 5))
          const outside = yield* Effect.flip(sonic.sonicPath("mf-6", "mf-7", 5, { libraries: [] }))
          const zero = yield* sonic.similarTracks("mf-6", 0)
          return { none, noneYet, unknown, outside, zero }
        })
      )
      expect(errors.none).toMatchObject({ reason: "NoProvider" })
      expect(errors.none.message).toContain("install and enable one")
      expect(errors.noneYet).toEqual(Option.none())
      expect(errors.unknown).toMatchObject({ reason: "TrackNotFound" })
      expect(errors.outside).toMatchObject({ reason: "TrackNotFound" })
      expect(errors.zero).toEqual({ provider: "sonic", tracks: [] })
    })
  )
})

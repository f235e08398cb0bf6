import { describe, expect, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { normalizeSongRef, type SongRef } from "../../../src/capabilities/MetadataAgent.js"
import * as MatcherService from "../../../src/host/matcher/MatcherService.js"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import type { LoadOptions } from "../../../src/loader/PluginLoader.js"
import { ScrobbleHistory } from "../../../src/server/ScrobbleHistory.js"
import type { CatalogTrack, TrackCatalog } from "../../../src/server/TrackCatalog.js"
import { testEngine } from "../../support/engine.js"
import { fixture } from "../../support/fixtures.js"
import { alongsideHealthy, loadHealthy } from "../../support/neighbour.js"
import { repackage } from "../../support/repackage.js"

const decoder = new TextDecoder()

const load = (options: LoadOptions) =>
  Effect.flatMap(PluginLoader, (loader) => loader.loadFile(fixture("host-matcher"), options))

const match = (
  plugin: { call: (name: string, input: string) => Effect.Effect<Uint8Array | null, unknown> },
  request: unknown
) =>
  Effect.map(
    plugin.call("call_matcher_matchsongs", JSON.stringify(request)),
    (bytes) =>
      JSON.parse(decoder.decode(bytes ?? new Uint8Array())) as { result?: Array<unknown>; error?: string }
  )

// Demo library (ID 1): mf-6 is "Low Tide" by "Nadia Océano" on "Tidal Silence", 2 s.
const songs = [
  { id: "mf-6", name: "anything: the ID wins" },
  { name: "low tide (Remastered 2011)", artist: "NADIA OCEANO", album: "Tidal Silence" },
  { name: "Dawn Fermata", artists: [{ name: "Someone Else" }] },
  { name: "Nothing Like It" }
]

layer(testEngine({ runtime: { poolSize: 2 } }), { excludeTestServices: true })(
  "Matcher (from Wasm)",
  (it) => {
    it.scoped(
      "one result per song, in order: by ID, fuzzily (case, accents, remaster notes), null when unmatched",
      () =>
        Effect.gen(function* () {
          const plugin = yield* load({ libraries: [1] })
          const answer = yield* match(plugin, { songs })
          expect(answer.result).toHaveLength(4)
          expect(answer.result?.[0]).toMatchObject({
            id: "mf-6",
            libraryId: 1,
            title: "Low Tide",
            matchedBy: "id"
          })
          expect(answer.result?.[1]).toMatchObject({
            id: "mf-6",
            artist: "Nadia Océano",
            album: "Tidal Silence",
            durationMs: 2000,
            matchedBy: "fuzzy"
          })
          expect(answer.result?.[2]).toBeNull()
          expect(answer.result?.[3]).toBeNull()
          // No path without library.filesystem, and no user data without a user.
          expect(answer.result?.[0]).not.toHaveProperty("path")
          expect(answer.result?.[0]).not.toHaveProperty("playCount")
        })
    )

    it.scoped("only the plugin's allowed libraries: with none allowed nothing matches", () =>
      Effect.gen(function* () {
        const plugin = yield* load({ libraries: [] })
        expect((yield* match(plugin, { songs })).result).toEqual([null, null, null, null])
      })
    )

    it.scoped("a user scope adds play counts; a user not allowed and an unknown one get the same error", () =>
      Effect.gen(function* () {
        const history = yield* ScrobbleHistory
        yield* history.record("alice", "mf-6", 100)
        yield* history.record("alice", "mf-6", 200)
        const plugin = yield* load({ libraries: "all", users: ["alice"] })
        const answer = yield* match(plugin, { songs: songs.slice(0, 1), opts: { username: "alice" } })
        expect(answer.result?.[0]).toMatchObject({ id: "mf-6", playCount: 2 })
        // Zero values are dropped on the wire, as Go's omitempty does: not starred, no rating.
        expect(answer.result?.[0]).not.toHaveProperty("starred")
        const errorOf = (username: string) =>
          Effect.map(match(plugin, { songs: songs.slice(0, 1), opts: { username } }), (r) =>
            r.error?.replace(JSON.stringify(username), "<user>")
          )
        const notAllowed = yield* errorOf("bob")
        expect(notAllowed).toContain("is not available to this plugin")
        expect(yield* errorOf("nobody-at-all")).toBe(notAllowed)
      })
    )

    it.scoped("path is sent only with library.filesystem", () =>
      Effect.gen(function* () {
        const loader = yield* PluginLoader
        const plugin = yield* loader.loadBytes(
          "matcher-fs",
          repackage("host-matcher", (m) => ({
            ...m,
            permissions: { library: { filesystem: true, reason: "reads files" }, matcher: {} }
          })),
          { libraries: [1] }
        )
        const answer = yield* match(plugin, { songs: songs.slice(0, 1) })
        expect(answer.result?.[0]).toMatchObject({ path: "Nadia Océano/Tidal Silence/01 - Low Tide.wav" })
      })
    )

    it.scoped("more songs than the cap is refused with what to do, and the plugin keeps answering", () =>
      Effect.gen(function* () {
        const plugin = yield* load({ libraries: [1] })
        const tooMany = Array.from({ length: MatcherService.maxSongsPerCall + 1 }, (_, i) => ({
          name: `song ${i}`
        }))
        const refused = yield* match(plugin, { songs: tooMany })
        expect(refused.error).toContain(`at most ${MatcherService.maxSongsPerCall}: split the list`)
        expect((yield* match(plugin, { songs: songs.slice(0, 1) })).result?.[0]).toMatchObject({ id: "mf-6" })
      })
    )

    it.scoped(
      "a hostile plugin flooding the matcher hits the cap while healthy plugins keep answering",
      () =>
        Effect.gen(function* () {
          const loader = yield* PluginLoader
          const hostile = yield* loader.loadBytes(
            "matcher-flood",
            repackage("host-matcher", (m) => m),
            {
              libraries: [1]
            }
          )
          const matcher = yield* load({ libraries: [1] })
          const outcome = yield* alongsideHealthy(
            yield* loadHealthy,
            Effect.all(
              {
                // Songs made up inside Wasm, far past the cap, call after call.
                floods: Effect.forEach([1, 2, 3, 4, 5], () =>
                  Effect.map(
                    hostile.call("flood_matcher", JSON.stringify({ count: 5000 })),
                    (bytes) =>
                      JSON.parse(decoder.decode(bytes ?? new Uint8Array())) as {
                        result?: unknown
                        error?: string
                      }
                  )
                ),
                // A healthy matcher plugin beside it still gets its matches.
                healthy: Effect.forEach([1, 2, 3], () => match(matcher, { songs: songs.slice(0, 1) }))
              },
              { concurrency: 2 }
            )
          )
          if (outcome._tag === "Left") return expect.fail(String(outcome.left))
          for (const flood of outcome.right.floods) {
            expect(flood.result).toBeUndefined()
            expect(flood.error).toBe(
              `5000 songs in one call; at most ${MatcherService.maxSongsPerCall}: split the list`
            )
          }
          for (const answer of outcome.right.healthy) {
            expect(answer.result?.[0]).toMatchObject({ id: "mf-6", matchedBy: "id" })
          }
          // The hostile plugin itself is answered normally once it asks within the cap.
          const within = yield* Effect.map(
            hostile.call("flood_matcher", JSON.stringify({ count: MatcherService.maxSongsPerCall })),
            (bytes) => JSON.parse(decoder.decode(bytes ?? new Uint8Array())) as { result?: Array<unknown> }
          )
          expect(within.result).toHaveLength(MatcherService.maxSongsPerCall)
        }),
      120_000
    )

    it.scoped("matcher requires library", () =>
      Effect.gen(function* () {
        const loader = yield* PluginLoader
        const failed = yield* Effect.flip(
          loader.loadBytes(
            "no-library",
            repackage("host-matcher", (m) => ({ ...m, permissions: { matcher: {} } }))
          )
        )
        expect(failed.message).toContain('requires the "library" permission')
      })
    )
  }
)

// A server's catalogue that knows MusicBrainz IDs and ISRCs (the embedded one does not).
const track = (id: string, title: string, extra: Partial<CatalogTrack> = {}): CatalogTrack => ({
  id,
  libraryId: 1,
  title,
  artist: "Artist",
  album: "Album",
  durationMs: 200_000,
  path: `${id}.flac`,
  ...extra
})
const tracks = [
  track("t1", "One", { mbid: "mb-1", isrc: "ISRC1" }),
  track("t2", "Two", { isrc: "ISRC2" }),
  track("t3", "Three", { libraryId: 2, mbid: "mb-3" }),
  track("t4", "Four", { album: "Other" }),
  track("t5", "Four")
]
const serverCatalog: TrackCatalog["Type"] = {
  find: (key, values, libraries) =>
    Effect.succeed(
      tracks.filter(
        (t) =>
          values.includes((key === "id" ? t.id : t[key]) ?? "") &&
          (libraries === "all" || libraries.includes(t.libraryId))
      )
    ),
  search: (title, libraries) =>
    Effect.succeed(
      tracks.filter(
        (t) =>
          t.title.toLowerCase().includes(title.toLowerCase()) &&
          (libraries === "all" || libraries.includes(t.libraryId))
      )
    ),
  userData: () => Effect.succeed(Option.none())
}
const run = (input: ReadonlyArray<SongRef>, libraries: "all" | ReadonlyArray<number> = "all") =>
  Effect.map(MatcherService.matchSongs(serverCatalog, input.map(normalizeSongRef), libraries), (results) =>
    results.map((r) => (r === undefined ? null : `${r.track.id}:${r.matchedBy}`))
  )

describe("Matcher order of keys", () => {
  it.effect("ID, then MusicBrainz ID, then ISRC, then fuzzy; a key outside the libraries falls through", () =>
    Effect.gen(function* () {
      expect(
        yield* run([
          { id: "t2", name: "x", mbid: "mb-1" },
          { id: "nope", name: "x", mbid: "mb-1", isrc: "ISRC2" },
          { name: "x", isrc: "ISRC2" },
          { name: "two", artist: "artist" }
        ])
      ).toEqual(["t2:id", "t1:mbid", "t2:isrc", "t2:fuzzy"])
      expect(yield* run([{ name: "Three", mbid: "mb-3" }], [1])).toEqual([null])
    })
  )

  it.effect("a fuzzy tie is broken by album, then by the lowest ID", () =>
    Effect.gen(function* () {
      expect(yield* run([{ name: "Four", album: "other" }, { name: "Four" }])).toEqual([
        "t4:fuzzy",
        "t4:fuzzy"
      ])
      expect(yield* run([{ name: "Four", album: "Album" }])).toEqual(["t5:fuzzy"])
    })
  )
})

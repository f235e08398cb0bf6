import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as http from "node:http"
import * as Lyrics from "../../src/manager/Lyrics.js"
import { PluginManager } from "../../src/manager/PluginManager.js"
import { testServer } from "../host/http/support.js"
import { captureLogs } from "../support/logs.js"
import { makeFolders, managerLayer, type TestFolders } from "../support/manager.js"
import { sampleTrack } from "../support/tracks.js"
import { eventually, realSleep } from "../support/wait.js"

const withLyrics = <A, E>(
  folders: TestFolders,
  options: Lyrics.LyricsOptions,
  body: Effect.Effect<A, E, Lyrics.Lyrics | PluginManager>,
  poolSize = 2
) =>
  Effect.scoped(
    Effect.provide(body, Lyrics.layer(options).pipe(Layer.provideMerge(managerLayer(folders, {}, poolSize))))
  )

/** Enables `lyrics` copies, each configured with its mode (`<id>` → mode). */
const setUp = (modes: Record<string, string>) =>
  Effect.flatMap(PluginManager, (manager) =>
    Effect.forEach(
      Object.entries(modes),
      ([id, mode]) =>
        Effect.all([manager.setConfig(id, { mode }), manager.setLibraries(id, "all"), manager.enable(id)]),
      { discard: true }
    )
  )

const copies = (...ids: ReadonlyArray<string>) => ids.map((as) => ({ id: "lyrics", as }))

describe("Lyrics", () => {
  it("parseSources splits and trims the setting", () => {
    expect(Lyrics.parseSources(" lrclib,, my-lyrics ")).toEqual(["lrclib", "my-lyrics"])
  })

  it.scopedLive(
    "sources are asked in order: empty answers and failures are skipped, the first lyrics win",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders(copies("empty", "broken", "srt", "lrc"))
        const logs = captureLogs()
        const answer = yield* logs.provide(
          withLyrics(
            folders,
            { sources: ["not-installed", "empty", "broken", "srt", "lrc"] },
            Effect.gen(function* () {
              yield* setUp({ empty: "none", broken: "fail", srt: "srt", lrc: "lrc" })
              return yield* Effect.flatMap(Lyrics.Lyrics, (l) => l.getLyrics(sampleTrack))
            })
          )
        )
        expect(Option.map(answer, (a) => [a.source, a.lyrics[0]!.format])).toEqual(
          Option.some(["srt", "srt"])
        )
        expect(
          logs.lines.some(
            (l) =>
              l.message.includes("lyrics source broken failed") &&
              l.message.includes("the lyrics service is down")
          )
        ).toBe(true)
      })
  )

  it.scopedLive("no source with lyrics is None", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(copies("empty"))
      const answer = yield* withLyrics(
        folders,
        { sources: ["empty"] },
        Effect.zipRight(
          setUp({ empty: "none" }),
          Effect.flatMap(Lyrics.Lyrics, (l) => l.getLyrics(sampleTrack))
        )
      )
      expect(answer).toEqual(Option.none())
    })
  )

  it.scopedLive("a plugin runs at most two lookups at once, however many are asked for", () =>
    Effect.gen(function* () {
      let inFlight = 0
      let most = 0
      const held: Array<http.ServerResponse> = []
      const server = yield* testServer((_request, response) => {
        inFlight++
        most = Math.max(most, inFlight)
        held.push(response)
      })
      const release = () => {
        for (const response of held.splice(0)) {
          inFlight--
          response.end("ok")
        }
      }
      const folders = yield* makeFolders(copies("slow"))
      const answers = yield* withLyrics(
        folders,
        { sources: ["slow"] },
        Effect.gen(function* () {
          const manager = yield* PluginManager
          // Configured before it is enabled, so it loads once, as configured.
          yield* manager.setConfig("slow", { mode: "upstream", upstream: server.url("/lyrics") })
          yield* manager.setNetworks("slow", ["127.0.0.1/32"])
          yield* manager.setLibraries("slow", "all")
          yield* manager.enable("slow")
          const lyrics = yield* Lyrics.Lyrics
          const tracks = Array.from({ length: 6 }, (_, i) => ({ ...sampleTrack, id: `mf-${i}` }))
          const all = yield* Effect.fork(
            Effect.forEach(tracks, (track) => lyrics.getLyrics(track), { concurrency: "unbounded" })
          )
          // Release held requests as they pile up, until every lookup got through.
          while (server.received.length < tracks.length) {
            yield* eventually(
              "two held lyrics requests",
              () => held.length >= 2 || server.received.length >= 6,
              30_000
            )
            // A window for a third request to show up if the gate let it through (the pool has 4
            // workers); it can only hide a broken gate, never fail a working one.
            yield* realSleep(50)
            release()
          }
          yield* eventually(
            "the last held requests",
            () => {
              release()
              return inFlight === 0
            },
            30_000
          )
          return yield* Fiber.join(all)
        }),
        4
      )
      expect(most).toBe(2)
      expect(answers.map((a) => Option.map(a, (x) => x.lyrics[0]!.lines[0]!.text))).toEqual(
        Array.from({ length: 6 }, (_, i) => Option.some(`Lyrics of mf-${i}`))
      )
    })
  )
})

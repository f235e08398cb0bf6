import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as LyricsProvider from "../../src/capabilities/LyricsProvider.js"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { captureLogs } from "../support/logs.js"
import { alongsideHealthy, loadHealthy } from "../support/neighbour.js"
import { repackage } from "../support/repackage.js"
import { sampleTrack } from "../support/tracks.js"

const load = (mode: string, options: { libraries?: "all" | ReadonlyArray<number> } = {}) =>
  Effect.flatMap(PluginLoader, (loader) =>
    loader.loadFile(fixture("lyrics"), { config: { mode }, ...options })
  )

const located = { ...sampleTrack, libraryId: 1, path: "Björk/Homogenic/03 Jóga.flac" }

layer(testEngine({ runtime: { poolSize: 2 } }), { excludeTestServices: true })("LyricsProvider", (it) => {
  it.scoped("LRC from inside Wasm arrives as timed lines, with xxx for a missing language", () =>
    Effect.gen(function* () {
      const lyrics = yield* LyricsProvider.fromPlugin(yield* load("lrc")).getLyrics(sampleTrack)
      expect(lyrics).toEqual([
        {
          lang: "xxx",
          synced: true,
          format: "lrc",
          displayArtist: "Björk",
          displayTitle: "Jóga",
          lines: [
            { startMs: 1500, text: "All these accidents" },
            { startMs: 5000, text: "That happen" },
            { startMs: 20000, text: "That happen" }
          ]
        }
      ])
    })
  )

  it.scoped("SRT, TTML and plain answers are parsed by their content", () =>
    Effect.gen(function* () {
      const srt = yield* LyricsProvider.fromPlugin(yield* load("srt")).getLyrics(sampleTrack)
      expect(srt.map((l) => [l.format, l.lang, l.lines.length])).toEqual([["srt", "en", 2]])
      const ttml = yield* LyricsProvider.fromPlugin(yield* load("ttml")).getLyrics(sampleTrack)
      expect(ttml[0]).toMatchObject({ format: "ttml", lang: "is", synced: true })
      expect(ttml[0]!.lines[1]).toEqual({ startMs: 5000, endMs: 7250, text: "That happen & more" })
      const plain = yield* LyricsProvider.fromPlugin(yield* load("plain")).getLyrics(sampleTrack)
      expect(plain).toEqual([
        {
          lang: "xxx",
          synced: false,
          format: "plain",
          lines: [{ text: "All these accidents" }, { text: "That happen" }]
        }
      ])
    })
  )

  it.scoped("unparseable and empty entries are skipped and logged; the rest are kept in order", () =>
    Effect.gen(function* () {
      const logs = captureLogs()
      const lyrics = yield* logs.provide(
        Effect.flatMap(load("mixed"), (plugin) => LyricsProvider.fromPlugin(plugin).getLyrics(sampleTrack))
      )
      expect(lyrics.map((l) => [l.lang, l.format])).toEqual([
        ["eng", "lrc"],
        ["por", "plain"]
      ])
      const skipped = logs.lines.filter((l) => l.message.includes("skipped")).map((l) => l.message)
      expect(skipped).toHaveLength(2)
      expect(skipped[0]).toContain("lyrics entry 1 skipped: the TTML document has no closing </tt>")
      expect(skipped[1]).toContain("lyrics entry 2 skipped")
    })
  )

  it.scoped("no lyrics, not implemented and a missing export are empty; a plugin error is an error", () =>
    Effect.gen(function* () {
      expect(yield* LyricsProvider.fromPlugin(yield* load("none")).getLyrics(sampleTrack)).toEqual([])
      expect(yield* LyricsProvider.fromPlugin(yield* load("not-implemented")).getLyrics(sampleTrack)).toEqual(
        []
      )
      const agent = yield* Effect.flatMap(PluginLoader, (l) => l.loadFile(fixture("agent-full")))
      expect(yield* LyricsProvider.fromPlugin(agent).getLyrics(sampleTrack)).toEqual([])
      const error = yield* Effect.flip(LyricsProvider.fromPlugin(yield* load("fail")).getLyrics(sampleTrack))
      expect(error).toMatchObject({ _tag: "PluginFailedError", pluginId: "lyrics" })
      expect(error.message).toContain("the lyrics service is down")
    })
  )

  it.scoped("a hostile answer over the size cap is refused while a healthy plugin keeps answering", () =>
    Effect.gen(function* () {
      const healthy = yield* loadHealthy
      const hog = yield* load("huge")
      const result = yield* alongsideHealthy(healthy, LyricsProvider.fromPlugin(hog).getLyrics(sampleTrack))
      expect(result._tag).toBe("Left")
      if (result._tag === "Left") {
        expect(result.left).toMatchObject({ _tag: "PluginOutputError", reason: "TooLarge" })
        expect(result.left.message).toContain(`limited to ${LyricsProvider.defaultMaxAnswerBytes} bytes`)
      }
      // Under a larger cap the same answer is read.
      const roomy = LyricsProvider.fromPlugin(hog, { maxAnswerBytes: 4 * 1024 * 1024 })
      expect((yield* roomy.getLyrics(sampleTrack)).length).toBe(2)
    })
  )

  it.scoped("libraryId and path reach the plugin only with library.filesystem and the library allowed", () =>
    Effect.gen(function* () {
      const seen = (lyrics: ReadonlyArray<{ readonly lines: ReadonlyArray<{ readonly text: string }> }>) =>
        JSON.parse(lyrics[0]!.lines.map((l) => l.text).join("\n")) as { track: Record<string, unknown> }
      const allowed = yield* load("track", { libraries: [1] })
      const sent = seen(yield* LyricsProvider.fromPlugin(allowed).getLyrics(located))
      expect(sent.track).toMatchObject({ id: "mf-1", libraryId: 1, path: "Björk/Homogenic/03 Jóga.flac" })

      const otherLibrary = yield* load("track", { libraries: [2] })
      const hidden = seen(yield* LyricsProvider.fromPlugin(otherLibrary).getLyrics(located))
      expect(hidden.track.id).toBe("mf-1")
      expect(hidden.track).not.toHaveProperty("libraryId")
      expect(hidden.track).not.toHaveProperty("path")

      const noFilesystem = yield* Effect.flatMap(PluginLoader, (loader) =>
        loader.loadBytes(
          "lyrics-nofs",
          repackage("lyrics", (m) => ({
            ...m,
            permissions: {
              ...(m.permissions as object),
              library: { reason: "stats only", filesystem: false }
            }
          })),
          { config: { mode: "track" }, libraries: "all" }
        )
      )
      const stripped = seen(yield* LyricsProvider.fromPlugin(noFilesystem).getLyrics(located))
      expect(stripped.track).not.toHaveProperty("path")
      expect(stripped.track).not.toHaveProperty("libraryId")
    })
  )
})

import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import type * as MetadataAgent from "../../src/capabilities/MetadataAgent.js"
import * as MetadataAgents from "../../src/manager/MetadataAgents.js"
import type { ManagerOptions } from "../../src/manager/PluginManager.js"
import { PluginManager } from "../../src/manager/PluginManager.js"
import { PluginFailedError } from "../../src/runtime/PluginError.js"
import { captureLogs } from "../support/logs.js"
import { makeFolders, managerLayer, type TestFolders } from "../support/manager.js"

const withAgents = <A, E>(
  folders: TestFolders,
  options: MetadataAgents.MetadataAgentsOptions,
  body: Effect.Effect<A, E, MetadataAgents.MetadataAgents | PluginManager>,
  managerOptions: Partial<ManagerOptions> = {}
) =>
  Effect.scoped(
    Effect.provide(
      body,
      MetadataAgents.layer(options).pipe(Layer.provideMerge(managerLayer(folders, managerOptions)))
    )
  )

const enable = (...ids: ReadonlyArray<string>) =>
  Effect.flatMap(PluginManager, (m) => Effect.forEach(ids, (id) => m.enable(id), { discard: true }))

/**
 * Enables plugins in a run of their own: the next run loads them on start, so no registry poll can
 * reload them mid-test (a reload rightly resets the backoff).
 */
const enabledFirst = (folders: TestFolders, ids: ReadonlyArray<string>) =>
  withAgents(folders, { agents: [] }, enable(...ids))

const ana = { id: "1", name: "Ana" }

/** A server agent that misses everything except what `overrides` answers. */
const serverAgent = (overrides: Partial<MetadataAgent.MetadataAgent>): MetadataAgent.MetadataAgent => {
  const miss = () => Effect.succeed(Option.none<never>())
  return {
    pluginId: "server",
    getArtistMBID: miss,
    getArtistURL: miss,
    getArtistBiography: miss,
    getSimilarArtists: miss,
    getArtistImages: miss,
    getArtistTopSongs: miss,
    getAlbumInfo: miss,
    getAlbumImages: miss,
    getSimilarSongsByTrack: miss,
    getSimilarSongsByAlbum: miss,
    getSimilarSongsByArtist: miss,
    ...overrides
  }
}

const sourceOf = <A>(answer: Option.Option<MetadataAgents.Answer<A>>) =>
  Option.getOrUndefined(Option.map(answer, (a) => a.agent))

describe("MetadataAgents", () => {
  it("parseAgents splits and trims the setting", () => {
    expect(MetadataAgents.parseAgents(" lastfm, spotify,,my-plugin ")).toEqual([
      "lastfm",
      "spotify",
      "my-plugin"
    ])
  })

  it.scopedLive("agents are asked in order; the first answer wins", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["agent-partial", "agent-full"])
      yield* withAgents(
        folders,
        { agents: ["agent-partial", "agent-full"] },
        Effect.gen(function* () {
          yield* enable("agent-partial", "agent-full")
          const agents = yield* MetadataAgents.MetadataAgents
          const bio = yield* agents.ask("getArtistBiography", ana)
          expect(bio).toEqual(Option.some({ agent: "agent-partial", value: "Biography for Ana" }))
          // agent-partial does not implement the URL: a miss, so agent-full answers.
          expect(sourceOf(yield* agents.ask("getArtistURL", ana))).toBe("agent-full")
          expect(yield* agents.getArtistURL(ana)).toEqual(Option.some("https://music.example.org/artist/Ana"))
          expect(Option.map(yield* agents.getSimilarArtists({ ...ana, limit: 2 }), (a) => a.length)).toEqual(
            Option.some(2)
          )
          expect(yield* agents.getArtistBiography({ id: "2", name: "Nobody" })).toEqual(Option.none())
        })
      )
      yield* withAgents(
        folders,
        { agents: ["agent-full", "agent-partial"] },
        Effect.gen(function* () {
          const agents = yield* MetadataAgents.MetadataAgents
          expect(sourceOf(yield* agents.ask("getArtistBiography", ana))).toBe("agent-full")
        })
      )
    })
  )

  it.scopedLive(
    "a failing agent is logged and skipped; unknown and unloaded agents are skipped silently",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders(["agent-full", "agent-partial", "scrobbler"])
        const logs = captureLogs()
        yield* logs.provide(
          withAgents(
            folders,
            { agents: ["nowhere", "scrobbler", "agent-full", "agent-partial"] },
            Effect.gen(function* () {
              const manager = yield* PluginManager
              const agents = yield* MetadataAgents.MetadataAgents
              // Nothing enabled yet: every agent is skipped, nothing is logged.
              expect(yield* agents.getArtistBiography(ana)).toEqual(Option.none())
              yield* manager.setUsers("scrobbler", "all")
              yield* enable("agent-full", "agent-partial", "scrobbler")
              yield* manager.setConfig("agent-full", { error: "upstream is down" })
              expect(yield* agents.ask("getArtistBiography", ana)).toEqual(
                Option.some({ agent: "agent-partial", value: "Biography for Ana" })
              )
              // Nobody else has album info: agent-full's failure makes it a miss, not an error.
              expect(yield* agents.getAlbumInfo({ name: "Homogenic", artist: "Björk" })).toEqual(
                Option.none()
              )
            })
          )
        )
        const warnings = logs.lines.filter((l) => l.level === "WARN")
        expect(warnings.map((l) => [l.annotations.agent, l.message])).toEqual([
          ["agent-full", "metadata agent agent-full failed in getArtistBiography: upstream is down"],
          ["agent-full", "metadata agent agent-full failed in getAlbumInfo: upstream is down"]
        ])
      })
  )

  it.scopedLive("server agents take part in the order, from the options or registered later", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["agent-partial", "agent-full"])
      const logs = captureLogs()
      const server = serverAgent({
        getArtistURL: (r) => Effect.succeed(Option.some(`https://server.example/${r.name}`)),
        getArtistBiography: (r) =>
          r.name === "Nobody"
            ? Effect.fail(
                new PluginFailedError({ pluginId: "lastfm", export: "bio", message: "lastfm said 500" })
              )
            : Effect.succeed(Option.none())
      })
      yield* logs.provide(
        withAgents(
          folders,
          { agents: ["agent-partial", "lastfm", "spotify", "agent-full"], named: { lastfm: server } },
          Effect.gen(function* () {
            yield* enable("agent-partial", "agent-full")
            const agents = yield* MetadataAgents.MetadataAgents
            expect(sourceOf(yield* agents.ask("getArtistBiography", ana))).toBe("agent-partial")
            expect(yield* agents.ask("getArtistURL", ana)).toEqual(
              Option.some({ agent: "lastfm", value: "https://server.example/Ana" })
            )
            expect(sourceOf(yield* agents.ask("getArtistMBID", ana))).toBe("agent-full")
            yield* agents.register(
              "spotify",
              serverAgent({ getArtistMBID: () => Effect.succeed(Option.some("spotify-mbid")) })
            )
            expect(yield* agents.ask("getArtistMBID", ana)).toEqual(
              Option.some({ agent: "spotify", value: "spotify-mbid" })
            )
            yield* agents.unregister("lastfm")
            expect(sourceOf(yield* agents.ask("getArtistURL", ana))).toBe("agent-full")
            yield* agents.register("lastfm", server)
            // agent-partial misses "Nobody", lastfm fails (logged), agent-full misses too.
            expect(yield* agents.getArtistBiography({ id: "9", name: "Nobody" })).toEqual(Option.none())
          })
        )
      )
      expect(logs.lines.filter((l) => l.level === "WARN").map((l) => l.message)).toEqual([
        "metadata agent lastfm failed in getArtistBiography: lastfm said 500"
      ])
    })
  )

  it.scoped("an agent that keeps timing out is backed off, then tried again (TestClock)", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["loop-export", "agent-full"])
      const logs = captureLogs()
      /** Timeouts of loop-export so far: each one is logged. */
      const timeouts = () =>
        logs.lines.filter(
          (l) => l.level === "WARN" && l.message.startsWith("metadata agent loop-export timed out")
        ).length
      yield* enabledFirst(folders, ["loop-export", "agent-full"])
      yield* logs.provide(
        withAgents(
          folders,
          {
            agents: ["loop-export", "agent-full"],
            backoff: { afterTimeouts: 3, initial: "1 minute", max: "3 minutes" }
          },
          Effect.gen(function* () {
            const agents = yield* MetadataAgents.MetadataAgents
            const asked = (expected: boolean) =>
              Effect.gen(function* () {
                const before = timeouts()
                const start = Date.now()
                expect(sourceOf(yield* agents.ask("getArtistBiography", ana))).toBe("agent-full")
                expect(timeouts() - before).toBe(expected ? 1 : 0)
                // A call that reached loop-export waited for its 200 ms timeout.
                if (expected) expect(Date.now() - start).toBeGreaterThanOrEqual(190)
              })
            for (let i = 0; i < 3; i++) yield* asked(true)
            yield* asked(false)
            yield* TestClock.adjust("59 seconds")
            yield* asked(false)
            yield* TestClock.adjust("1 second")
            // Tried again; one more timeout backs it off at once, for twice as long.
            yield* asked(true)
            yield* TestClock.adjust("1 minute")
            yield* asked(false)
            yield* TestClock.adjust("1 minute")
            yield* asked(true)
            // Capped at 3 minutes.
            yield* TestClock.adjust("3 minutes")
            yield* asked(true)
            yield* asked(false)
          }),
          { timeoutsMs: { "loop-export": 200 } }
        )
      )
      const backoffs = logs.lines.filter((l) => l.message.includes("in a row")).map((l) => l.message)
      expect(backoffs).toEqual([
        "metadata agent loop-export timed out 3 times in a row; skipping it for 1m",
        "metadata agent loop-export timed out 4 times in a row; skipping it for 2m",
        "metadata agent loop-export timed out 5 times in a row; skipping it for 3m",
        "metadata agent loop-export timed out 6 times in a row; skipping it for 3m"
      ])
    })
  )

  it.scoped("a reload (new config) clears the backoff", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["loop-export", "agent-full"])
      const logs = captureLogs()
      const timeouts = () =>
        logs.lines.filter((l) => l.message.startsWith("metadata agent loop-export timed out")).length
      yield* enabledFirst(folders, ["loop-export", "agent-full"])
      yield* logs.provide(
        withAgents(
          folders,
          { agents: ["loop-export", "agent-full"], backoff: { afterTimeouts: 2 } },
          Effect.gen(function* () {
            const manager = yield* PluginManager
            const agents = yield* MetadataAgents.MetadataAgents
            const tried = Effect.gen(function* () {
              const before = timeouts()
              yield* agents.getArtistBiography(ana)
              return timeouts() > before
            })
            expect(yield* tried).toBe(true)
            expect(yield* tried).toBe(true)
            expect(yield* tried).toBe(false)
            yield* manager.setConfig("loop-export", { any: "thing" })
            expect(yield* tried).toBe(true)
          }),
          { timeoutsMs: { "loop-export": 200 } }
        )
      )
    })
  )
})

import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Scrobbler from "../../src/capabilities/Scrobbler.js"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { sampleTrack } from "../support/tracks.js"
import { captureLogs } from "../support/logs.js"

const track = sampleTrack

const load = (id: string, config: Record<string, string> = {}) =>
  Effect.flatMap(PluginLoader, (loader) => loader.loadFile(fixture(id), { config, users: "all" }))

layer(testEngine({ runtime: { poolSize: 2 } }), { excludeTestServices: true })("Scrobbler", (it) => {
  for (const id of ["scrobbler", "scrobbler-draft"]) {
    it.scoped(`${id}: authorization comes from the plugin, and a user not allowed is never asked`, () =>
      Effect.gen(function* () {
        const yes = Scrobbler.fromPlugin(yield* load(id))
        expect(yield* yes.isAuthorized("alice")).toBe(true)
        const no = Scrobbler.fromPlugin(yield* load(id, { authorized: "false" }))
        expect(yield* no.isAuthorized("alice")).toBe(false)
        const denyBob = Scrobbler.fromPlugin(yield* load(id, { deny_user: "bob" }))
        expect(yield* denyBob.isAuthorized("bob")).toBe(false)
        expect(yield* denyBob.isAuthorized("alice")).toBe(true)
        const onlyAlice = Scrobbler.fromPlugin(yield* load(id), { allowsUser: (u) => u === "alice" })
        expect(yield* onlyAlice.isAuthorized("carol")).toBe(false)
        const refused = yield* Effect.flip(onlyAlice.scrobble({ username: "carol", track, timestamp: 1 }))
        expect(refused.kind).toBe("not_authorized")
      })
    )

    it.scoped(`${id}: now playing and scrobbles reach the plugin with the user and track`, () =>
      Effect.gen(function* () {
        const logs = captureLogs()
        yield* logs.provide(
          Effect.gen(function* () {
            const scrobbler = Scrobbler.fromPlugin(yield* load(id))
            yield* scrobbler.nowPlaying({ username: "alice", track, position: 10 })
            yield* scrobbler.scrobble({ username: "alice", track, timestamp: 1_764_000_000 })
          })
        )
        const lines = logs.lines.filter((l) => l.annotations.plugin === id).map((l) => l.message)
        expect(lines).toContain("now_playing alice Jóga")
        expect(lines).toContain("scrobble alice Jóga 1764000000")
      })
    )

    for (const kind of ["not_authorized", "retry_later", "unrecoverable"] as const) {
      it.scoped(`${id}: a ${kind} failure is classified as ${kind}`, () =>
        Effect.gen(function* () {
          const scrobbler = Scrobbler.fromPlugin(
            yield* load(id, { error: "remote said no", error_type: kind })
          )
          const error = yield* Effect.flip(scrobbler.scrobble({ username: "alice", track, timestamp: 1 }))
          expect(error).toMatchObject({ _tag: "ScrobblerError", kind, pluginId: id })
          expect(error.message).toContain("remote said no")
          const nowPlaying = yield* Effect.flip(
            scrobbler.nowPlaying({ username: "alice", track, position: 1 })
          )
          expect(nowPlaying.kind).toBe(kind)
        })
      )
    }

    it.scoped(`${id}: an unknown error type is unrecoverable`, () =>
      Effect.gen(function* () {
        const scrobbler = Scrobbler.fromPlugin(yield* load(id, { error: "odd", error_type: "sideways" }))
        const error = yield* Effect.flip(scrobbler.scrobble({ username: "alice", track, timestamp: 1 }))
        expect(error.kind).toBe("unrecoverable")
      })
    )
  }

  it.scoped("a trap during a scrobble is an unrecoverable scrobbler error that keeps the call's tag", () =>
    Effect.gen(function* () {
      const trap = yield* load("trap")
      const scrobbler = Scrobbler.fromPlugin({
        id: "trap",
        exports: new Set(["nd_scrobbler_scrobble"]),
        allowsUser: () => true,
        // The trap fixture traps in its only export; route the scrobble there.
        call: (_name, input) => trap.call("nd_get_artist_biography", input)
      })
      const error = yield* Effect.flip(scrobbler.scrobble({ username: "alice", track, timestamp: 1 }))
      expect(error).toMatchObject({ kind: "unrecoverable", callError: "PluginTrapError" })
    })
  )

  it.effect("the draft's JSON error output is also read with a camelCase errorType", () =>
    Effect.gen(function* () {
      const scrobbler = Scrobbler.fromPlugin({
        id: "camel",
        exports: new Set(["nd_scrobbler_scrobble"]),
        allowsUser: () => true,
        call: () => Effect.succeed(new TextEncoder().encode('{"error":"busy","errorType":"retry_later"}'))
      })
      const error = yield* Effect.flip(scrobbler.scrobble({ username: "alice", track, timestamp: 1 }))
      expect(error).toMatchObject({ kind: "retry_later", message: "busy" })
    })
  )

  const report = (state: Scrobbler.PlaybackState): Scrobbler.PlaybackReport => ({
    username: "alice",
    track,
    state,
    positionMs: 61_000,
    playbackRate: 1.5,
    playerId: "p-1",
    playerName: "Web",
    timestamp: 1_764_000_000
  })

  it.scoped("playback reports reach the plugin with state, position, rate and player", () =>
    Effect.gen(function* () {
      const logs = captureLogs()
      yield* logs.provide(
        Effect.gen(function* () {
          const scrobbler = Scrobbler.fromPlugin(yield* load("scrobbler"))
          for (const state of Scrobbler.PlaybackState.literals) yield* scrobbler.playbackReport(report(state))
        })
      )
      const lines = logs.lines.filter((l) => l.message.startsWith("playback ")).map((l) => l.message)
      expect(lines).toEqual(
        Scrobbler.PlaybackState.literals.map((state) => `playback alice ${state} 61000 1.5 Web Jóga`)
      )
    })
  )

  it.scoped("a playback report to a plugin without the export, or answering not implemented, succeeds", () =>
    Effect.gen(function* () {
      const draft = yield* load("scrobbler-draft")
      expect(draft.exports.has("nd_scrobbler_playback_report")).toBe(false)
      yield* Scrobbler.fromPlugin(draft).playbackReport(report("playing"))
      yield* Scrobbler.fromPlugin(yield* load("scrobbler", { playback: "not-implemented" })).playbackReport(
        report("playing")
      )
    })
  )

  it.scoped(
    "a failed playback report is classified like a scrobble; a user not allowed is refused unasked",
    () =>
      Effect.gen(function* () {
        const busy = Scrobbler.fromPlugin(
          yield* load("scrobbler", { error: "busy", error_type: "retry_later" })
        )
        const error = yield* Effect.flip(busy.playbackReport(report("paused")))
        expect(error).toMatchObject({ kind: "retry_later", callError: "PluginFailedError" })
        const onlyBob = Scrobbler.fromPlugin(yield* load("scrobbler"), { allowsUser: (u) => u === "bob" })
        expect((yield* Effect.flip(onlyBob.playbackReport(report("paused")))).kind).toBe("not_authorized")
      })
  )
})

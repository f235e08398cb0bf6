import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import { rmSync } from "node:fs"
import { join } from "node:path"
import type { AccessList } from "../../src/host/HostFunctions.js"
import { type ManagerOptions, PluginManager } from "../../src/manager/PluginManager.js"
import * as Scrobblers from "../../src/manager/Scrobblers.js"
import { ScrobbleHistory } from "../../src/server/ScrobbleHistory.js"
import { sampleTrack } from "../support/tracks.js"
import { type CapturedLog, captureLogs } from "../support/logs.js"
import { makeFolders, managerLayer, type TestFolders } from "../support/manager.js"
import { eventually } from "../support/wait.js"

const track = sampleTrack

const withScrobblers = <A, E>(
  folders: TestFolders,
  body: Effect.Effect<A, E, Scrobblers.Scrobblers | PluginManager | ScrobbleHistory>,
  options: Partial<Scrobblers.ScrobblersOptions> = {},
  managerOptions: Partial<ManagerOptions> = {}
) =>
  Effect.scoped(
    Effect.provide(
      body,
      Scrobblers.layer(options).pipe(Layer.provideMerge(managerLayer(folders, managerOptions)), Layer.orDie)
    )
  )

/** Allows `users`, sets `config` and enables the plugin. */
const setUp = (id: string, config: Record<string, string> = {}, users: AccessList<string> = "all") =>
  Effect.gen(function* () {
    const manager = yield* PluginManager
    yield* manager.setUsers(id, users)
    yield* manager.setConfig(id, config)
    yield* manager.enable(id)
  })

const configure = (id: string, config: Record<string, string>) =>
  Effect.flatMap(PluginManager, (m) => m.setConfig(id, config))

const retryLater = { error: "rate limited", error_type: "retry_later" }

const pluginLines = (lines: ReadonlyArray<CapturedLog>, id: string) =>
  lines
    .filter((l) => l.annotations.plugin === id && /^(now_playing|scrobble) /.test(l.message))
    .map((l) => l.message)

const service = Scrobblers.Scrobblers

// Under the TestClock, every registry poll due in an adjusted span would run: keep them rare.
const rarePolls = { pollMs: 86_400_000 }

describe("Scrobblers", () => {
  it.scopedLive("sends to authorized scrobblers; skips users not allowed or not authorized", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["scrobbler", "scrobbler-draft", "agent-full"])
      const logs = captureLogs()
      yield* logs.provide(
        withScrobblers(
          folders,
          Effect.gen(function* () {
            yield* setUp("scrobbler", { deny_user: "carol" }, ["alice", "carol"])
            yield* setUp("scrobbler-draft", {}, ["alice", "bob"])
            yield* setUp("agent-full")
            const scrobblers = yield* service
            expect(yield* scrobblers.nowPlaying("alice", track, 10)).toEqual([
              { pluginId: "scrobbler", outcome: "sent" },
              { pluginId: "scrobbler-draft", outcome: "sent" }
            ])
            expect(yield* scrobblers.scrobble("bob", track, 1_764_000_000)).toEqual([
              { pluginId: "scrobbler", outcome: "not_allowed" },
              { pluginId: "scrobbler-draft", outcome: "sent" }
            ])
            expect(yield* scrobblers.scrobble("carol", track, 1_764_000_001)).toEqual([
              { pluginId: "scrobbler", outcome: "not_authorized" },
              { pluginId: "scrobbler-draft", outcome: "not_allowed" }
            ])
            // isAuthorized saying false is not a refusal: nothing is marked.
            expect(yield* scrobblers.unauthorized).toEqual([])
          })
        )
      )
      expect(pluginLines(logs.lines, "scrobbler")).toEqual(["now_playing alice Jóga"])
      expect(pluginLines(logs.lines, "scrobbler-draft")).toEqual([
        "now_playing alice Jóga",
        "scrobble bob Jóga 1764000000"
      ])
    })
  )

  it.scopedLive("not_authorized marks the user until the plugin authorizes them again", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["scrobbler"])
      const logs = captureLogs()
      yield* logs.provide(
        withScrobblers(
          folders,
          Effect.gen(function* () {
            yield* setUp("scrobbler", { error: "session expired", error_type: "not_authorized" })
            const scrobblers = yield* service
            expect(yield* scrobblers.scrobble("alice", track, 1)).toEqual([
              { pluginId: "scrobbler", outcome: "not_authorized" }
            ])
            expect(yield* scrobblers.unauthorized).toMatchObject([
              { pluginId: "scrobbler", username: "alice" }
            ])
            // Not retried: nothing queued.
            expect(yield* scrobblers.pending).toEqual([])
            // The user's session is gone: the plugin says so, and the user is skipped.
            yield* configure("scrobbler", { authorized: "false" })
            expect(yield* scrobblers.nowPlaying("alice", track, 0)).toEqual([
              { pluginId: "scrobbler", outcome: "not_authorized" }
            ])
            expect(yield* scrobblers.scrobble("alice", track, 2)).toEqual([
              { pluginId: "scrobbler", outcome: "not_authorized" }
            ])
            expect(yield* scrobblers.unauthorized).toHaveLength(1)
            // Linked again: the next send checks, clears the mark and goes through.
            yield* configure("scrobbler", {})
            expect(yield* scrobblers.scrobble("alice", track, 3)).toEqual([
              { pluginId: "scrobbler", outcome: "sent" }
            ])
            expect(yield* scrobblers.unauthorized).toEqual([])
          })
        )
      )
      expect(pluginLines(logs.lines, "scrobbler")).toEqual(["scrobble alice Jóga 3"])
      const notes = logs.lines.filter((l) => l.message.includes("authoriz")).map((l) => [l.level, l.message])
      expect(notes).toEqual([
        [
          "WARN",
          "scrobbler scrobbler says user alice is not authorized; skipping them until it says they are: scrobbler(not_authorized): session expired"
        ],
        ["INFO", "scrobbler scrobbler authorizes user alice again"]
      ])
    })
  )

  it.scoped("retry_later is queued with the user and sent exactly once when the plugin recovers", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["scrobbler"])
      // Set up in a first run, so that no reload (which retries queued rows at once) comes later.
      yield* withScrobblers(folders, setUp("scrobbler", retryLater))
      const logs = captureLogs()
      yield* logs.provide(
        withScrobblers(
          folders,
          Effect.gen(function* () {
            const scrobblers = yield* service
            // The start-up pass has noted the loaded version.
            yield* scrobblers.flush
            expect(yield* scrobblers.scrobble("alice", track, 1)).toEqual([
              { pluginId: "scrobbler", outcome: "queued" }
            ])
            // A second one waits behind the first, in order, without being sent.
            expect(yield* scrobblers.scrobble("alice", track, 2)).toEqual([
              { pluginId: "scrobbler", outcome: "queued" }
            ])
            // Now playing is never queued.
            expect(yield* scrobblers.nowPlaying("alice", track, 5)).toEqual([
              { pluginId: "scrobbler", outcome: "dropped" }
            ])
            const queued = yield* scrobblers.pending
            expect(queued).toMatchObject([
              { pluginId: "scrobbler", username: "alice", attempts: 1, nextAttemptAt: 30_000, createdAt: 0 },
              { pluginId: "scrobbler", username: "alice", attempts: 0, nextAttemptAt: 0 }
            ])
            expect(JSON.parse(queued[0]!.request)).toEqual({ username: "alice", track, timestamp: 1 })
            // Not due yet: a pass leaves it alone.
            yield* scrobblers.flush
            expect((yield* scrobblers.pending)[0]?.attempts).toBe(1)
            // Due after 30 s: the background pass tries again, fails, and doubles the delay.
            yield* TestClock.adjust("30 seconds")
            yield* eventually("the second attempt", () =>
              logs.lines.some((l) => l.message.includes("attempt 2"))
            )
            expect(yield* scrobblers.pending).toMatchObject([
              { attempts: 2, nextAttemptAt: 90_000 },
              { attempts: 0 }
            ])
            // The plugin recovers (a reload): its rows are retried at the next pass, in order.
            yield* configure("scrobbler", {})
            yield* scrobblers.flush
            expect(yield* scrobblers.pending).toEqual([])
            yield* TestClock.adjust("5 minutes")
            yield* scrobblers.flush
          }),
          {},
          rarePolls
        )
      )
      expect(pluginLines(logs.lines, "scrobbler")).toEqual(["scrobble alice Jóga 1", "scrobble alice Jóga 2"])
    })
  )

  it.scoped("unrecoverable is dropped; rows that never get through age out", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["scrobbler-draft"])
      const logs = captureLogs()
      yield* logs.provide(
        withScrobblers(
          folders,
          Effect.gen(function* () {
            yield* setUp("scrobbler-draft", { error: "unknown track", error_type: "unrecoverable" })
            const scrobblers = yield* service
            expect(yield* scrobblers.scrobble("alice", track, 1)).toEqual([
              { pluginId: "scrobbler-draft", outcome: "dropped" }
            ])
            expect(yield* scrobblers.pending).toEqual([])
            yield* configure("scrobbler-draft", retryLater)
            yield* scrobblers.flush
            expect(yield* scrobblers.scrobble("alice", track, 2)).toEqual([
              { pluginId: "scrobbler-draft", outcome: "queued" }
            ])
            yield* TestClock.adjust("23 hours")
            yield* scrobblers.flush
            expect(yield* scrobblers.pending).toHaveLength(1)
            yield* TestClock.adjust("1 hour")
            yield* TestClock.adjust("1 second")
            yield* scrobblers.flush
            expect(yield* scrobblers.pending).toEqual([])
          }),
          { tick: "12 hours" },
          rarePolls
        )
      )
      const warnings = logs.lines.filter((l) => l.level === "WARN").map((l) => l.message)
      expect(warnings).toContain(
        "scrobbler scrobbler-draft refused a scrobble for alice (unrecoverable); dropped: unknown track"
      )
      expect(warnings).toContain(
        "dropped 1 queued scrobbles for plugin scrobbler-draft: not accepted within 1d"
      )
    })
  )

  it.scopedLive("the queue survives a restart and is delivered by the background pass", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["scrobbler"])
      const logs = captureLogs()
      yield* withScrobblers(
        folders,
        Effect.gen(function* () {
          yield* setUp("scrobbler", retryLater)
          yield* (yield* service).scrobble("alice", track, 1_764_000_000)
        })
      )
      yield* logs.provide(
        withScrobblers(
          folders,
          Effect.gen(function* () {
            const scrobblers = yield* service
            const rows = yield* scrobblers.pending
            expect(rows).toMatchObject([{ pluginId: "scrobbler", username: "alice" }])
            yield* configure("scrobbler", {})
            yield* eventually("delivery", () => pluginLines(logs.lines, "scrobbler").length === 1)
            yield* eventually("an empty queue", () =>
              logs.lines.some((l) =>
                l.message.startsWith(`queued scrobble ${rows[0]?.id} for alice delivered`)
              )
            )
            expect(yield* scrobblers.pending).toEqual([])
          }),
          { tick: "50 millis" }
        )
      )
      expect(pluginLines(logs.lines, "scrobbler")).toEqual(["scrobble alice Jóga 1764000000"])
    })
  )

  it.scopedLive("a removed plugin's rows and marks are discarded", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["scrobbler", "scrobbler-draft"])
      const logs = captureLogs()
      yield* logs.provide(
        withScrobblers(
          folders,
          Effect.gen(function* () {
            yield* setUp("scrobbler", retryLater)
            yield* setUp("scrobbler-draft", retryLater)
            const scrobblers = yield* service
            yield* scrobblers.scrobble("alice", track, 1)
            yield* configure("scrobbler", { error: "who?", error_type: "not_authorized" })
            yield* scrobblers.scrobble("bob", track, 2)
            expect((yield* scrobblers.pending).map((r) => [r.pluginId, r.username]).sort()).toEqual([
              ["scrobbler", "alice"],
              ["scrobbler-draft", "alice"],
              ["scrobbler-draft", "bob"]
            ])
            expect(yield* scrobblers.unauthorized).toMatchObject([{ pluginId: "scrobbler", username: "bob" }])
            rmSync(join(folders.folder, "scrobbler.ndp"))
            yield* (yield* PluginManager).rescan
            yield* scrobblers.flush
            expect((yield* scrobblers.pending).map((r) => [r.pluginId, r.username])).toEqual([
              ["scrobbler-draft", "alice"],
              ["scrobbler-draft", "bob"]
            ])
            expect(yield* scrobblers.unauthorized).toEqual([])
          })
        )
      )
      expect(logs.lines.map((l) => l.message)).toContain(
        "plugin scrobbler was removed; discarded its 1 queued scrobbles"
      )
    })
  )

  it.scopedLive(
    "playback reports: sent where authorized, never queued when they fail, skipped unauthorized",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders(["scrobbler", { id: "scrobbler", as: "busy" }, "scrobbler-draft"])
        const logs = captureLogs()
        const report = {
          username: "alice",
          track,
          state: "playing" as const,
          positionMs: 1_000,
          playbackRate: 1,
          playerId: "p-1",
          playerName: "Web",
          timestamp: 1_764_000_000
        }
        const [deliveries, denied, pending] = yield* logs.provide(
          withScrobblers(
            folders,
            Effect.gen(function* () {
              yield* setUp("scrobbler", { deny_user: "carol" })
              yield* setUp("busy", retryLater)
              yield* setUp("scrobbler-draft")
              const scrobblers = yield* service
              const deliveries = yield* scrobblers.playbackReport(report)
              const denied = yield* scrobblers.playbackReport({ ...report, username: "carol" })
              return [deliveries, denied, yield* scrobblers.pending] as const
            })
          )
        )
        const byPlugin = (list: ReadonlyArray<Scrobblers.Delivery>) =>
          Object.fromEntries(list.map((d) => [d.pluginId, d.outcome]))
        expect(byPlugin(deliveries)).toEqual({
          scrobbler: "sent",
          busy: "dropped",
          "scrobbler-draft": "sent"
        })
        expect(byPlugin(denied).scrobbler).toBe("not_authorized")
        expect(pending).toEqual([])
        const played = logs.lines.filter((l) => l.message.startsWith("playback ")).map((l) => l.message)
        expect(played).toEqual(["playback alice playing 1000 1 Web Jóga"])
        expect(
          logs.lines.some((l) => l.message.includes("failed a playback report for alice (retry_later"))
        ).toBe(true)
      })
  )

  it.scopedLive("every scrobble is recorded in the engine's scrobble history", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["scrobbler"])
      const recorded = yield* withScrobblers(
        folders,
        Effect.gen(function* () {
          yield* setUp("scrobbler", { authorized: "false" })
          const scrobblers = yield* service
          yield* scrobblers.scrobble("alice", track, 1_764_000_000)
          yield* scrobblers.scrobble("alice", { ...track, id: "mf-2" }, 1_764_000_300)
          const history = yield* ScrobbleHistory
          return yield* history.slice("alice", { descending: false, limit: 10, offset: 0 })
        })
      )
      // Recorded although the only scrobbler refused the user: the history is the server's, not the plugin's.
      expect(recorded.map((s) => [s.mediaFileId, s.submissionTime])).toEqual([
        ["mf-1", 1_764_000_000],
        ["mf-2", 1_764_000_300]
      ])
    })
  )
})

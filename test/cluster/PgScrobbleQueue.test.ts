/**
 * The scrobble retry queue shared by the nodes of a cluster (its PostgreSQL database): each node is
 * the real manager, engine and `Scrobblers` over its own folders, the queue on one database. A
 * scrobble queued for retry by a node that is gone is delivered once, by one of the others, even
 * while they drain at the same time; a dead node's drain lease holds the queue until it runs out.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { PluginManager } from "../../src/manager/PluginManager.js"
import * as ScrobbleQueue from "../../src/manager/ScrobbleQueue.js"
import * as Scrobblers from "../../src/manager/Scrobblers.js"
import * as PgStorage from "../../src/storage/PgStorage.js"
import { sharedAsStorage } from "../../src/storage/Storage.js"
import { captureLogs } from "../support/logs.js"
import { makeFolders, managerLayer } from "../support/manager.js"
import { postgresServer } from "../support/postgres.js"
import { sampleTrack } from "../support/tracks.js"
import { realSleep } from "../support/wait.js"

// Passes run when the test says (flush); registry polls stay out of the way.
const quiet = { tick: "1 hour", drainLease: "3 seconds" } as const

/** One node: its own plugins and data folders, the queue in the database at `url`. */
const node = (url: string) =>
  Effect.gen(function* () {
    const folders = yield* makeFolders(["scrobbler"])
    return Scrobblers.layer(quiet).pipe(
      Layer.provide(sharedAsStorage),
      Layer.provide(PgStorage.layerUrl(url)),
      Layer.provideMerge(managerLayer(folders, { pollMs: 86_400_000 })),
      Layer.orDie
    )
  })

const enableScrobbler = (config: Record<string, string>) =>
  Effect.gen(function* () {
    const manager = yield* PluginManager
    yield* manager.setUsers("scrobbler", "all")
    yield* manager.setConfig("scrobbler", config)
    yield* manager.enable("scrobbler")
  })

describe("the scrobble retry queue on PostgreSQL", () => {
  it.scopedLive(
    "retry_later scrobbles of a node that is gone are delivered once, in order, by the others",
    () =>
      Effect.gen(function* () {
        const server = yield* postgresServer
        const url = yield* server.createDatabase("scrobbles")
        const logs = captureLogs()
        const delivered = () =>
          logs.lines
            .filter((l) => l.annotations.plugin === "scrobbler" && /^scrobble /.test(l.message))
            .map((l) => l.message)

        // Node A: the scrobbler asks to retry; the first scrobble is queued, the next two wait behind it.
        const scopeA = yield* Scope.make()
        const a = yield* Layer.buildWithScope(yield* node(url), scopeA)
        const onA = <X, E>(effect: Effect.Effect<X, E, Scrobblers.Scrobblers | PluginManager>) =>
          logs.provide(Effect.provide(effect, a))
        yield* onA(enableScrobbler({ error: "rate limited", error_type: "retry_later" }))
        const scrobblersA = Context.get(a, Scrobblers.Scrobblers)
        for (const timestamp of [1, 2, 3]) {
          expect(yield* onA(scrobblersA.scrobble("alice", sampleTrack, timestamp))).toEqual([
            { pluginId: "scrobbler", outcome: "queued" }
          ])
        }
        expect(yield* scrobblersA.pending).toHaveLength(3)
        // The queue as any node sees it.
        const shared = yield* Layer.build(Layer.provide(sharedAsStorage, PgStorage.layerUrl(url)))
        const store = yield* ScrobbleQueue.make.pipe(Effect.provide(shared))
        yield* Scope.close(scopeA, Exit.void)

        // Nodes B and C, where the scrobbler accepts.
        const b = yield* Layer.build(yield* node(url))
        const c = yield* Layer.build(yield* node(url))
        for (const context of [b, c]) yield* logs.provide(Effect.provide(enableScrobbler({}), context))
        const flushBoth = Effect.all(
          [b, c].map((context) => logs.provide(Context.get(context, Scrobblers.Scrobblers).flush)),
          { concurrency: "unbounded" }
        )
        const scrobblersB = Context.get(b, Scrobblers.Scrobblers)
        // A died while draining: its lease holds the plugin's queue until it runs out. Meanwhile
        // neither node sends anything, and nothing is lost.
        const now = Date.now()
        expect(yield* store.claimDrain("scrobbler", "node-a", now, now + 8_000)).toBe(true)
        yield* flushBoth
        expect(delivered()).toEqual([])
        expect(yield* scrobblersB.pending).toHaveLength(3)

        // Both nodes drain again and again, at the same time, until the queue is empty.
        const deadline = Date.now() + 120_000
        while ((yield* scrobblersB.pending).length > 0) {
          if (Date.now() > deadline) throw new Error("timed out waiting for the queue to drain")
          yield* flushBoth
          yield* realSleep(200)
        }
        yield* Effect.all([flushBoth, flushBoth], { concurrency: "unbounded" })
        expect(delivered()).toEqual([
          "scrobble alice Jóga 1",
          "scrobble alice Jóga 2",
          "scrobble alice Jóga 3"
        ])
      })
  )
})

/**
 * An input over `maxInputBytes` fails as `PluginInputTooLargeError`, naming the limit and how to
 * raise it, while a neighbour keeps answering; the scrobble queue drops such a scrobble instead of
 * retrying it until it expires.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as MetadataAgent from "../../src/capabilities/MetadataAgent.js"
import * as Engine from "../../src/Engine.js"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import * as PluginManager from "../../src/manager/PluginManager.js"
import * as Registry from "../../src/manager/Registry.js"
import * as Scrobblers from "../../src/manager/Scrobblers.js"
import { fixture } from "../support/fixtures.js"
import { makeFolders, type TestFolders } from "../support/manager.js"
import { sampleTrack } from "../support/tracks.js"

const LIMIT = 600

/** Manager, engine (inputs up to `LIMIT` bytes) and scrobblers over temporary folders. */
const scrobblersLayer = (folders: TestFolders) =>
  Scrobblers.layer({ tick: "1 hour" }).pipe(
    Layer.provideMerge(
      PluginManager.layer({ ...PluginManager.defaultManagerOptions(folders.folder), pollMs: 86_400_000 })
    ),
    Layer.provideMerge(Registry.layer),
    Layer.provideMerge(
      Engine.layer({ dataFolder: folders.dataFolder, runtime: { poolSize: 1, maxInputBytes: LIMIT } })
    ),
    Layer.orDie
  )

describe("input over maxInputBytes", () => {
  it.scopedLive("fails typed, names the limit and the setting, and the neighbour still answers", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders()
      const program = Effect.gen(function* () {
        const pluginLoader = yield* PluginLoader
        const agent = yield* pluginLoader.loadFile(fixture("agent-full"))
        const neighbour = MetadataAgent.fromPlugin(yield* pluginLoader.loadFile(fixture("agent-full")))
        const big = JSON.stringify({ id: "ar-1", name: "x".repeat(LIMIT) })
        const error = yield* Effect.flip(agent.call("nd_get_artist_biography", big))
        expect(error).toMatchObject({
          _tag: "PluginInputTooLargeError",
          pluginId: "agent-full",
          export: "nd_get_artist_biography",
          limitBytes: LIMIT,
          inputBytes: new TextEncoder().encode(big).byteLength
        })
        expect(error.message).toContain(`limit of ${LIMIT} bytes`)
        expect(error.message).toContain("maxInputBytes")
        // Exactly at the limit still runs.
        const atLimit = JSON.stringify({ id: "ar-1", name: "y" }).padEnd(LIMIT, " ")
        expect(yield* agent.call("nd_get_artist_biography", atLimit)).not.toBeNull()
        expect(yield* neighbour.getArtistBiography({ id: "ar-1", name: "Healthy" })).toEqual(
          Option.some("Biography for Healthy")
        )
      })
      yield* Effect.provide(
        program,
        Engine.layer({ dataFolder: folders.dataFolder, runtime: { poolSize: 1, maxInputBytes: LIMIT } })
      )
    })
  )

  it.scopedLive("the scrobble queue drops an oversize scrobble instead of retrying it", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["scrobbler"])
      yield* Effect.provide(
        Effect.gen(function* () {
          const manager = yield* PluginManager.PluginManager
          yield* manager.setUsers("scrobbler", "all")
          yield* manager.enable("scrobbler")
          const scrobblers = yield* Scrobblers.Scrobblers
          // A small scrobble goes through, so the plugin itself is fine.
          expect(yield* scrobblers.scrobble("alice", sampleTrack, 1_764_000_000)).toEqual([
            { pluginId: "scrobbler", outcome: "sent" }
          ])
          const huge = { ...sampleTrack, title: "t".repeat(LIMIT) }
          expect(yield* scrobblers.scrobble("alice", huge, 1_764_000_001)).toEqual([
            { pluginId: "scrobbler", outcome: "dropped" }
          ])
          expect(yield* scrobblers.pending).toEqual([])
        }),
        scrobblersLayer(folders)
      )
    })
  )
})

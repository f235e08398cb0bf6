/** A healthy plugin that must keep answering while a hostile one misbehaves in the same engine. */
import { expect } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as MetadataAgent from "../../src/capabilities/MetadataAgent.js"
import { type LoadedPlugin, PluginLoader } from "../../src/loader/PluginLoader.js"
import { fixture } from "./fixtures.js"
import { eventually, realSleep } from "./wait.js"

const artist = { id: "ar-1", name: "Healthy" }

/** `agent-full`, the healthy neighbour. */
export const loadHealthy = Effect.flatMap(PluginLoader, (loader) => loader.loadFile(fixture("agent-full")))

/**
 * Runs `hostile` while `healthy` answers continuously; checks every healthy answer, that there was
 * at least one, and one more after the hostile run. Returns the hostile effect's result.
 */
export const alongsideHealthy = <A, E, R>(healthy: LoadedPlugin, hostile: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const agent = MetadataAgent.fromPlugin(healthy)
    let answered = 0
    const keepAnswering = Effect.gen(function* () {
      for (;;) {
        const answer = yield* agent.getArtistBiography(artist)
        expect(answer).toEqual(Option.some("Biography for Healthy"))
        answered++
        yield* realSleep(5)
      }
    })
    const fiber = yield* Effect.fork(keepAnswering)
    const result = yield* Effect.either(hostile)
    yield* eventually("a healthy answer", () => answered > 0, 30_000)
    const exit = yield* Fiber.interrupt(fiber)
    // Interrupted is the expected end; any other failure is a wrong or failed healthy answer.
    expect(Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? Cause.pretty(exit.cause) : "").toBe(
      ""
    )
    expect(yield* agent.getArtistBiography(artist)).toEqual(Option.some("Biography for Healthy"))
    return result
  })

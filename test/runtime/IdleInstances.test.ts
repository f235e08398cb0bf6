/**
 * Idle plugin instances are released (docs/decisions/0037-memory-grows-with-use.md): an instance
 * unused for `instanceIdleMs` is dropped from its worker, its module state with it, and the next
 * call instantiates the plugin again and answers as before.
 */
import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { realSleep } from "../support/wait.js"

const decoder = new TextDecoder()
const text = (bytes: Uint8Array | null) => decoder.decode(bytes ?? new Uint8Array(0))

// One worker, so every call meets the same instance while it lives.
layer(testEngine({ runtime: { poolSize: 1, maxBurstWorkers: 0, instanceIdleMs: 200 } }), {
  excludeTestServices: true
})("idle instances", (it) => {
  it.scoped(
    "an instance unused for instanceIdleMs is dropped, and the next call starts a fresh one",
    () =>
      Effect.gen(function* () {
        const loader = yield* PluginLoader
        const agent = yield* loader.loadFile(fixture("agent-full"))
        yield* agent.call("remember", "kept in a module global")
        // Poll without calling (a call would keep the instance alive): wait, then look once.
        const deadline = Date.now() + 30_000
        let recalled = "kept in a module global"
        while (recalled !== "" && Date.now() < deadline) {
          yield* realSleep(1_000)
          recalled = text(yield* agent.call("recall"))
          if (recalled !== "") yield* agent.call("remember", "kept in a module global")
        }
        expect(recalled).toBe("")
        expect(text(yield* agent.call("nd_get_artist_biography", '{"id":"1","name":"X"}'))).toContain(
          "Biography for X"
        )
      }),
    60_000
  )
})

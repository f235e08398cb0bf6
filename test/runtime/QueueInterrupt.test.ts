/**
 * A call interrupted while it waits in the pool's queue leaves the queue at once: it never starts
 * later on a worker nobody waits for, and it does not count as queued. Both paths that queue a call
 * are covered: a plugin's export call, and the start call run while a plugin is instantiated.
 */
import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { readFileSync } from "node:fs"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import { WasmRuntime } from "../../src/runtime/WasmRuntime.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { eventually } from "../support/wait.js"

const stats = (runtime: WasmRuntime["Type"]) => Effect.runSync(runtime.poolStats)

/** Occupies the only worker with a 10 s sleep, queues `queued`, interrupts it, checks the pool. */
const interruptWhileQueued = (id: string, queued: Effect.Effect<unknown, unknown>) =>
  Effect.gen(function* () {
    const runtime = yield* WasmRuntime
    const loader = yield* PluginLoader
    const sleeper = yield* loader.loadBytes(id, readFileSync(fixture("sleeper")))
    const first = yield* Effect.fork(sleeper.call("nd_get_artist_biography", "10000"))
    yield* eventually("the first call to run", () => stats(runtime).busy === 1, 30_000)
    const waiting = yield* Effect.fork(queued)
    // A load reads and compiles its package before it queues: generous on a loaded machine.
    yield* eventually("the second call to queue", () => stats(runtime).queued === 1, 30_000)
    yield* Fiber.interrupt(waiting)
    expect(stats(runtime).queued).toBe(0)
    expect(yield* Fiber.join(first)).toBeNull()
    // The interrupted call did not start after the first one ended: the worker stays free.
    yield* eventually("the worker to be idle", () => stats(runtime).busy === 0, 30_000)
    expect(stats(runtime)).toMatchObject({ busy: 0, queued: 0 })
  })

// One worker and no extras: a second call of any plugin can only wait in the queue.
layer(testEngine({ runtime: { poolSize: 1, maxBurstWorkers: 0 } }), { excludeTestServices: true })(
  "interrupting a queued call",
  (it) => {
    it.scoped("an interrupted export call is dequeued and never runs", () =>
      Effect.flatMap(PluginLoader, (loader) =>
        Effect.flatMap(loader.loadBytes("sleeper-q2", readFileSync(fixture("sleeper"))), (other) =>
          interruptWhileQueued("sleeper-q", other.call("nd_get_artist_biography", "800"))
        )
      )
    )

    it.scoped("an interrupted load's queued start call is dequeued", () =>
      Effect.flatMap(PluginLoader, (loader) =>
        interruptWhileQueued("sleeper-l", Effect.scoped(loader.loadFile(fixture("agent-full"))))
      )
    )

    it.scoped("a plugin with a short call timeout still loads while the only worker is busy", () =>
      Effect.gen(function* () {
        const runtime = yield* WasmRuntime
        const loader = yield* PluginLoader
        const sleeper = yield* loader.loadBytes("sleeper-busy", readFileSync(fixture("sleeper")))
        const first = yield* Effect.fork(sleeper.call("nd_get_artist_biography", "2000"))
        yield* eventually("the first call to run", () => stats(runtime).busy === 1, 30_000)
        // Its start call waits ~2 s for the worker, far beyond its own 300 ms call timeout.
        const quick = yield* loader.loadBytes("sleeper-quick", readFileSync(fixture("sleeper")), {
          timeoutMs: 300
        })
        expect(yield* Fiber.join(first)).toBeNull()
        expect(yield* quick.call("nd_get_artist_biography", "1")).toBeNull()
      })
    )
  }
)

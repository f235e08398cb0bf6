/**
 * One worker's host calls take at most `HOST_CALL_MS_PER_TURN` of the main thread per event-loop
 * turn (docs/decisions/0048-host-calls-per-turn.md): a plugin that makes host calls back to back
 * gets its answers, but the main thread turns between them, so timers, sockets and other workers'
 * messages (a healthy plugin's results) are not held behind up to a thousand of its calls.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { type CallOutcome, HOST_CALL_MS_PER_TURN, WorkerPool } from "../../src/runtime/internal/WorkerPool.js"
import { poolSpec } from "../support/poolSpec.js"
import { eventually } from "../support/wait.js"
import { wat } from "../support/wat.js"

const HOST_CALLS = 2_000
/** What each host call of the flood costs the main thread at least, as a real handler would. */
const HANDLER_MS = 0.1
/** So at most this many are answered in one turn: the call crossing the budget is the last. */
const MOST_PER_TURN = Math.ceil(HOST_CALL_MS_PER_TURN / HANDLER_MS) + 1

/** `flood` calls the host function `ping` `HOST_CALLS` times in a row; `ok` returns at once. */
const module = Effect.promise(async () =>
  WebAssembly.compile(
    await wat(`(module
      (import "extism:host/user" "ping" (func $ping (param i64) (result i64)))
      (memory (export "memory") 1)
      (func (export "ok") (result i32) (i32.const 0))
      (func (export "flood") (result i32) (local $i i32)
        (loop $again
          (drop (call $ping (i64.const 0)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $again (i32.lt_u (local.get $i) (i32.const ${HOST_CALLS}))))
        (i32.const 0)))`)
  )
)

const pool = Effect.acquireRelease(
  Effect.promise(() => WorkerPool.make({ size: 2, maxWorkersPerPlugin: 1, workerHeapMb: 64 })),
  (pool) => Effect.promise(() => pool.close())
)

/** Counts event-loop turns: an immediate that queues the next one runs once per turn. */
const turns = Effect.acquireRelease(
  Effect.sync(() => {
    const counter = { turn: 0, timer: undefined as ReturnType<typeof setImmediate> | undefined }
    const tick = () => {
      counter.turn++
      counter.timer = setImmediate(tick)
    }
    counter.timer = setImmediate(tick)
    return counter
  }),
  (counter) => Effect.sync(() => clearImmediate(counter.timer))
)

describe("host calls per event-loop turn", () => {
  it.scoped(
    "a plugin making host calls back to back is answered a bounded number per turn while a healthy plugin answers",
    () =>
      Effect.gen(function* () {
        const workers = yield* pool
        const counter = yield* turns
        const compiled = yield* module
        const hostile = poolSpec(compiled, "hostile#1", ["ping"])
        const healthy = poolSpec(compiled, "healthy#1", ["ping"])
        const perTurn = new Map<number, number>()
        workers.register(hostile.key, {
          host: (_fn, _payload, reply) => {
            perTurn.set(counter.turn, (perTurn.get(counter.turn) ?? 0) + 1)
            // Answered first, then about as long as a real handler's remaining work (a SQLite
            // write, a metric): the worker asks again before the main thread is done with this one.
            reply(new Uint8Array(0))
            const until = performance.now() + HANDLER_MS
            while (performance.now() < until);
          },
          log: () => undefined
        })
        workers.register(healthy.key, {
          host: (_fn, _p, reply) => reply(new Uint8Array(0)),
          log: () => undefined
        })
        // The healthy plugin's instance is ready before the flood starts.
        expect(yield* Effect.promise(() => workers.call(healthy, "ok", new Uint8Array(0), 60_000))).toEqual({
          _tag: "Done",
          output: null
        })

        let flood: CallOutcome | undefined
        void workers.call(hostile, "flood", new Uint8Array(0), 120_000).then((outcome) => {
          flood = outcome
        })
        yield* eventually("the flood's first host call", () => perTurn.size > 0, 30_000)
        let answered = 0
        while (flood === undefined) {
          const outcome = yield* Effect.promise(() => workers.call(healthy, "ok", new Uint8Array(0), 60_000))
          expect(outcome).toEqual({ _tag: "Done", output: null })
          if (flood === undefined) answered++
        }

        expect(flood).toEqual({ _tag: "Done", output: null })
        const counts = [...perTurn.values()]
        expect(counts.reduce((a, b) => a + b, 0)).toBe(HOST_CALLS)
        // Never more than the budget in one turn, so the flood spans at least this many turns.
        expect(Math.max(...counts)).toBeLessThanOrEqual(MOST_PER_TURN)
        expect(perTurn.size).toBeGreaterThanOrEqual(HOST_CALLS / MOST_PER_TURN)
        expect(workers.stats().hostCallsDeferred).toBeGreaterThan(0)
        // The healthy plugin kept answering while the flood ran.
        expect(answered).toBeGreaterThan(0)
      }),
    120_000
  )
})

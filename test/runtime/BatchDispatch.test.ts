/**
 * Calls dispatched in batches (docs/decisions/0043-dispatch-in-batches.md): one message hands a
 * worker several calls of one plugin, results come back through the control block. A call of the
 * batch that loops or a worker that dies must not take its neighbours with it: calls that finished
 * keep their results, the one running fails with its own typed outcome, and the ones not started
 * yet run on the replacement worker.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type { Worker } from "node:worker_threads"
import type { PluginSpec } from "../../src/runtime/abi/protocol.js"
import { type CallOutcome, WorkerPool } from "../../src/runtime/internal/WorkerPool.js"
import { poolSpec } from "../support/poolSpec.js"
import { eventually } from "../support/wait.js"
import { wat } from "../support/wat.js"

/** `ok` returns 0, `rc7` and `rc9` exit with their code, `spin` never returns. */
const module = Effect.promise(async () =>
  WebAssembly.compile(
    await wat(`(module
      (memory (export "memory") 1)
      (func (export "ok") (result i32) (i32.const 0))
      (func (export "rc7") (result i32) (i32.const 7))
      (func (export "rc9") (result i32) (i32.const 9))
      (func (export "spin") (result i32) (loop $spin (br $spin)) (i32.const 0)))`)
  )
)

/** A pool of one worker, so calls queued behind the first one leave together in one batch. */
const onePool = Effect.acquireRelease(
  Effect.promise(() => WorkerPool.make({ size: 1, maxWorkersPerPlugin: 1, workerHeapMb: 64 })),
  (pool) => Effect.promise(() => pool.close())
)

/** Submits `calls` in one go while the worker runs a first `ok`; returns their outcomes as they settle. */
const queueBehindFirst = (
  pool: WorkerPool,
  spec: PluginSpec,
  calls: ReadonlyArray<readonly [fn: string, timeoutMs: number]>
) => {
  pool.register(spec.key, { host: () => undefined, log: () => undefined })
  const outcomes: Array<CallOutcome | undefined> = calls.map(() => undefined)
  const first = pool.call(spec, "ok", new Uint8Array(0), 60_000)
  calls.forEach(([fn, timeoutMs], index) => {
    pool.submit(spec, fn, new Uint8Array(0), timeoutMs, (outcome) => {
      outcomes[index] = outcome
    })
  })
  return { first, outcomes }
}

const exitCode = (code: number) => ({
  _tag: "Failed",
  failure: { kind: "exitCode", code }
})

describe("batched dispatch", () => {
  it.scoped(
    "a call of a batch that loops times out on its own timeout; its neighbours complete",
    () =>
      Effect.gen(function* () {
        const pool = yield* onePool
        const spec = poolSpec(yield* module, "batch#1")
        const { first, outcomes } = queueBehindFirst(pool, spec, [
          ["ok", 60_000],
          ["rc7", 60_000],
          ["spin", 1_000],
          ["rc9", 60_000],
          ["ok", 60_000]
        ])
        // Submitted in one run of code, the six leave together, as one batch on the pool's one worker.
        expect(yield* Effect.promise(() => first)).toEqual({ _tag: "Done", output: null })
        // The looping call ends at its own 1 s timeout, not at the 60 s of the calls around it.
        yield* eventually(
          "every call of the batch to settle",
          () => outcomes.every((o) => o !== undefined),
          30_000
        )
        expect(outcomes).toMatchObject([
          { _tag: "Done", output: null },
          exitCode(7),
          { _tag: "TimedOut", timeoutMs: 1_000 },
          exitCode(9),
          { _tag: "Done", output: null }
        ])
        // The worker that looped was replaced, and the pool still answers.
        yield* eventually(
          "the replacement worker",
          () => pool.stats().starting === 0 && pool.size === 1,
          30_000
        )
        expect(yield* Effect.promise(() => pool.call(spec, "rc7", new Uint8Array(0), 60_000))).toMatchObject(
          exitCode(7)
        )
      }),
    60_000
  )

  it.scoped(
    "a worker that dies with a batch in flight: finished calls keep their results, the running one fails as Crashed, the rest run elsewhere",
    () =>
      Effect.gen(function* () {
        const pool = yield* onePool
        const spec = poolSpec(yield* module, "batch#1")
        const { first, outcomes } = queueBehindFirst(pool, spec, [
          ["rc7", 60_000],
          ["spin", 60_000],
          ["rc9", 60_000]
        ])
        yield* Effect.promise(() => first)
        // rc7 finished inside the batch; its result reaches the caller while `spin` still runs.
        yield* eventually("the call before the looping one", () => outcomes[0] !== undefined, 30_000)
        expect(outcomes[0]).toMatchObject(exitCode(7))
        expect(outcomes[1]).toBeUndefined()
        // The worker dies (as when it runs out of heap): end its thread from outside.
        const slots = (
          pool as unknown as { readonly slots: ReadonlyArray<{ readonly worker: Worker } | undefined> }
        ).slots
        yield* Effect.promise(() => slots[0]!.worker.terminate())
        yield* eventually(
          "every call of the batch to settle",
          () => outcomes.every((o) => o !== undefined),
          30_000
        )
        expect(outcomes[1]).toMatchObject({ _tag: "Crashed" })
        expect(outcomes[2]).toMatchObject(exitCode(9))
        expect(pool.stats()).toMatchObject({ busy: 0, queued: 0 })
      }),
    60_000
  )
})

/** Waiting on real time inside tests that run on the TestClock (whose sleeps never end by themselves). */
import * as Effect from "effect/Effect"

/** Sleeps for real, independent of the fiber's Clock. */
export const realSleep = (ms: number) =>
  Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/** Polls `check` on real time until it holds; dies with `what` after `timeoutMs`. */
export const eventually = (what: string, check: () => boolean, timeoutMs = 5_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for ${what}`)
      yield* realSleep(5)
    }
  })

/**
 * Polls `check` (which may be async) every 100 ms until it holds, for tests written with promises
 * (processes, HTTP); rejects with `what` after a generous deadline.
 */
export const until = async (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 120_000) => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/**
 * How many host calls the workers answered themselves (docs/decisions/0035-host-calls-in-the-worker.md),
 * per function, so the main thread's host-call metric still counts every call. The workers add to
 * one shared Int32 slot per function with `Atomics.add`, before they post the call's result; the
 * main thread drains the slots after each call, so a call's counts are in the metric once it
 * returns. No message per host call, no wake-up.
 */
export class LocalCounts {
  readonly buffer: SharedArrayBuffer
  private readonly slots: Int32Array
  /** The slot values already counted; slots wrap at 2^32, so deltas are taken modulo that. */
  private readonly counted: Int32Array

  constructor(readonly functions: ReadonlyArray<string>) {
    this.buffer = new SharedArrayBuffer(Math.max(1, functions.length) * Int32Array.BYTES_PER_ELEMENT)
    this.slots = new Int32Array(this.buffer)
    this.counted = new Int32Array(functions.length)
  }

  /** Calls answered in a worker since the last drain, by function name (functions with none left out). */
  drain(): ReadonlyArray<readonly [string, number]> {
    let drained: Array<readonly [string, number]> | undefined
    for (let i = 0; i < this.functions.length; i++) {
      const now = Atomics.load(this.slots, i)
      const delta = (now - this.counted[i]!) >>> 0
      if (delta === 0) continue
      this.counted[i] = now
      ;(drained ??= []).push([this.functions[i]!, delta])
    }
    return drained ?? []
  }
}

/** The worker's side: counts one call of the function at `slot` of the spec's `workerFunctions`. */
export const countLocal = (slots: Int32Array, slot: number): void => {
  Atomics.add(slots, slot, 1)
}

/**
 * The part of a plugin's cache the execution workers can see: one slot per live entry, holding a
 * stamp and a "touched" flag, in shared memory. The cache itself (keys, values, TTLs, budget) stays
 * on the main thread; a worker keeps copies of entries it looked up, each with its slot and the
 * stamp it had, and may answer a get from its copy while the slot still holds that stamp
 * (docs/decisions/0035-host-calls-in-the-worker.md). Free of Effect: both threads import it.
 *
 * The main thread changes a slot's stamp whenever the slot's entry goes (overwritten, removed,
 * expired, evicted, cleared), before it answers the host call that caused it, so a copy made before
 * a change is never used after it. A worker's hit sets the touched flag, which the main thread reads
 * as a recent use when it picks what to evict.
 */

/** Int32 words per slot: the stamp, then the touched flag. */
const WORDS = 2

/** Slots a cache offers at most; entries beyond them are still cached, and their gets cross. */
export const maxSlots = 65_536

/** The main thread's side: gives slots to entries and takes them back. */
export class CacheIndex {
  readonly buffer: SharedArrayBuffer
  private readonly words: Int32Array
  private readonly count: number
  /** Slots given back; slots from `next` on were never given out. Both grow only with use. */
  private readonly free: Array<number> = []
  private next = 0

  constructor(slots: number) {
    this.count = Math.max(1, Math.min(maxSlots, Math.floor(slots)))
    // Zero pages: the memory is taken as slots are used, not up front.
    this.buffer = new SharedArrayBuffer(this.count * WORDS * Int32Array.BYTES_PER_ELEMENT)
    this.words = new Int32Array(this.buffer)
  }

  /** A slot for a new entry, or -1 when all are taken. */
  assign(): number {
    const reused = this.free.pop()
    if (reused !== undefined) return reused
    return this.next < this.count ? this.next++ : -1
  }

  /** The entry in `slot` is gone: copies of it are stale from now on. */
  release(slot: number): void {
    if (slot < 0) return
    Atomics.add(this.words, slot * WORDS, 1)
    Atomics.store(this.words, slot * WORDS + 1, 0)
    this.free.push(slot)
  }

  /** The stamp a worker must find in `slot` for its copy to be current. */
  stamp(slot: number): number {
    return Atomics.load(this.words, slot * WORDS)
  }

  /** Whether a worker answered a get from its copy of the entry in `slot` since the last look; clears it. */
  takeTouched(slot: number): boolean {
    return slot >= 0 && Atomics.exchange(this.words, slot * WORDS + 1, 0) === 1
  }
}

/** The workers' side of an index's buffer. */
export class CacheIndexView {
  private readonly words: Int32Array

  constructor(buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer)
  }

  /** Whether `slot` still holds the entry whose stamp was `stamp`. */
  current(slot: number, stamp: number): boolean {
    return Atomics.load(this.words, slot * WORDS) === stamp
  }

  /** Records a use of the entry in `slot`, for the main thread's least-recently-used order. */
  touch(slot: number): void {
    Atomics.store(this.words, slot * WORDS + 1, 1)
  }
}

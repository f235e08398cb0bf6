/**
 * The engine's clock as the workers may judge it. Expiry on the main thread is judged by the
 * engine's `Clock` (tests replace it with a `TestClock`), which a worker cannot read. So the main
 * thread publishes, when it sends a plugin's call, the engine time and the wall time of that
 * moment; a worker then knows the engine's time only to lie between two bounds, and answers on its
 * own only when the answer is the same anywhere between them (docs/decisions/0035-host-calls-in-the-worker.md).
 *
 * Layout: two Float64 (engine time, wall time), then an Int32 sequence number, odd while the main
 * thread writes, so a worker never reads one half of one publish and one of another.
 */

const BYTES = 2 * Float64Array.BYTES_PER_ELEMENT + Int32Array.BYTES_PER_ELEMENT

export const makeEngineClock = (): SharedArrayBuffer => new SharedArrayBuffer(BYTES)

/** A view of a published clock, from either thread. */
export class EngineClockView {
  private readonly times: Float64Array
  private readonly sequence: Int32Array

  constructor(readonly buffer: SharedArrayBuffer) {
    this.times = new Float64Array(buffer, 0, 2)
    this.sequence = new Int32Array(buffer, 2 * Float64Array.BYTES_PER_ELEMENT, 1)
  }

  /** The main thread's side: records the engine's time now. */
  publish(engineMs: number): void {
    Atomics.add(this.sequence, 0, 1)
    this.times[0] = engineMs
    this.times[1] = Date.now()
    Atomics.add(this.sequence, 0, 1)
  }

  /**
   * Bounds on the engine's time now, from a worker: a live clock reads the wall time, a frozen test
   * clock reads the published time; either way it is within [low, high]. Before any publish both
   * times are 0, which gives the widest bounds.
   */
  bounds(): { readonly low: number; readonly high: number } {
    let engineMs: number
    let wallMs: number
    for (;;) {
      const before = Atomics.load(this.sequence, 0)
      engineMs = this.times[0]!
      wallMs = this.times[1]!
      if ((before & 1) === 0 && Atomics.load(this.sequence, 0) === before) break
    }
    const now = Date.now()
    return {
      low: Math.min(engineMs, now),
      high: Math.max(engineMs + Math.max(0, now - wallMs), now) + 1
    }
  }
}

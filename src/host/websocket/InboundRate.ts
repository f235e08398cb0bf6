/**
 * How fast a plugin's WebSocket messages are handed to it. Every inbound message costs the main
 * thread a decode, a callback input and a plugin call; the byte budgets bound the memory a server
 * can fill, this bounds the work. It is one budget for all of a plugin's connections, in messages
 * and in bytes per second, each with a burst. A message waits for the budget in its reader, still
 * counted as buffered, so a server that keeps sending fills the byte budgets and is paused (TCP
 * pushes back): nothing is dropped, the server is only slowed.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

/** The rate settings (a part of `ConnectionOptions`). */
export interface InboundRateOptions {
  /** Messages per second delivered to a plugin, over all its connections, once its burst is spent. */
  readonly inboundMessagesPerSecond: number
  /** Messages a plugin may be handed at once before the sustained rate applies. */
  readonly inboundBurstMessages: number
  /** Message bytes per second delivered to a plugin, over all its connections. */
  readonly inboundBytesPerSecond: number
  /** Bytes a plugin may be handed at once; a single larger message still passes when the budget is full. */
  readonly inboundBurstBytes: number
}

/** A rate of zero or less would never refill: treated as one per second. */
const positive = (rate: number): number => (rate > 0 ? rate : 1)

/** One plugin's delivery budget. */
export const makeInboundRate = (options: InboundRateOptions) => {
  const messagesPerMs = positive(options.inboundMessagesPerSecond) / 1000
  const bytesPerMs = positive(options.inboundBytesPerSecond) / 1000
  let messages = options.inboundBurstMessages
  let bytes = options.inboundBurstBytes
  let at: number | undefined

  const refill = (now: number): void => {
    const elapsed = at === undefined ? 0 : Math.max(0, now - at)
    at = now
    messages = Math.min(options.inboundBurstMessages, messages + elapsed * messagesPerMs)
    bytes = Math.min(options.inboundBurstBytes, bytes + elapsed * bytesPerMs)
  }

  /**
   * Waits until a message of `size` bytes may be delivered, then counts it. The byte budget may go
   * below zero for a message larger than what is left (so one larger than the burst still passes);
   * the next message waits until it is back above zero. Returns whether this one had to wait.
   */
  const take = (size: number): Effect.Effect<boolean> =>
    Effect.gen(function* () {
      let waited = false
      for (;;) {
        refill(yield* Clock.currentTimeMillis)
        if (messages >= 1 && bytes > 0) {
          messages -= 1
          bytes -= size
          return waited
        }
        const waitMs = Math.max(
          messages >= 1 ? 0 : (1 - messages) / messagesPerMs,
          bytes > 0 ? 0 : (1 - bytes) / bytesPerMs
        )
        waited = true
        yield* Effect.sleep(Duration.millis(Math.max(1, Math.ceil(waitMs))))
      }
    })

  return { take }
}

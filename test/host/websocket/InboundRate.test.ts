/**
 * The delivery rate of inbound WebSocket messages, through the real path: a hostile server sends
 * a burst of messages far above a plugin's rate while a neighbour plugin keeps talking. Asserted on
 * counts against upper bounds that only grow with time (a slow machine cannot break them), and on
 * nothing being lost.
 */
import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { InboundMeter } from "../../../src/host/websocket/WebSocketService.js"
import { testEngine } from "../../support/engine.js"
import { repackage } from "../../support/repackage.js"
import { eventually, timedLogs, websocketPlugin, wsServer } from "./support.js"

const KiB = 1024
const limits = {
  inboundMessagesPerSecond: 20,
  inboundBurstMessages: 10,
  inboundBytesPerSecond: 64 * KiB,
  inboundBurstBytes: 64 * KiB
}
const meter = new InboundMeter()

layer(testEngine({ runtime: { poolSize: 4 }, websocket: { ...limits, meter } }), {
  excludeTestServices: true
})("WebSocket inbound delivery rate", (it) => {
  it.scoped(
    "a server sending far above the message rate is delivered at the rate, in order, and a neighbour keeps its own",
    () =>
      Effect.gen(function* () {
        const flood = yield* wsServer({ echo: false })
        const echo = yield* wsServer()
        const { call, lines } = yield* websocketPlugin(timedLogs())
        const neighbour = yield* websocketPlugin(timedLogs(), {
          id: "ws-rate-neighbour",
          bytes: repackage("host-websocket", (m) => m)
        })
        yield* call("websocket_connect", { url: flood.url, connectionId: "f" })
        yield* neighbour.call("websocket_connect", { url: echo.url, connectionId: "n" })
        const MESSAGES = 60
        const started = performance.now()
        for (let i = 0; i < MESSAGES; i++) flood.connections[0]!.socket.send(`m${i}`)
        const delivered = () => lines().filter((l) => l.startsWith("text f ")).length
        // The most the budget allows by now: the burst, the rate since the flood began, one in flight.
        const allowed = () =>
          limits.inboundBurstMessages +
          (limits.inboundMessagesPerSecond * (performance.now() - started)) / 1000 +
          1
        yield* eventually("deliveries to begin", () => delivered() > 0)
        // While the flood is held back, the neighbour's messages go through on its own budget.
        for (let i = 0; i < 5; i++) {
          expect(delivered()).toBeLessThanOrEqual(allowed())
          expect(
            yield* neighbour.call("websocket_sendtext", { connectionId: "n", message: `hi${i}` })
          ).toEqual({})
          yield* eventually(`neighbour echo ${i}`, () => neighbour.lines().includes(`text n hi${i}`))
        }
        expect(delivered()).toBeLessThan(MESSAGES)
        yield* eventually(
          "every message delivered",
          () => {
            expect(delivered()).toBeLessThanOrEqual(allowed())
            return delivered() === MESSAGES
          },
          60_000
        )
        expect(lines().filter((l) => l.startsWith("text f "))).toEqual(
          Array.from({ length: MESSAGES }, (_, i) => `text f m${i}`)
        )
        expect(meter.of("host-websocket").throttled).toBeGreaterThan(0)
        expect(meter.of("ws-rate-neighbour").throttled).toBe(0)
      }),
    120_000
  )

  it.scoped(
    "the byte rate holds large messages back the same way, and a message over the burst still passes",
    () =>
      Effect.gen(function* () {
        const flood = yield* wsServer({ echo: false })
        const { call, lines } = yield* websocketPlugin(timedLogs(), {
          id: "ws-rate-bytes",
          bytes: repackage("host-websocket", (m) => m)
        })
        yield* call("websocket_connect", { url: flood.url, connectionId: "b" })
        const FRAME = 32 * KiB
        const FRAMES = 8
        const started = performance.now()
        // One frame larger than the whole burst first: it passes on a full budget.
        flood.connections[0]!.socket.send(Buffer.alloc(2 * limits.inboundBurstBytes, 1), { binary: true })
        for (let i = 0; i < FRAMES; i++)
          flood.connections[0]!.socket.send(Buffer.alloc(FRAME, i), { binary: true })
        const frames = () => lines().filter((l) => l.startsWith("binary b ")).length
        const deliveredBytes = () =>
          frames() === 0 ? 0 : 2 * limits.inboundBurstBytes + (frames() - 1) * FRAME
        // The burst, the rate since the flood began, and the one message that may overdraw it.
        const allowedBytes = () =>
          limits.inboundBurstBytes +
          (limits.inboundBytesPerSecond * (performance.now() - started)) / 1000 +
          2 * limits.inboundBurstBytes
        yield* eventually(
          "every frame delivered",
          () => {
            expect(deliveredBytes()).toBeLessThanOrEqual(allowedBytes())
            return frames() === FRAMES + 1
          },
          60_000
        )
        expect(meter.of("ws-rate-bytes").throttled).toBeGreaterThan(0)
      })
  )
})

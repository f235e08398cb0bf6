/**
 * Inbound byte budgets through the real path: a hostile server floods a slow Wasm plugin with
 * large frames while a neighbour plugin keeps talking. Bounds are asserted on the service's own
 * buffered-byte counter (`InboundMeter`), never on timing or RSS.
 */
import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { InboundMeter } from "../../../src/host/websocket/WebSocketService.js"
import { testEngine } from "../../support/engine.js"
import { repackage } from "../../support/repackage.js"
import { eventually, type ServerSide, timedLogs, websocketPlugin, wsServer } from "./support.js"

const KiB = 1024
const FRAME = 64 * KiB
const FRAMES = 96
const limits = {
  maxPayloadBytes: 128 * KiB,
  maxBufferedBytesPerConnection: 512 * KiB,
  maxBufferedBytesPerPlugin: 768 * KiB
}
// After a pause a socket may still hand over what it had already read: one read (≤ 64 KiB) and
// the message it completes (≤ maxPayloadBytes).
const SLACK = limits.maxPayloadBytes + 64 * KiB
const meter = new InboundMeter()

layer(testEngine({ runtime: { poolSize: 4 }, websocket: { ...limits, meter } }), {
  excludeTestServices: true
})("WebSocket inbound budgets", (it) => {
  it.scoped(
    "a server flooding a slow plugin is paused at the byte budgets, loses nothing, and a neighbour keeps answering",
    () =>
      Effect.gen(function* () {
        const flood = yield* wsServer({ echo: false })
        const echo = yield* wsServer()
        const { call, lines } = yield* websocketPlugin(timedLogs())
        const neighbour = yield* websocketPlugin(timedLogs(), {
          id: "ws-neighbour",
          bytes: repackage("host-websocket", (m) => m)
        })
        const side = (path: string): ServerSide => {
          const found = flood.connections.find((c) => c.request.url === path)
          if (found === undefined) throw new Error(`no connection ${path}`)
          return found
        }
        for (const id of ["f1", "f2"]) {
          expect(yield* call("websocket_connect", { url: `${flood.url}${id}`, connectionId: id })).toEqual({
            newConnectionId: id
          })
        }
        expect(yield* neighbour.call("websocket_connect", { url: echo.url, connectionId: "n" })).toEqual({
          newConnectionId: "n"
        })
        // 2 × 96 frames of 64 KiB (12 MiB), sent as fast as the server's socket takes them.
        for (const id of ["f1", "f2"]) {
          const socket = side(`/${id}`).socket
          for (let i = 0; i < FRAMES; i++) socket.send(Buffer.alloc(FRAME, i), { binary: true })
        }
        const figures = () => meter.of("host-websocket")
        yield* eventually("a paused socket", () => figures().paused > 0, 30_000)
        // TCP pushes back: the server cannot get rid of what it queued.
        yield* eventually("the server held back", () =>
          ["/f1", "/f2"].some((path) => side(path).socket.bufferedAmount > 0)
        )
        // The neighbour is unaffected while the flood is held back.
        for (let i = 0; i < 5; i++) {
          expect(
            yield* neighbour.call("websocket_sendtext", { connectionId: "n", message: `hi${i}` })
          ).toEqual({})
          yield* eventually(`neighbour echo ${i}`, () => neighbour.lines().includes(`text n hi${i}`))
        }
        const delivered = () => lines().filter((l) => l.startsWith("binary f")).length
        yield* eventually("every frame delivered", () => delivered() === 2 * FRAMES, 120_000)
        expect(lines().filter((l) => l.startsWith("binary f1 ")).length).toBe(FRAMES)
        // Every frame reached the plugin whole (base64 of 64 KiB is 87 384 characters).
        expect(
          new Set(
            lines()
              .filter((l) => l.startsWith("binary f"))
              .map((l) => l.split(" ")[2])
          )
        ).toEqual(new Set([`len=${4 * Math.ceil(FRAME / 3)}`]))
        // A frame's bytes are released when its callback returns, just after the line it logged.
        yield* eventually(
          "the budget released",
          () => figures().buffered === 0 && figures().paused === 0,
          30_000
        )
        const final = figures()
        expect(final.pauses).toBeGreaterThan(0)
        expect(final.connectionPeak).toBeLessThanOrEqual(limits.maxBufferedBytesPerConnection + SLACK)
        expect(final.peak).toBeLessThanOrEqual(limits.maxBufferedBytesPerPlugin + 2 * SLACK)
        expect(final.peak).toBeGreaterThanOrEqual(limits.maxBufferedBytesPerConnection)
        expect(final.buffered).toBe(0)
        expect(final.paused).toBe(0)
        process.stdout.write(
          `websocket flood: 12 MiB sent to a slow plugin, at most ${final.peak} bytes held (per connection ${final.connectionPeak}), ${final.pauses} pauses\n`
        )
      })
  )

  it.scoped(
    "a frame over maxPayloadBytes closes the connection with 1009; the plugin hears on_error, then on_close",
    () =>
      Effect.gen(function* () {
        const server = yield* wsServer({ echo: false })
        const { call, lines } = yield* websocketPlugin(timedLogs())
        yield* call("websocket_connect", { url: server.url, connectionId: "big" })
        yield* call("websocket_connect", { url: server.url, connectionId: "ok" })
        server.connections[0]!.socket.send(Buffer.alloc(limits.maxPayloadBytes + 1), { binary: true })
        yield* eventually("on_close", () => lines().some((l) => l.startsWith("close big ")))
        expect(lines().filter((l) => l.includes(" big "))).toEqual([
          `error big the server sent a message larger than ${limits.maxPayloadBytes} bytes (maxPayloadBytes); the connection is closed with 1009`,
          expect.stringMatching(/^close big 10(06|09) /)
        ])
        yield* eventually("the server's view", () => server.connections[0]!.closed !== undefined)
        expect(server.connections[0]!.closed?.code).toBe(1009)
        // Exactly the limit passes, on the other connection.
        server.connections[1]!.socket.send(Buffer.alloc(limits.maxPayloadBytes), { binary: true })
        yield* eventually("the largest allowed frame", () =>
          lines().some((l) => l.startsWith("binary ok len="))
        )
        // Released once the callback has returned, a moment after it logged.
        yield* eventually("the frame's bytes to be released", () => meter.of("host-websocket").buffered === 0)
      })
  )
})

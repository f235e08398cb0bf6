/** The service driven directly (no Wasm): fake DNS, short timeouts and a counted connection limit. */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import type { LookupFunction } from "node:net"
import * as net from "node:net"
import { noCall } from "../../../src/host/HostCodec.js"
import type { PluginContext } from "../../../src/host/HostFunctions.js"
import { decodeGrants } from "../../../src/host/network/NetworkPolicy.js"
import {
  defaultWebSocketOptions,
  forPlugin,
  type WebSocketOptions
} from "../../../src/host/websocket/WebSocketService.js"
import { PluginNotImplementedError } from "../../../src/runtime/PluginError.js"
import { eventually, wsServer } from "./support.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Resolves `*.test` names to 127.0.0.1 and nothing else: no real DNS, no other address. */
const fakeLookup: LookupFunction = (hostname, options, callback) => {
  if (!hostname.endsWith(".test")) {
    return callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" }), "")
  }
  if (options.all === true) callback(null, [{ address: "127.0.0.1", family: 4 }])
  else callback(null, "127.0.0.1", 4)
}

/**
 * A plugin context whose callbacks are recorded; exports in `missing` are "not implemented";
 * `allowedNetworks` as the operator would grant them (default: loopback, where the test servers are).
 */
const fakePlugin = (
  requiredHosts: ReadonlyArray<string>,
  missing: ReadonlyArray<string> = [],
  allowedNetworks: ReadonlyArray<string> = ["127.0.0.1/32"]
) => {
  const callbacks: Array<{ readonly name: string; readonly input: Record<string, unknown> }> = []
  const context: PluginContext = {
    pluginId: "fake",
    manifest: { name: "fake", author: "t", version: "1", permissions: { websocket: { requiredHosts } } },
    config: {},
    dataFolder: "/nonexistent",
    users: [],
    libraries: [],
    allowedNetworks: Effect.runSync(decodeGrants(allowedNetworks)),
    callPlugin: (name, input) =>
      missing.includes(name)
        ? Effect.fail(new PluginNotImplementedError({ pluginId: "fake", export: name, message: "missing" }))
        : Effect.sync(() => {
            callbacks.push({ name, input: JSON.parse(input) as Record<string, unknown> })
            return null
          })
  }
  return { context, callbacks }
}

const service = (context: PluginContext, options: Partial<WebSocketOptions>, scope: Scope.Scope) =>
  Effect.map(
    Scope.extend(forPlugin(context, { ...defaultWebSocketOptions, lookup: fakeLookup, ...options }), scope),
    (handlers) => (fn: string, request: unknown) =>
      Effect.map(
        handlers[fn]!(encoder.encode(JSON.stringify(request)), noCall),
        (b) => JSON.parse(decoder.decode(b)) as Record<string, unknown>
      )
  )

/**
 * A hostile server on 127.0.0.1 speaking raw TCP: `answer` gets each socket and the client's
 * `Sec-WebSocket-Key` once the request head has arrived.
 */
const rawServer = (answer: (socket: net.Socket, key: string) => void) =>
  Effect.acquireRelease(
    Effect.async<{ server: net.Server; sockets: Array<net.Socket> }>((resume) => {
      const sockets: Array<net.Socket> = []
      const server = net.createServer((socket) => {
        sockets.push(socket)
        socket.on("error", () => undefined)
        let head = ""
        const onData = (chunk: Buffer) => {
          head += chunk.toString("latin1")
          if (!head.includes("\r\n\r\n")) return
          socket.off("data", onData)
          answer(socket, /sec-websocket-key: *(\S+)/i.exec(head)?.[1] ?? "")
        }
        socket.on("data", onData)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, sockets })))
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ server }) => (server.address() as net.AddressInfo).port))

/** The 101 answer to a client key, per RFC 6455 §4.2.2. */
const accept = (key: string, extra = "") =>
  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
  `Sec-WebSocket-Accept: ${createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64")}\r\n` +
  `${extra}\r\n`

describe("WebSocket service (direct)", () => {
  it.scopedLive(
    "a handshake response head over maxHeaderBytes fails the connect; a healthy server still works",
    () =>
      Effect.gen(function* () {
        const huge = yield* rawServer((socket, key) =>
          socket.write(accept(key, `X-Pad: ${"p".repeat(8 * 1024)}\r\n`))
        )
        const healthy = yield* wsServer()
        const { context } = fakePlugin(["127.0.0.1"])
        const call = yield* service(context, { maxHeaderBytes: 4096 }, yield* Effect.scope)
        const refused = yield* call("websocket_connect", {
          url: `ws://127.0.0.1:${huge}/`,
          connectionId: "h"
        })
        expect(refused.error).toMatch(
          /^websocket handshake with ws:\/\/127\.0\.0\.1:\d+\/ failed: .*Header overflow/
        )
        expect(yield* call("websocket_connect", { url: healthy.url, connectionId: "h" })).toEqual({
          newConnectionId: "h"
        })
      })
  )

  it.scopedLive("a server that stops reading gets no more than maxOutboundBytes queued; sends say so", () =>
    Effect.gen(function* () {
      // Completes the handshake, then never reads again: everything the client sends piles up.
      const deaf = yield* rawServer((socket, key) => {
        socket.write(accept(key))
        socket.pause()
      })
      const { context } = fakePlugin(["127.0.0.1"])
      const maxOutboundBytes = 256 * 1024
      const call = yield* service(context, { maxOutboundBytes, sendTimeoutMs: 200 }, yield* Effect.scope)
      yield* call("websocket_connect", { url: `ws://127.0.0.1:${deaf}/`, connectionId: "d" })
      const message = "m".repeat(64 * 1024)
      const errors: Array<string> = []
      // Kernel buffers take the first few MB; then sends time out, then they are refused outright.
      const timeouts = () => errors.filter((e) => e.includes("did not take the message")).length
      for (let i = 0; i < 2000 && timeouts() < 20 && !errors.some((e) => e.includes("not reading")); i++) {
        const reply = yield* call("websocket_sendtext", { connectionId: "d", message })
        if (typeof reply.error === "string") errors.push(reply.error)
      }
      const refusal = errors.find((e) => e.includes("not reading"))
      expect(refusal).toMatch(
        /^websocket connection d: the server is not reading; \d+ bytes are still waiting to be sent, try again later$/
      )
      const waiting = Number(/(\d+) bytes/.exec(refusal ?? "")?.[1])
      expect(waiting).toBeGreaterThanOrEqual(maxOutboundBytes)
      expect(waiting).toBeLessThan(maxOutboundBytes + 2 * message.length)
      expect(timeouts()).toBeGreaterThan(0)
    })
  )

  it.scopedLive(
    "a name resolving to loopback is refused, listed exactly or not, unless the operator grants it",
    () =>
      Effect.gen(function* () {
        const server = yield* wsServer()
        for (const hosts of [["*.test"], ["evil.test"]]) {
          const ungranted = fakePlugin(hosts, [], [])
          const call = yield* service(ungranted.context, {}, yield* Effect.scope)
          const refused = yield* call("websocket_connect", { url: `ws://evil.test:${server.port}/` })
          expect(refused.error).toBe(
            'websocket host "evil.test" resolves to a private/loopback address; plugins may not reach private networks unless the operator grants it with --allow-network evil.test'
          )
        }
        expect(server.connections).toHaveLength(0)
        const exact = fakePlugin(["feed.test"])
        const callExact = yield* service(exact.context, {}, yield* Effect.scope)
        expect(
          yield* callExact("websocket_connect", { url: `ws://FEED.test:${server.port}/`, connectionId: "x" })
        ).toEqual({ newConnectionId: "x" })
        expect(server.connections[0]!.request.headers.host).toBe(`feed.test:${server.port}`)
      })
  )

  it.scopedLive("a server that never answers the handshake times out, and the socket is dropped", () =>
    Effect.gen(function* () {
      const sockets: Array<net.Socket> = []
      const closed = new Set<net.Socket>()
      const silent = yield* Effect.acquireRelease(
        Effect.async<net.Server>((resume) => {
          const server = net.createServer((socket) => {
            sockets.push(socket)
            socket.on("close", () => closed.add(socket))
            socket.resume()
          })
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) =>
          Effect.async<void>((resume) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => resume(Effect.void))
          })
      )
      const port = (silent.address() as net.AddressInfo).port
      const { context } = fakePlugin(["127.0.0.1"])
      const call = yield* service(context, { handshakeTimeoutMs: 200 }, yield* Effect.scope)
      const started = Date.now()
      const response = yield* call("websocket_connect", {
        url: `ws://127.0.0.1:${port}/`,
        connectionId: "slow"
      })
      expect(response.error).toMatch(/timed out|did not finish/)
      expect(Date.now() - started).toBeLessThan(2_000)
      yield* eventually("the server to see the socket dropped", () =>
        sockets.every((s) => s.destroyed || s.readableEnded)
      )
      // The ID is free again: a second attempt times out too, rather than finding it taken.
      const again = yield* call("websocket_connect", { url: `ws://127.0.0.1:${port}/`, connectionId: "slow" })
      expect(again.error).toMatch(/timed out|did not finish/)
    })
  )

  it.scopedLive("callbacks the plugin does not export are skipped; a connection limit is enforced", () =>
    Effect.gen(function* () {
      const server = yield* wsServer()
      const { callbacks, context } = fakePlugin(["127.0.0.1"], ["nd_websocket_on_text_message"])
      const scope = yield* Scope.make()
      const call = yield* service(context, { maxConnections: 2 }, scope)
      yield* call("websocket_connect", { url: server.url, connectionId: "a" })
      yield* call("websocket_connect", { url: server.url, connectionId: "b" })
      expect((yield* call("websocket_connect", { url: server.url, connectionId: "c" })).error).toContain(
        "already has 2 open websocket connections"
      )
      yield* call("websocket_sendtext", { connectionId: "a", message: "ignored" })
      yield* call("websocket_sendbinary", { connectionId: "a", data: "AAE=" })
      yield* eventually("the binary callback", () => callbacks.length === 1)
      expect(callbacks).toEqual([
        { name: "nd_websocket_on_binary_message", input: { connectionId: "a", data: "AAE=" } }
      ])
      yield* Scope.close(scope, Exit.void)
      expect(callbacks.filter((c) => c.name === "nd_websocket_on_close").map((c) => c.input)).toEqual(
        expect.arrayContaining([
          { connectionId: "a", code: 1001, reason: "going away" },
          { connectionId: "b", code: 1001, reason: "going away" }
        ])
      )
      yield* eventually("the server empty", () => server.clientCount() === 0)
    })
  )
})

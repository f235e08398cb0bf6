/**
 * One plugin's WebSocket connections at the socket level: opening a socket through the network
 * policy's guarded lookup, the inbound budget the plugin's connections share (a socket stops
 * reading when its own or the plugin's backlog is full, and reads again at half), the reader that
 * delivers what arrived to the plugin in order, sending with a deadline, and closing. What a
 * plugin may ask for (IDs, limits, URLs) is the service's (`WebSocketService`).
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import type { LookupFunction } from "node:net"
import WebSocket from "ws"
import { toBase64 } from "../HostCodec.js"
import * as NetworkPolicy from "../network/NetworkPolicy.js"
import type { ConnectionOptions, InboundFigures, Target } from "./WebSocketTypes.js"
import { WebSocketError } from "./WebSocketError.js"
import { makeInboundRate } from "./InboundRate.js"

export type { ConnectionOptions, InboundFigures, Target } from "./WebSocketTypes.js"
export { InboundMeter } from "./WebSocketTypes.js"

/** What the socket delivered, in the order it arrived; messages are kept as the bytes received. */
export type Inbound =
  | { readonly _tag: "Message"; readonly data: Buffer; readonly binary: boolean }
  | { readonly _tag: "Error"; readonly error: string }
  | { readonly _tag: "Close"; readonly code: number; readonly reason: string }

export interface Connection {
  readonly id: string
  readonly url: string
  readonly socket: WebSocket
  readonly inbox: Queue.Queue<Inbound>
  /** Succeeds when the handshake completes, fails when it does not. */
  readonly opened: Deferred.Deferred<void, WebSocketError>
  /** Done when the socket has closed, however it closed. */
  readonly closed: Deferred.Deferred<void>
  /** Done when the reader has delivered everything, on_close included, and stopped. */
  readonly drained: Deferred.Deferred<void>
  /** Message bytes queued and not yet delivered. */
  buffered: number
  /** Whether this service paused the socket (budgets), as opposed to `ws` itself. */
  paused: boolean
  reading: boolean
  /** What on_close waits for: the end of the plugin call that closed the connection, if one did. */
  closeGate: Effect.Effect<void>
}

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** The plugin's message for a socket error: `ws`'s own text, or what to do about our limits. */
const errorText = (error: Error, options: ConnectionOptions): string =>
  (error as { code?: unknown }).code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH"
    ? `the server sent a message larger than ${options.maxPayloadBytes} bytes (maxPayloadBytes); the connection is closed with 1009`
    : error.message

/** What one plugin's connections need from the service that owns them. */
export interface ConnectionsParams {
  readonly options: ConnectionOptions
  /** The plugin's inbound figures, updated in place (the service may publish them). */
  readonly figures: InboundFigures
  readonly policy: NetworkPolicy.NetworkPolicy
  /** Calls one of the plugin's `nd_websocket_on_*` exports for a connection; never fails. */
  readonly deliver: (
    conn: Connection,
    exportName: string,
    payload: Record<string, unknown>
  ) => Effect.Effect<void>
  /** Drops a connection from the plugin's open IDs (it is closing or closed). */
  readonly forget: (conn: Connection) => void
}

/** One plugin's sockets and their shared inbound budget. */
export const makeConnections = ({ deliver, figures, forget, options, policy }: ConnectionsParams) => {
  /** Every connection whose socket may still deliver data, open or closing. */
  const live = new Set<Connection>()
  /** The plugin's delivery rate, shared by its connections' readers. */
  const rate = makeInboundRate(options)

  const pause = (conn: Connection): void => {
    if (conn.paused || conn.socket.readyState !== WebSocket.OPEN) return
    conn.paused = true
    conn.socket.pause()
    figures.paused += 1
    figures.pauses += 1
  }

  const resume = (conn: Connection): void => {
    if (!conn.paused) return
    conn.paused = false
    figures.paused -= 1
    conn.socket.resume()
  }

  // Hysteresis: a paused socket reads again once both its own and the plugin's backlog are under
  // half their budget, so a steady flood does not toggle the socket on every message.
  const mayResume = (conn: Connection): boolean =>
    conn.buffered <= options.maxBufferedBytesPerConnection / 2 &&
    figures.buffered <= options.maxBufferedBytesPerPlugin / 2

  const push = (conn: Connection, event: Inbound): void => {
    if (event._tag === "Message") {
      conn.buffered += event.data.byteLength
      figures.buffered += event.data.byteLength
      figures.peak = Math.max(figures.peak, figures.buffered)
      figures.connectionPeak = Math.max(figures.connectionPeak, conn.buffered)
    }
    Queue.unsafeOffer(conn.inbox, event)
    if (figures.buffered >= options.maxBufferedBytesPerPlugin) for (const other of live) pause(other)
    else if (conn.buffered >= options.maxBufferedBytesPerConnection) pause(conn)
  }

  /** The reader took a message: count it out, and let paused sockets read again if there is room. */
  const consumed = (conn: Connection, bytes: number): void => {
    if (!live.has(conn)) return
    const pluginWasHigh = figures.buffered > options.maxBufferedBytesPerPlugin / 2
    conn.buffered -= bytes
    figures.buffered -= bytes
    if (pluginWasHigh && figures.buffered <= options.maxBufferedBytesPerPlugin / 2) resumeWhereRoom()
    else if (conn.paused && mayResume(conn)) resume(conn)
  }

  const resumeWhereRoom = (): void => {
    for (const other of live) if (other.paused && mayResume(other)) resume(other)
  }

  /** Forgets a finished connection's backlog (nothing more will be delivered from it). */
  const retire = (conn: Connection): void => {
    if (!live.delete(conn)) return
    if (conn.paused) {
      conn.paused = false
      figures.paused -= 1
    }
    figures.buffered -= conn.buffered
    conn.buffered = 0
    // Its backlog may have been what kept the others paused.
    resumeWhereRoom()
  }

  /** Starts closing a socket; a paused one reads again so the server's close frame gets through. */
  const startClose = (conn: Connection, code: number, reason: string): void => {
    conn.socket.close(code, reason)
    resume(conn)
  }

  const acquire = (id: string, target: Target, headers: Readonly<Record<string, string>>) =>
    Effect.acquireRelease(
      Effect.gen(function* () {
        const inbox = yield* Queue.unbounded<Inbound>()
        const opened = yield* Deferred.make<void, WebSocketError>()
        const closed = yield* Deferred.make<void>()
        const drained = yield* Deferred.make<void>()
        const url = target.url.href
        // `ws` 8.23 takes `closeTimeout` and hands `lookup` and `maxHeaderSize` on to the request;
        // its typings lack them.
        const clientOptions: WebSocket.ClientOptions & {
          readonly closeTimeout: number
          readonly lookup: LookupFunction
          readonly maxHeaderSize: number
        } = {
          headers,
          handshakeTimeout: options.handshakeTimeoutMs,
          closeTimeout: options.closeTimeoutMs,
          maxPayload: options.maxPayloadBytes,
          maxHeaderSize: options.maxHeaderBytes,
          // Counted bytes are wire bytes: no inflation, so no compression bomb and no zlib per socket.
          perMessageDeflate: false,
          followRedirects: false,
          lookup: NetworkPolicy.guardedLookup(policy, target.host, options.lookup)
        }
        const socket = yield* Effect.try({
          try: () => new WebSocket(url, clientOptions),
          catch: (cause) =>
            new WebSocketError({
              reason: "BadRequest",
              message: `cannot connect to ${url}: ${describe(cause)}`,
              cause
            })
        })
        const conn: Connection = {
          id,
          url,
          socket,
          inbox,
          opened,
          closed,
          drained,
          buffered: 0,
          paused: false,
          reading: false,
          closeGate: Effect.void
        }
        live.add(conn)
        // Listeners go on before the handshake ends, so nothing sent right after it is lost.
        let open = false
        socket.on("open", () => {
          open = true
          Deferred.unsafeDone(opened, Exit.void)
        })
        socket.on("message", (data, isBinary) => {
          // As in browsers, what arrives after a close began is dropped: nobody is listening.
          if (socket.readyState !== WebSocket.OPEN) return
          const bytes = Array.isArray(data)
            ? Buffer.concat(data)
            : data instanceof ArrayBuffer
              ? Buffer.from(data)
              : data
          push(conn, { _tag: "Message", data: bytes, binary: isBinary })
        })
        socket.on("error", (error) => {
          if (open) return push(conn, { _tag: "Error", error: errorText(error, options) })
          Deferred.unsafeDone(
            opened,
            Exit.fail(
              error instanceof NetworkPolicy.AddressRefused
                ? new WebSocketError({ reason: "Forbidden", message: error.message, cause: error })
                : new WebSocketError({
                    reason: "Handshake",
                    message: `websocket handshake with ${url} failed: ${error.message}`,
                    cause: error
                  })
            )
          )
        })
        socket.on("close", (code, reason) => {
          forget(conn)
          if (open) push(conn, { _tag: "Close", code, reason: reason.toString("utf8") })
          else {
            Deferred.unsafeDone(
              opened,
              Exit.fail(
                new WebSocketError({
                  reason: "Handshake",
                  message: `websocket handshake with ${url} failed: closed with code ${code}`
                })
              )
            )
          }
          Deferred.unsafeDone(closed, Exit.void)
        })
        return conn
      }),
      (conn) => release(conn)
    )

  /** Closes the socket (1001 if open), then waits, bounded, for the close and its on_close delivery. */
  const release = (conn: Connection) =>
    Effect.gen(function* () {
      const { socket } = conn
      if (socket.readyState === WebSocket.CONNECTING) socket.terminate()
      else if (socket.readyState === WebSocket.OPEN) startClose(conn, 1001, "going away")
      yield* Deferred.await(conn.closed).pipe(
        Effect.zipRight(Effect.suspend(() => (conn.reading ? Deferred.await(conn.drained) : Effect.void))),
        Effect.timeout(Duration.millis(options.closeTimeoutMs)),
        Effect.ignore
      )
      if (socket.readyState !== WebSocket.CLOSED) socket.terminate()
      retire(conn)
      yield* Queue.shutdown(conn.inbox)
    })

  /** Runs the plugin's callbacks for one connection, in order, until on_close has been delivered. */
  const read = (conn: Connection, scope: Scope.CloseableScope) =>
    Effect.gen(function* () {
      for (;;) {
        const event = yield* Queue.take(conn.inbox)
        switch (event._tag) {
          case "Message": {
            // Held (and counted as buffered) while it waits for the plugin's delivery rate.
            if (yield* rate.take(event.data.byteLength)) figures.throttled += 1
            // Counted out once the plugin has it: the bytes stay held until the callback returns.
            const delivery = event.binary
              ? deliver(conn, "nd_websocket_on_binary_message", { data: toBase64(event.data) })
              : deliver(conn, "nd_websocket_on_text_message", { message: event.data.toString("utf8") })
            yield* Effect.ensuring(
              delivery,
              Effect.sync(() => consumed(conn, event.data.byteLength))
            )
            break
          }
          case "Error":
            yield* deliver(conn, "nd_websocket_on_error", { error: event.error })
            break
          case "Close":
            forget(conn)
            retire(conn)
            // A plugin that closed the connection itself hears about it after that call returns.
            yield* conn.closeGate
            yield* deliver(conn, "nd_websocket_on_close", { code: event.code, reason: event.reason })
            return
        }
      }
    }).pipe(
      Effect.ensuring(
        Deferred.succeed(conn.drained, undefined).pipe(Effect.zipRight(Scope.close(scope, Exit.void)))
      )
    )

  const sendNow = (conn: Connection, connectionId: string, data: string | Uint8Array) =>
    Effect.async<object, WebSocketError>((resume) => {
      conn.socket.send(data, { binary: typeof data !== "string" }, (error) =>
        resume(
          error === undefined || error === null
            ? Effect.succeed({})
            : Effect.fail(
                new WebSocketError({
                  reason: "Send",
                  message: `websocket connection ${connectionId}: send failed: ${error.message}`,
                  cause: error
                })
              )
        )
      )
    }).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(options.sendTimeoutMs),
        onTimeout: () =>
          new WebSocketError({
            reason: "Timeout",
            message: `websocket connection ${connectionId}: the server did not take the message within ${options.sendTimeoutMs} ms`
          })
      })
    )

  return { acquire, read, sendNow, startClose }
}

/** One plugin's sockets, as `makeConnections` builds them. */
export type Connections = ReturnType<typeof makeConnections>

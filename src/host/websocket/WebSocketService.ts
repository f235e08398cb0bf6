/**
 * The WebSocket host service (`websocket`): plugins open client WebSockets to the hosts their
 * manifest lists and get what arrives through their `nd_websocket_on_*` exports.
 *
 * Every connection lives in a scope of its own under the plugin's scope: the socket is acquired
 * there and closed (code 1001, "going away") when that scope closes. A queue per connection,
 * filled by the socket's listeners and drained by one reader fiber, runs the plugin's callbacks in
 * arrival order, one at a time. A host call never waits for a callback: the plugin's worker is
 * blocked in that host call, so anything that calls back into the plugin is forked.
 *
 * What a server sends is held only in bytes the service counts: per connection and per plugin,
 * the socket stops reading (TCP then pushes back on the server) once a budget is reached, and
 * reads again as the plugin catches up. Frames above `maxPayloadBytes` close the connection (1009).
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { randomBase62 } from "../../internal/Ids.js"
import { lookup as dnsLookup } from "node:dns"
import * as Either from "effect/Either"
import type { LookupFunction } from "node:net"
import WebSocket from "ws"
import type { HostCallContext } from "../../runtime/WasmRuntime.js"
import { Bytes, type HostFunctionHandler, hostFunction, toBase64 } from "../HostCodec.js"
import { define, type HostServiceProvider, type PluginContext } from "../HostProvider.js"
import * as NetworkPolicy from "../network/NetworkPolicy.js"
import { WebSocketError } from "./WebSocketError.js"

/** Settings of the WebSocket service; `defaultWebSocketOptions` has them all. */
export interface WebSocketOptions {
  /** How long the opening handshake may take. */
  readonly handshakeTimeoutMs: number
  /** How long a send may wait for the socket to take the data. */
  readonly sendTimeoutMs: number
  /** How long closing a connection on unload may take, on_close callback included. */
  readonly closeTimeoutMs: number
  /**
   * The largest message (all its frames together) accepted from a server; a larger one closes the
   * connection with 1009. It reaches the plugin as its call input.
   */
  readonly maxPayloadBytes: number
  /** Received bytes one connection may hold for the plugin before its socket stops reading. */
  readonly maxBufferedBytesPerConnection: number
  /** Received bytes all of a plugin's connections may hold before they all stop reading. */
  readonly maxBufferedBytesPerPlugin: number
  /** Bytes a send may leave waiting for a server that does not read before sends are refused. */
  readonly maxOutboundBytes: number
  /** The largest handshake response head (status line and headers) accepted from a server. */
  readonly maxHeaderBytes: number
  /** Open connections per plugin. */
  readonly maxConnections: number
  /** DNS resolution; every address it returns is checked before the socket connects. */
  readonly lookup: LookupFunction
  /** Where each plugin's inbound figures are published (monitoring, tests); optional. */
  readonly meter?: InboundMeter | undefined
}

/** The settings the engine uses. */
export const defaultWebSocketOptions: WebSocketOptions = {
  handshakeTimeoutMs: 10_000,
  sendTimeoutMs: 10_000,
  closeTimeoutMs: 5_000,
  maxPayloadBytes: 1024 * 1024,
  maxBufferedBytesPerConnection: 4 * 1024 * 1024,
  maxBufferedBytesPerPlugin: 16 * 1024 * 1024,
  maxOutboundBytes: 4 * 1024 * 1024,
  maxHeaderBytes: 16 * 1024,
  maxConnections: 256,
  lookup: dnsLookup as LookupFunction
}

/** One plugin's inbound WebSocket figures, kept up to date as data arrives and is delivered. */
export interface InboundFigures {
  /** Bytes received from servers and not yet delivered to the plugin, over all its connections. */
  buffered: number
  /** The most `buffered` has ever been. */
  peak: number
  /** The most one connection has ever held. */
  connectionPeak: number
  /** Connections whose socket is paused right now. */
  paused: number
  /** How many times a socket was paused. */
  pauses: number
}

/** Where the service publishes each plugin's inbound figures, by plugin ID (the latest load wins). */
export class InboundMeter {
  readonly #plugins = new Map<string, InboundFigures>()
  /** The figures of a plugin (all zero before it connects anywhere). */
  of(pluginId: string): InboundFigures {
    return this.#plugins.get(pluginId) ?? { buffered: 0, peak: 0, connectionPeak: 0, paused: 0, pauses: 0 }
  }
  /** Registers the live figures of a plugin's service. */
  track(pluginId: string, figures: InboundFigures): void {
    this.#plugins.set(pluginId, figures)
  }
}

/** The host functions of this service, the draft's `websocket_close` alias included, and their permission. */
export const definition = define({
  grant: "websocket",
  functions: [
    "websocket_connect",
    "websocket_sendtext",
    "websocket_sendbinary",
    "websocket_closeconnection",
    "websocket_close"
  ]
})

/** A random 22-character base62 connection ID (about 131 bits, unbiased). */
export const generateConnectionId = (): string => randomBase62()

/** Whether `code` may be sent in a close frame (RFC 6455 §7.4, as `ws` checks it). */
export const isValidCloseCode = (code: number): boolean =>
  (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
  (code >= 3000 && code <= 4999)

const Connect = Schema.Struct({
  url: Schema.String,
  headers: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.String }), {
    default: () => ({})
  }),
  connectionId: Schema.optionalWith(Schema.String, { default: () => "" })
})
const SendText = Schema.Struct({ connectionId: Schema.String, message: Schema.String })
const SendBinary = Schema.Struct({ connectionId: Schema.String, data: Bytes })
const Close = Schema.Struct({
  connectionId: Schema.String,
  code: Schema.optionalWith(Schema.Int, { default: () => 0 }),
  reason: Schema.optionalWith(Schema.String, { default: () => "" })
})

/** What the socket delivered, in the order it arrived; messages are kept as the bytes received. */
type Inbound =
  | { readonly _tag: "Message"; readonly data: Buffer; readonly binary: boolean }
  | { readonly _tag: "Error"; readonly error: string }
  | { readonly _tag: "Close"; readonly code: number; readonly reason: string }

interface Connection {
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

interface Target {
  readonly url: URL
  readonly host: string
}

/** Checks a URL against the scheme rule and the plugin's policy, before anything touches the network. */
export const checkTarget = (
  raw: string,
  policy: NetworkPolicy.NetworkPolicy
): Effect.Effect<Target, WebSocketError> =>
  Effect.gen(function* () {
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      return yield* new WebSocketError({
        reason: "BadRequest",
        message: `invalid websocket URL ${JSON.stringify(raw)}`
      })
    }
    if (url.protocol !== "ws:" && url.protocol !== "wss:") {
      return yield* new WebSocketError({
        reason: "Scheme",
        message: `websocket URL ${JSON.stringify(raw)} must use ws or wss, not ${url.protocol.slice(0, -1)}`
      })
    }
    const host = NetworkPolicy.checkHost(policy, url.hostname)
    if (Either.isLeft(host)) return yield* new WebSocketError({ reason: "Forbidden", message: host.left })
    return { url, host: host.right }
  })

/** The plugin's message for a socket error: `ws`'s own text, or what to do about our limits. */
const errorText = (error: Error, options: WebSocketOptions): string =>
  (error as { code?: unknown }).code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH"
    ? `the server sent a message larger than ${options.maxPayloadBytes} bytes (maxPayloadBytes); the connection is closed with 1009`
    : error.message

/** Builds one plugin's WebSocket functions; connections live in the current scope (the plugin's). */
export const forPlugin = (
  context: PluginContext,
  options: WebSocketOptions = defaultWebSocketOptions
): Effect.Effect<Record<string, HostFunctionHandler>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const policy = NetworkPolicy.make({
      permission: "websocket",
      requiredHosts: context.manifest.permissions.websocket?.requiredHosts ?? [],
      grants: context.allowedNetworks
    })
    const active = new Map<string, Connection>()
    /** Every connection whose socket may still deliver data, open or closing. */
    const live = new Set<Connection>()
    const figures: InboundFigures = { buffered: 0, peak: 0, connectionPeak: 0, paused: 0, pauses: 0 }
    options.meter?.track(context.pluginId, figures)
    const connecting = new Set<string>()
    // Readers are anonymous: after a close the plugin may reuse the ID while the old reader still
    // delivers on_close, so they cannot be keyed by connection ID.
    const readers = yield* FiberSet.make<void>()
    const pluginScope = yield* Effect.scope
    yield* Effect.addFinalizer(() => Effect.sync(() => active.clear()))
    // Connections go in a scope forked from the plugin's on first use, which is during a host call,
    // so after the plugin instance was registered: on unload this scope therefore closes before the
    // instance goes away, and on_close can still be delivered. Parallel: sockets close together.
    const connectionsScope = yield* Effect.cached(Scope.fork(pluginScope, ExecutionStrategy.parallel))

    const deliver = (conn: Connection, exportName: string, payload: Record<string, unknown>) =>
      context.callPlugin(exportName, JSON.stringify({ connectionId: conn.id, ...payload })).pipe(
        Effect.asVoid,
        Effect.catchTag("PluginNotImplementedError", () => Effect.void),
        Effect.catchAll((error) =>
          Effect.logWarning(`websocket ${exportName} for connection ${conn.id} failed: ${error.message}`)
        ),
        Effect.annotateLogs("plugin", context.pluginId)
      )

    const forget = (conn: Connection): void => {
      if (active.get(conn.id) === conn) active.delete(conn.id)
    }

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

    const reserve = (requested: string) =>
      Effect.suspend(() => {
        const id = requested === "" ? generateConnectionId() : requested
        if (active.has(id) || connecting.has(id)) {
          return Effect.fail(
            new WebSocketError({
              reason: "AlreadyExists",
              message: `websocket connection ${id} already exists`
            })
          )
        }
        if (active.size + connecting.size >= options.maxConnections) {
          return Effect.fail(
            new WebSocketError({
              reason: "TooMany",
              message: `plugin ${context.pluginId} already has ${options.maxConnections} open websocket connections; close one first`
            })
          )
        }
        connecting.add(id)
        return Effect.succeed(id)
      })

    const connect = Effect.fn("WebSocket.connect")(function* (
      request: typeof Connect.Type,
      headers: Readonly<Record<string, string>>
    ) {
      const target = yield* checkTarget(request.url, policy)
      const id = yield* reserve(request.connectionId)
      return yield* Effect.gen(function* () {
        const scope = yield* Scope.fork(yield* connectionsScope, ExecutionStrategy.sequential)
        const conn = yield* Effect.gen(function* () {
          const conn = yield* acquire(id, target, headers).pipe(Scope.extend(scope))
          yield* Deferred.await(conn.opened).pipe(
            Effect.timeoutFail({
              duration: Duration.millis(options.handshakeTimeoutMs + 1_000),
              onTimeout: () =>
                new WebSocketError({
                  reason: "Timeout",
                  message: `websocket handshake with ${conn.url} did not finish within ${options.handshakeTimeoutMs} ms`
                })
            })
          )
          return conn
        }).pipe(
          Effect.tapError((error) =>
            error.cause instanceof NetworkPolicy.AddressRefused
              ? Effect.logWarning(
                  `websocket ${target.host} refused: it resolved to ${error.cause.address} (${error.cause.kind}); ` +
                    "grant it with --allow-network if the plugin may reach it"
                ).pipe(Effect.annotateLogs("plugin", context.pluginId))
              : Effect.void
          ),
          Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
        )
        if (conn.socket.readyState === WebSocket.OPEN) active.set(id, conn)
        conn.reading = true
        yield* FiberSet.run(readers, read(conn, scope))
        yield* Effect.logDebug(`websocket ${id} connected to ${conn.url}`)
        return { newConnectionId: id }
      }).pipe(Effect.ensuring(Effect.sync(() => connecting.delete(id))))
    })

    const openConnection = (connectionId: string) =>
      Effect.suspend(() => {
        const conn = active.get(connectionId)
        if (conn === undefined) {
          return Effect.fail(
            new WebSocketError({
              reason: "NotFound",
              message: `websocket connection ${connectionId} not found`
            })
          )
        }
        if (conn.socket.readyState !== WebSocket.OPEN) {
          return Effect.fail(
            new WebSocketError({
              reason: "NotOpen",
              message: `websocket connection ${connectionId} is closing`
            })
          )
        }
        return Effect.succeed(conn)
      })

    const send = (connectionId: string, data: string | Uint8Array) =>
      Effect.flatMap(openConnection(connectionId), (conn) =>
        conn.socket.bufferedAmount >= options.maxOutboundBytes
          ? Effect.fail(
              new WebSocketError({
                reason: "Send",
                message: `websocket connection ${connectionId}: the server is not reading; ${conn.socket.bufferedAmount} bytes are still waiting to be sent, try again later`
              })
            )
          : sendNow(conn, connectionId, data)
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

    const close = Effect.fn("WebSocket.close")(function* (request: typeof Close.Type, call: HostCallContext) {
      const code = request.code === 0 ? 1000 : request.code
      if (!isValidCloseCode(code)) {
        return yield* new WebSocketError({
          reason: "BadRequest",
          message: `invalid close code ${code}: use 1000 or 3000–4999`
        })
      }
      if (Buffer.byteLength(request.reason) > 123) {
        return yield* new WebSocketError({
          reason: "BadRequest",
          message: "close reason must not be longer than 123 bytes"
        })
      }
      const conn = active.get(request.connectionId)
      if (conn === undefined) {
        return yield* new WebSocketError({
          reason: "NotFound",
          message: `websocket connection ${request.connectionId} not found`
        })
      }
      forget(conn)
      conn.closeGate = call.callFinished
      startClose(conn, code, request.reason)
      return {}
    })

    const closeHandler = hostFunction("websocket_closeconnection", Close, close)
    return {
      websocket_connect: hostFunction("websocket_connect", Connect, (request) =>
        connect(request, request.headers)
      ),
      websocket_sendtext: hostFunction("websocket_sendtext", SendText, (request) =>
        send(request.connectionId, request.message)
      ),
      websocket_sendbinary: hostFunction("websocket_sendbinary", SendBinary, (request) =>
        send(request.connectionId, request.data)
      ),
      websocket_closeconnection: closeHandler,
      websocket_close: closeHandler
    } satisfies Record<(typeof definition.functions)[number], HostFunctionHandler>
  })

/** The WebSocket host service: each plugin's connections live in its scope. */
export class WebSocketService extends Context.Tag("ndp-engine/host/WebSocketService")<
  WebSocketService,
  HostServiceProvider
>() {}

/** The WebSocket service with these settings (missing ones take `defaultWebSocketOptions`). */
export const make = Effect.fn("WebSocketService.make")((
  options: Partial<WebSocketOptions> = {}
): Effect.Effect<HostServiceProvider> => {
  const settings: WebSocketOptions = { ...defaultWebSocketOptions, ...options }
  return Effect.succeed({ ...definition, make: (context) => forPlugin(context, settings) })
})

/** The WebSocket service as a layer. */
export const layer = (options: Partial<WebSocketOptions> = {}): Layer.Layer<WebSocketService> =>
  Layer.effect(WebSocketService, make(options))

/** The WebSocket service with its settings read from `Config` (DNS stays the system's unless given). */
export const layerConfig = (
  config: Config.Config.Wrap<Partial<WebSocketOptions>>
): Layer.Layer<WebSocketService, ConfigError.ConfigError> =>
  Layer.effect(WebSocketService, Effect.flatMap(Config.unwrap(config), make))

/**
 * The WebSocket host service (`websocket`): plugins open client WebSockets to the hosts their
 * manifest lists and get what arrives through their `nd_websocket_on_*` exports.
 *
 * Every connection lives in a scope of its own under the plugin's scope: the socket is acquired
 * there and closed (code 1001, "going away") when that scope closes. A queue per connection,
 * filled by the socket's listeners and drained by one reader fiber, runs the plugin's callbacks in
 * arrival order, one at a time. A host call never waits for a callback: the plugin's worker is
 * blocked in that host call, so anything that calls back into the plugin is forked.
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { randomBase62 } from "../../internal/Ids.js"
import { lookup as dnsLookup } from "node:dns"
import { isIP, type LookupFunction } from "node:net"
import WebSocket from "ws"
import type { HostCallContext } from "../../runtime/WasmRuntime.js"
import { Bytes, type HostFunctionHandler, hostFunction, toBase64 } from "../HostCodec.js"
import type { HostServiceProvider, PluginContext } from "../HostFunctions.js"
import { classifyAddress, describeKind, guardedLookup, normaliseHostname } from "../http/HostPolicy.js"
import { type HostPatterns, isHostAllowed, isListedExactly, parseHostPatterns } from "./HostPatterns.js"
import { WebSocketError } from "./WebSocketError.js"

/** Settings of the WebSocket service; `defaultWebSocketOptions` has them all. */
export interface WebSocketOptions {
  /** How long the opening handshake may take. */
  readonly handshakeTimeoutMs: number
  /** How long a send may wait for the socket to take the data. */
  readonly sendTimeoutMs: number
  /** How long closing a connection on unload may take, on_close callback included. */
  readonly closeTimeoutMs: number
  /** The largest message accepted from a server (it reaches the plugin as its call input). */
  readonly maxPayloadBytes: number
  /** Open connections per plugin. */
  readonly maxConnections: number
  /** DNS resolution; every address it returns is checked before the socket connects. */
  readonly lookup: LookupFunction
}

/** The settings the engine uses. */
export const defaultWebSocketOptions: WebSocketOptions = {
  handshakeTimeoutMs: 10_000,
  sendTimeoutMs: 10_000,
  closeTimeoutMs: 5_000,
  maxPayloadBytes: 8 * 1024 * 1024,
  maxConnections: 256,
  lookup: dnsLookup as LookupFunction
}

/** The host functions of this service, the draft's `websocket_close` alias included. */
export const functionNames: ReadonlyArray<string> = [
  "websocket_connect",
  "websocket_sendtext",
  "websocket_sendbinary",
  "websocket_closeconnection",
  "websocket_close"
]

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

/** What the socket delivered, in the order it arrived. */
type Inbound =
  | { readonly _tag: "Text"; readonly message: string }
  | { readonly _tag: "Binary"; readonly data: string }
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
  /** Events queued and not yet taken by the reader. */
  pending: number
  reading: boolean
  /** What on_close waits for: the end of the plugin call that closed the connection, if one did. */
  closeGate: Effect.Effect<void>
}

/** Above this many undelivered events the socket stops reading, so a flood waits in the kernel. */
const HIGH_WATER = 256
const LOW_WATER = 64

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** A lookup answer refused by the address policy; recognised when it comes back as a socket error. */
class AddressRefused extends Error {}

const addressRefusal = (host: string, address: string, kind: ReturnType<typeof classifyAddress>): string =>
  `websocket host ${JSON.stringify(host)} ${host === address ? "is" : `resolves to ${address}, which is`} a ` +
  `${describeKind(kind)} address; plugins may reach it only when websocket.requiredHosts lists ` +
  `${JSON.stringify(host)} exactly`

interface Target {
  readonly url: URL
  readonly host: string
  readonly mayReachPrivate: boolean
}

/** Checks a URL against the scheme rule and the plugin's hosts, before anything touches the network. */
export const checkTarget = (raw: string, hosts: HostPatterns): Effect.Effect<Target, WebSocketError> =>
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
    const host = normaliseHostname(url.hostname)
    if (!isHostAllowed(hosts, host)) {
      return yield* new WebSocketError({
        reason: "Forbidden",
        message: `websocket host ${JSON.stringify(host)} is not allowed: add it to permissions.websocket.requiredHosts in the manifest`
      })
    }
    const mayReachPrivate = isListedExactly(hosts, host)
    // Node connects to an IP literal without calling `lookup`, so literals are checked here.
    if (isIP(host) !== 0 && !mayReachPrivate) {
      const kind = classifyAddress(host)
      if (kind !== "public") {
        return yield* new WebSocketError({ reason: "Forbidden", message: addressRefusal(host, host, kind) })
      }
    }
    return { url, host, mayReachPrivate }
  })

/** Builds one plugin's WebSocket functions; connections live in the current scope (the plugin's). */
export const make = (
  context: PluginContext,
  options: WebSocketOptions = defaultWebSocketOptions
): Effect.Effect<Record<string, HostFunctionHandler>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const hosts = parseHostPatterns(context.manifest.permissions.websocket?.requiredHosts ?? [])
    const active = new Map<string, Connection>()
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

    const push = (conn: Connection, event: Inbound): void => {
      conn.pending += 1
      Queue.unsafeOffer(conn.inbox, event)
      if (conn.pending >= HIGH_WATER && !conn.socket.isPaused) conn.socket.pause()
    }

    const acquire = (id: string, target: Target, headers: Readonly<Record<string, string>>) =>
      Effect.acquireRelease(
        Effect.gen(function* () {
          const inbox = yield* Queue.unbounded<Inbound>()
          const opened = yield* Deferred.make<void, WebSocketError>()
          const closed = yield* Deferred.make<void>()
          const drained = yield* Deferred.make<void>()
          const url = target.url.href
          // `ws` 8.23 takes `closeTimeout` and hands `lookup` on to the socket; its typings lack both.
          const clientOptions: WebSocket.ClientOptions & {
            readonly closeTimeout: number
            readonly lookup: LookupFunction
          } = {
            headers,
            handshakeTimeout: options.handshakeTimeoutMs,
            closeTimeout: options.closeTimeoutMs,
            maxPayload: options.maxPayloadBytes,
            followRedirects: false,
            lookup: guardedLookup(
              options.lookup,
              target.mayReachPrivate,
              (address, kind) => new AddressRefused(addressRefusal(target.host, address, kind))
            )
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
            pending: 0,
            reading: false,
            closeGate: Effect.void
          }
          // Listeners go on before the handshake ends, so nothing sent right after it is lost.
          let open = false
          socket.on("open", () => {
            open = true
            Deferred.unsafeDone(opened, Exit.void)
          })
          socket.on("message", (data, isBinary) => {
            const bytes = Array.isArray(data)
              ? Buffer.concat(data)
              : data instanceof ArrayBuffer
                ? Buffer.from(data)
                : data
            push(
              conn,
              isBinary
                ? { _tag: "Binary", data: toBase64(bytes) }
                : { _tag: "Text", message: bytes.toString("utf8") }
            )
          })
          socket.on("error", (error) => {
            if (open) return push(conn, { _tag: "Error", error: error.message })
            Deferred.unsafeDone(
              opened,
              Exit.fail(
                error instanceof AddressRefused
                  ? new WebSocketError({ reason: "Forbidden", message: error.message })
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
        else if (socket.readyState === WebSocket.OPEN) socket.close(1001, "going away")
        yield* Deferred.await(conn.closed).pipe(
          Effect.zipRight(Effect.suspend(() => (conn.reading ? Deferred.await(conn.drained) : Effect.void))),
          Effect.timeout(Duration.millis(options.closeTimeoutMs)),
          Effect.ignore
        )
        if (socket.readyState !== WebSocket.CLOSED) socket.terminate()
        yield* Queue.shutdown(conn.inbox)
      })

    /** Runs the plugin's callbacks for one connection, in order, until on_close has been delivered. */
    const read = (conn: Connection, scope: Scope.CloseableScope) =>
      Effect.gen(function* () {
        for (;;) {
          const event = yield* Queue.take(conn.inbox)
          conn.pending -= 1
          if (conn.pending <= LOW_WATER && conn.socket.isPaused) conn.socket.resume()
          switch (event._tag) {
            case "Text":
              yield* deliver(conn, "nd_websocket_on_text_message", { message: event.message })
              break
            case "Binary":
              yield* deliver(conn, "nd_websocket_on_binary_message", { data: event.data })
              break
            case "Error":
              yield* deliver(conn, "nd_websocket_on_error", { error: event.error })
              break
            case "Close":
              forget(conn)
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
      const target = yield* checkTarget(request.url, hosts)
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
        }).pipe(Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause))))
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
      conn.socket.close(code, request.reason)
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
    } satisfies Record<string, HostFunctionHandler>
  })

/** The service with the given settings. */
export const makeProvider = (options: WebSocketOptions): HostServiceProvider => ({
  grant: "websocket",
  functions: functionNames,
  make: (context) => make(context, options)
})

/** The service with its default settings. */
export const provider: HostServiceProvider = makeProvider(defaultWebSocketOptions)

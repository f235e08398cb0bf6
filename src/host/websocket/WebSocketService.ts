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
 *
 * This module is what a plugin may ask for (IDs, the connection limit, URLs, close codes);
 * `WebSocketConnection` is the socket machinery (open, budget, reader, send, close).
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { lookup as dnsLookup } from "node:dns"
import type { LookupFunction } from "node:net"
import WebSocket from "ws"
import { randomBase62 } from "../../internal/Ids.js"
import * as PluginMetrics from "../../metrics/PluginMetrics.js"
import type { HostCallContext } from "../../runtime/WasmRuntime.js"
import { Bytes, type HostFunctionHandler, hostFunction } from "../HostCodec.js"
import { define, type HostServiceProvider, type PluginContext } from "../HostProvider.js"
import * as NetworkPolicy from "../network/NetworkPolicy.js"
import { type Connection, makeConnections } from "./WebSocketConnection.js"
import { WebSocketError } from "./WebSocketError.js"
import { type ConnectionOptions, type InboundMeter, noInbound, type Target } from "./WebSocketTypes.js"

export { type InboundFigures, InboundMeter } from "./WebSocketTypes.js"

/** Settings of the WebSocket service; `defaultWebSocketOptions` has them all. */
export interface WebSocketOptions extends ConnectionOptions {
  /** Bytes a send may leave waiting for a server that does not read before sends are refused. */
  readonly maxOutboundBytes: number
  /** Open connections per plugin. */
  readonly maxConnections: number
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
  inboundMessagesPerSecond: 200,
  inboundBurstMessages: 1_000,
  inboundBytesPerSecond: 2 * 1024 * 1024,
  inboundBurstBytes: 8 * 1024 * 1024,
  maxOutboundBytes: 4 * 1024 * 1024,
  maxHeaderBytes: 16 * 1024,
  maxConnections: 256,
  lookup: dnsLookup as LookupFunction
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

/** Checks a URL against the scheme rule and the plugin's policy, before anything touches the network. */
export const checkTarget = Effect.fn("WebSocketService.checkTarget")(function* (
  raw: string,
  policy: NetworkPolicy.NetworkPolicy
): Effect.fn.Return<Target, WebSocketError> {
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

/** Builds one plugin's WebSocket functions; connections live in the current scope (the plugin's). */
export const forPlugin = Effect.fn("WebSocketService.forPlugin")(function* (
  context: PluginContext,
  options: WebSocketOptions = defaultWebSocketOptions
): Effect.fn.Return<Record<string, HostFunctionHandler>, never, Scope.Scope> {
  const policy = NetworkPolicy.make({
    permission: "websocket",
    requiredHosts: context.manifest.permissions.websocket?.requiredHosts ?? [],
    grants: context.allowedNetworks
  })
  const active = new Map<string, Connection>()
  const figures = noInbound()
  options.meter?.track(context.pluginId, figures)
  const connecting = new Set<string>()
  // Readers are anonymous: after a close the plugin may reuse the ID while the old reader still
  // delivers on_close, so they cannot be keyed by connection ID.
  const readers = yield* FiberSet.make<void>()
  const pluginScope = yield* Effect.scope
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      active.clear()
      PluginMetrics.setGaugeNow(PluginMetrics.sockets, context.pluginId, 0)
    })
  )
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

  const reportSockets = (): void =>
    PluginMetrics.setGaugeNow(PluginMetrics.sockets, context.pluginId, active.size)
  const forget = (conn: Connection): void => {
    if (active.get(conn.id) === conn) active.delete(conn.id)
    reportSockets()
  }

  const { acquire, read, sendNow, startClose } = makeConnections({
    deliver,
    figures,
    forget,
    options,
    policy
  })

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

  const connect = Effect.fn("WebSocketService.connect")(function* (
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
      reportSockets()
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

  const close = Effect.fn("WebSocketService.close")(function* (
    request: typeof Close.Type,
    call: HostCallContext
  ) {
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

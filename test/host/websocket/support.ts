/** A WebSocket server on 127.0.0.1 for tests, timed log capture, and a driver of the host-websocket fixture. */
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type * as http from "node:http"
import type { AddressInfo } from "node:net"
import { performance } from "node:perf_hooks"
import { type RawData, type WebSocket, WebSocketServer } from "ws"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import { fixture } from "../../support/fixtures.js"

/** One client connection as the server sees it. */
export interface ServerSide {
  readonly socket: WebSocket
  readonly request: http.IncomingMessage
  readonly texts: Array<string>
  readonly binaries: Array<Buffer>
  /** The close code and reason the server observed, once the connection has closed. */
  closed: { readonly code: number; readonly reason: string } | undefined
}

/** A running server and the connections it accepted. */
export interface TestWsServer {
  readonly port: number
  readonly url: string
  readonly connections: Array<ServerSide>
  /** Clients currently connected. */
  readonly clientCount: () => number
}

const toBuffer = (data: RawData): Buffer =>
  Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? Buffer.from(data) : data

/** A WebSocket server on 127.0.0.1 (random port) that echoes every message unless `echo` is false. */
export const wsServer = (
  options: {
    readonly echo?: boolean
    /** Refuse every upgrade with this HTTP status. */
    readonly rejectWith?: number
    readonly onConnection?: (side: ServerSide) => void
  } = {}
): Effect.Effect<TestWsServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ server: WebSocketServer; result: TestWsServer }>((resume) => {
      const connections: Array<ServerSide> = []
      const { rejectWith } = options
      const server = new WebSocketServer({
        host: "127.0.0.1",
        port: 0,
        ...(rejectWith === undefined ? {} : { verifyClient: (_info, done) => done(false, rejectWith) })
      })
      server.on("connection", (socket, request) => {
        const side: ServerSide = { socket, request, texts: [], binaries: [], closed: undefined }
        connections.push(side)
        socket.on("message", (data, isBinary) => {
          const bytes = toBuffer(data)
          if (isBinary) side.binaries.push(bytes)
          else side.texts.push(bytes.toString("utf8"))
          if (options.echo !== false) socket.send(isBinary ? bytes : bytes.toString("utf8"))
        })
        socket.on("close", (code, reason) => {
          side.closed = { code, reason: reason.toString("utf8") }
        })
        socket.on("error", () => undefined)
        options.onConnection?.(side)
      })
      server.on("listening", () => {
        const { port } = server.address() as AddressInfo
        resume(
          Effect.succeed({
            server,
            result: {
              port,
              url: `ws://127.0.0.1:${port}/`,
              connections,
              clientCount: () => server.clients.size
            }
          })
        )
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        for (const client of server.clients) client.terminate()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ result }) => result))

/** A captured log line with the time it was logged. */
export interface TimedLog {
  readonly message: string
  readonly plugin: unknown
  readonly level: string
  readonly at: number
}

/** Records every log line with a `performance.now()` timestamp. */
export const timedLogs = () => {
  const lines: Array<TimedLog> = []
  const logger = Logger.make(({ annotations, logLevel, message }) => {
    lines.push({
      message: (Array.isArray(message) ? message : [message]).map(String).join(" "),
      plugin: Option.getOrUndefined(HashMap.get(annotations, "plugin")),
      level: logLevel.label,
      at: performance.now()
    })
  })
  const layer = Logger.replace(Logger.defaultLogger, logger)
  return {
    lines,
    provide: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, layer)
  }
}

export { eventually, realSleep } from "../../support/wait.js"

/** The number of TCP sockets the process holds open (client and server ends). */
export const openTcpSockets = (): number =>
  process.getActiveResourcesInfo().filter((name) => name === "TCPSocketWrap").length

const decoder = new TextDecoder()

/** The grant the test servers need: they listen on loopback, which no plugin may reach by default. */
export const LOOPBACK: ReadonlyArray<string> = ["127.0.0.0/8", "::1/128"]

/**
 * Loads host-websocket (or other package bytes under `id`) into `scope`, logging into `logs`,
 * granted `allowedNetworks` (default: loopback, where the test servers are; `[]` for none).
 */
export const websocketPlugin = (
  logs: ReturnType<typeof timedLogs>,
  options: {
    readonly scope?: Scope.Scope
    readonly id?: string
    readonly bytes?: Uint8Array
    readonly allowedNetworks?: ReadonlyArray<string>
  } = {}
) =>
  Effect.gen(function* () {
    const loader = yield* PluginLoader
    const id = options.id ?? "host-websocket"
    const loadOptions = { allowedNetworks: options.allowedNetworks ?? LOOPBACK }
    const load =
      options.bytes === undefined
        ? loader.loadFile(fixture("host-websocket"), loadOptions)
        : loader.loadBytes(id, options.bytes, loadOptions)
    const plugin = yield* logs.provide(options.scope === undefined ? load : Scope.extend(load, options.scope))
    /** Calls a passthrough export (`call_<fn>`) and parses the host function's raw response. */
    const call = (fn: string, request: unknown) =>
      Effect.map(
        plugin.call(`call_${fn}`, JSON.stringify(request)),
        (b) => JSON.parse(decoder.decode(b!)) as Record<string, unknown>
      )
    /** The plugin's own log lines, in order. */
    const lines = () => logs.lines.filter((l) => l.plugin === id).map((l) => l.message)
    return { plugin, call, lines }
  })

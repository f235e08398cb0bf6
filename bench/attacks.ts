/**
 * The hostile classes of the containment harness (`bench/containment.ts`), each a fixture of
 * `fixtures/` and what drives it, plus the servers some of them need (on 127.0.0.1). Used by
 * `npm run soak`, the bench's `containment` section and `test/containment/Soak.test.ts`.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { mkdtempSync, rmSync } from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { WebSocketServer } from "ws"
import * as Engine from "../src/Engine.js"
import { type LoadedPlugin, PluginLoader } from "../src/loader/PluginLoader.js"
import { type Attack, hammer } from "./containment.js"

const fixture = (id: string): string => fileURLToPath(new URL(`../build/fixtures/${id}.ndp`, import.meta.url))

/** Hostile plugins wait this close to their timeout. */
const WAIT_TIMEOUT_MS = 1_000
const WAIT_MS = 900
const LOOPBACK = ["127.0.0.1/32"]
/** Other hostile calls end by this timeout at the latest, so an attack's scope closes promptly. */
const HOSTILE_TIMEOUT_MS = 3_000

/** An HTTP server on 127.0.0.1 that answers every request after `delayMs`. */
const slowServer = (delayMs: number): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<http.Server>((resume) => {
      const server = http.createServer((_request, response) => {
        const timer = setTimeout(() => response.end("late"), delayMs)
        response.on("close", () => clearTimeout(timer))
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}/`))

/** A WebSocket server on 127.0.0.1 that sends 64 KiB binary frames to every client as fast as it can. */
const floodServer: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.async<WebSocketServer>((resume) => {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 })
    const frame = Buffer.alloc(64 * 1024, 7)
    server.on("connection", (socket) => {
      const pump = () => {
        while (socket.readyState === socket.OPEN && socket.bufferedAmount < 8 * 1024 * 1024) {
          socket.send(frame, { binary: true })
        }
        if (socket.readyState === socket.OPEN) setTimeout(pump, 5)
      }
      pump()
    })
    server.on("listening", () => resume(Effect.succeed(server)))
  }),
  (server) =>
    Effect.async<void>((resume) => {
      for (const client of server.clients) client.terminate()
      server.close(() => resume(Effect.void))
    })
).pipe(Effect.map((server) => `ws://127.0.0.1:${(server.address() as AddressInfo).port}/`))

const load = (id: string, options: Parameters<PluginLoader["Type"]["loadFile"]>[1] = {}) =>
  Effect.flatMap(PluginLoader, (loader) => loader.loadFile(fixture(id), options))

/** Loads `id` and calls one export over and over from `fibers` fibers. */
const simple = (
  name: string,
  description: string,
  id: string,
  exportName: string,
  input = "",
  options: { readonly fibers?: number; readonly timeoutMs?: number; readonly pauseMs?: number } = {}
): Attack => ({
  name,
  description,
  start: Effect.flatMap(load(id, { timeoutMs: options.timeoutMs ?? HOSTILE_TIMEOUT_MS }), (plugin) =>
    hammer(plugin, exportName, input, { fibers: options.fibers ?? 1, ...options })
  )
})

/**
 * Every hostile class. `poolSize` is the engine's pool size: the waiting classes send that many
 * calls at once, enough to hold every worker if the pool let them.
 */
export const attacks = (poolSize: number): ReadonlyArray<Attack> => [
  simple("log-flood", "5 million short log lines per call", "log-flood", "nd_get_artist_biography"),
  simple("log-long-line", "log lines of several MiB", "log-long-line", "nd_get_artist_biography"),
  simple(
    "stdout-flood",
    "WASI stdout/stderr lines as fast as it can",
    "stdout-flood",
    "nd_get_artist_biography"
  ),
  simple(
    "vars-key-hog",
    "Extism vars with long keys and empty values",
    "vars-key-hog",
    "nd_get_artist_biography"
  ),
  simple("alloc-zero-hog", "endless alloc(0)", "alloc-zero-hog", "nd_get_artist_biography"),
  simple(
    "loop",
    "an endless loop in every call (300 ms timeout)",
    "loop-export",
    "nd_get_artist_biography",
    "",
    {
      fibers: 2,
      timeoutMs: 300
    }
  ),
  simple("memory-hog", "grows its memory to the cap", "memory-hog", "nd_get_artist_biography"),
  simple(
    "pool-sleepers",
    `${poolSize} calls at once, each sleeping in WASI poll_oneoff just under its timeout`,
    "sleeper",
    "nd_get_artist_biography",
    String(WAIT_MS),
    { fibers: poolSize, timeoutMs: WAIT_TIMEOUT_MS }
  ),
  {
    name: "pool-slow-host",
    description: `${poolSize} calls at once, each blocked on an HTTP server answering just under the timeout`,
    start: Effect.gen(function* () {
      const url = yield* slowServer(WAIT_MS)
      const plugin = yield* load("slow-host", { timeoutMs: WAIT_TIMEOUT_MS, allowedNetworks: LOOPBACK })
      return yield* hammer(plugin, "nd_get_artist_biography", url, { fibers: poolSize })
    })
  },
  {
    ...simple(
      "scheduler-never-fires",
      "hundreds of cron schedules that parse but never fire, with a time zone",
      "scheduler-abuser",
      "flood",
      JSON.stringify({ count: 300, expression: "CRON_TZ=Europe/Paris 0 0 31 2 *" })
    ),
    aloneOnly: true
  },

  {
    ...simple(
      "scheduler-too-many",
      "thousands of @every 1s schedules",
      "scheduler-abuser",
      "flood",
      JSON.stringify({ count: 2_000, expression: "@every 1s" })
    ),
    aloneOnly: true
  },

  simple(
    "kv-key-hog",
    "100 KV entries per call with 200-byte keys and empty values under a 1 KB quota",
    "kv-key-hog",
    "hog",
    JSON.stringify({ count: 100, keyLength: 200 })
  ),
  {
    name: "private-network",
    description: "HTTP requests to 127.0.0.1 without the operator's grant",
    start: Effect.gen(function* () {
      const url = yield* slowServer(0)
      const plugin = yield* load("host-http", { timeoutMs: HOSTILE_TIMEOUT_MS })
      const request = JSON.stringify({ request: { method: "GET", url } })
      return yield* hammer(plugin, "call_http_send", request, { fibers: 1, pauseMs: 1 })
    })
  },
  {
    name: "websocket-flood",
    description: "a server sending 64 KiB frames as fast as TCP allows to a plugin that logs each",
    start: Effect.gen(function* () {
      const url = yield* floodServer
      const plugin = yield* load("host-websocket", {
        allowedNetworks: LOOPBACK,
        timeoutMs: HOSTILE_TIMEOUT_MS
      })
      const outcomes: Record<string, number> = {}
      for (const id of ["a", "b"]) {
        const tag = yield* plugin
          .call("call_websocket_connect", JSON.stringify({ url: url + id, connectionId: id }))
          .pipe(
            Effect.as("Connected"),
            Effect.catchAll((error) => Effect.succeed(error._tag))
          )
        outcomes[tag] = (outcomes[tag] ?? 0) + 1
      }
      return outcomes
    })
  }
]

/** `agent-full` answering a biography: the healthy neighbour. */
export const healthyCall = (plugin: LoadedPlugin): Effect.Effect<boolean, unknown> =>
  plugin
    .call("nd_get_artist_biography", '{"id":"1","name":"Healthy"}')
    .pipe(
      Effect.map(
        (bytes) => bytes !== null && new TextDecoder().decode(bytes).includes("Biography for Healthy")
      )
    )

/** The engine in a temporary data folder, removed when the scope closes. */
const engineLayer = (options: Engine.EngineOptions) =>
  Layer.unwrapScoped(
    Effect.map(
      Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "ndp-containment-"))),
        (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
      ),
      (dataFolder) => Engine.layer({ ...options, dataFolder })
    )
  )

/**
 * An engine with default options (its own temporary data folder), the healthy plugin loaded, and
 * every attack class bound to it; all of it lives in the current scope.
 */
export const attackEnvironment = (options: Engine.EngineOptions = {}) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(engineLayer(options))
    const loader = yield* Effect.provide(PluginLoader, context)
    const healthy = yield* loader.loadFile(fixture("agent-full"))
    const poolSize = options.runtime?.poolSize ?? 0
    // The engine's default pool is two workers per core.
    const bound = attacks(poolSize > 0 ? poolSize : 2 * availableParallelism()).map(
      (attack): Attack<Scope.Scope> => ({
        ...attack,
        start: Effect.provide(attack.start, context)
      })
    )
    return { attacks: bound, healthy }
  })

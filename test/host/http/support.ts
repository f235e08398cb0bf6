/** Test HTTP servers on 127.0.0.1, a fake resolver, and the host-http fixture repackaged with other hosts. */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { strFromU8, strToU8, unzipSync, zipSync } from "fflate"
import { lookup as dnsLookup } from "node:dns"
import { readFileSync } from "node:fs"
import * as http from "node:http"
import type { AddressInfo, LookupFunction } from "node:net"
import { isIP } from "node:net"
import type { LoadedPlugin } from "../../../src/loader/PluginLoader.js"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import { fixture } from "../../support/fixtures.js"

/** One request as the server received it. */
export interface Received {
  readonly method: string
  readonly path: string
  readonly rawHeaders: ReadonlyArray<string>
  readonly headers: http.IncomingHttpHeaders
  readonly body: Buffer
}

/** A running server and what it has received. */
export interface TestServer {
  readonly port: number
  readonly received: Array<Received>
  /** `http://<host>:<port><path>`. */
  readonly url: (path: string, host?: string) => string
}

/** Answers one request; the request body has been read already. */
export type Route = (request: http.IncomingMessage, response: http.ServerResponse, received: Received) => void

/** A server on 127.0.0.1 (random port) for the scope; every open connection is cut when it closes. */
export const testServer = (route: Route): Effect.Effect<TestServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ server: http.Server; received: Array<Received> }>((resume) => {
      const received: Array<Received> = []
      const server = http.createServer((request, response) => {
        const chunks: Array<Buffer> = []
        request.on("data", (chunk: Buffer) => chunks.push(chunk))
        request.on("end", () => {
          const entry: Received = {
            method: request.method ?? "",
            path: request.url ?? "",
            rawHeaders: request.rawHeaders,
            headers: request.headers,
            body: Buffer.concat(chunks)
          }
          received.push(entry)
          route(request, response, entry)
        })
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, received })))
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(
    Effect.map(({ received, server }) => {
      const port = (server.address() as AddressInfo).port
      return { port, received, url: (path, host = "127.0.0.1") => `http://${host}:${port}${path}` }
    })
  )

/**
 * A resolver that never asks real DNS (except for `localhost`, from the hosts file): the `.test`
 * names below resolve to loopback addresses (`lan.test` to a private one), everything else is not found.
 */
export const fakeLookup: LookupFunction = (hostname, options, callback) => {
  const names: Record<string, string> = {
    "music.test": "127.0.0.1",
    "other.test": "127.0.0.1",
    "v6.test": "::1",
    "lan.test": "192.168.77.7"
  }
  if (hostname === "localhost") return dnsLookup(hostname, options, callback)
  const address = names[hostname]
  if (address === undefined) {
    return callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" }), "")
  }
  const family = isIP(address)
  if (options.all === true) callback(null, [{ address, family }])
  else callback(null, address, family)
}

let nextId = 0

/** The grant the test servers need: they listen on loopback, which no plugin may reach by default. */
export const LOOPBACK: ReadonlyArray<string> = ["127.0.0.0/8", "::1/128"]

/**
 * Loads host-http with its manifest's `http.requiredHosts` replaced (`undefined`: as built), granted
 * `allowedNetworks` (default: loopback, where the test servers are; `[]` for none).
 */
export const loadHostHttp = (
  requiredHosts?: ReadonlyArray<string>,
  allowedNetworks: ReadonlyArray<string> = LOOPBACK
): Effect.Effect<LoadedPlugin, unknown, PluginLoader | Scope.Scope> =>
  Effect.gen(function* () {
    const loader = yield* PluginLoader
    if (requiredHosts === undefined) return yield* loader.loadFile(fixture("host-http"), { allowedNetworks })
    const files = unzipSync(readFileSync(fixture("host-http")))
    const manifest = JSON.parse(strFromU8(files["manifest.json"] ?? new Uint8Array())) as {
      permissions: { http: { requiredHosts: ReadonlyArray<string> } }
    }
    manifest.permissions.http.requiredHosts = requiredHosts
    const bytes = zipSync({
      "manifest.json": strToU8(JSON.stringify(manifest)),
      "plugin.wasm": files["plugin.wasm"] ?? new Uint8Array()
    })
    return yield* loader.loadBytes(`host-http-${nextId++}`, bytes, { allowedNetworks })
  })

/** What `http_send` answers. */
export interface SendReply {
  readonly result?: {
    readonly statusCode: number
    readonly headers?: Record<string, string>
    readonly body?: string
  }
  readonly error?: string
}

/** What the fixture's `extism_http_request` outputs. */
export interface EnvReply {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string
}

const text = (output: Uint8Array | null): string => new TextDecoder().decode(output ?? new Uint8Array())

/** Calls `http_send` through the plugin. */
export const send = (plugin: LoadedPlugin, request: Record<string, unknown>) =>
  plugin
    .call("call_http_send", JSON.stringify({ request }))
    .pipe(Effect.map((out) => JSON.parse(text(out)) as SendReply))

/** Calls Extism's `http_request` through the plugin. */
export const envRequest = (plugin: LoadedPlugin, request: Record<string, unknown>, body = "") =>
  plugin
    .call("extism_http_request", JSON.stringify({ request, body }))
    .pipe(Effect.map((out) => JSON.parse(text(out)) as EnvReply))

/** The error of a reply, failing the test when there is none. */
export const errorOf = (reply: SendReply): string => {
  if (reply.error === undefined) throw new Error(`expected an error, got ${JSON.stringify(reply)}`)
  return reply.error
}

/** The result of a reply, failing the test when it is an error. */
export const resultOf = (reply: SendReply) => {
  if (reply.result === undefined) throw new Error(`expected a result, got ${JSON.stringify(reply)}`)
  return reply.result
}

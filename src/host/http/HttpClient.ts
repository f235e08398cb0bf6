/**
 * The guarded HTTP client behind both `http_request` and `http_send`. It is written on node:http
 * and node:https so that every connection goes through our own `lookup`: the resolved addresses
 * are checked right before the socket connects to them, so a second DNS answer cannot slip a
 * private address past the check (the rules are `NetworkPolicy`'s). Redirects are followed by hand
 * and every hop is checked again (scheme, allow-list, address). Response heads are capped by the
 * parser; bodies are counted as they stream in and the socket is dropped as soon as the cap is
 * passed, so an oversize body is never held in memory.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as http from "node:http"
import * as https from "node:https"
import type { LookupFunction } from "node:net"
import * as Either from "effect/Either"
import {
  AddressRefused,
  checkHost,
  guardedLookup,
  type NetworkPolicy,
  normaliseHostname
} from "../network/NetworkPolicy.js"

import { HttpError } from "./HttpError.js"

export { HttpError, type HttpErrorReason } from "./HttpError.js"

/** Limits and DNS of one client. */
export interface ClientOptions {
  readonly maxResponseBytes: number
  /** The largest response head (status line and headers) accepted from a server. */
  readonly maxHeaderBytes: number
  readonly maxRedirects: number
  readonly lookup: LookupFunction
}

/** A request as the client sends it. */
export interface OutgoingRequest {
  readonly method: string
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: Uint8Array | undefined
  readonly timeoutMs: number
  readonly followRedirects: boolean
}

/** A complete response. */
export interface IncomingResponse {
  readonly statusCode: number
  /** Header names in Go's canonical form (`Content-Type`); repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string>>
  readonly body: Uint8Array
}

/** A plugin's HTTP client: its connections live in the scope it was made in. */
export interface HttpClient {
  readonly send: (
    request: OutgoingRequest,
    policy: NetworkPolicy
  ) => Effect.Effect<IncomingResponse, HttpError>
}

const REDIRECTS: ReadonlySet<number> = new Set([301, 302, 303, 307, 308])

/** Request headers the client owns: it frames the body itself. */
const FRAMING_HEADERS: ReadonlySet<string> = new Set(["content-length", "transfer-encoding"])

/** Headers that must not follow a redirect to another host. */
const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set([
  "authorization",
  "cookie",
  "proxy-authorization",
  "host"
])

/** Headers describing a body that a redirect dropped. */
const BODY_HEADERS: ReadonlySet<string> = new Set(["content-type", "content-encoding", "content-language"])

const isTokenChar = (c: number): boolean =>
  (c >= 0x30 && c <= 0x39) ||
  (c >= 0x41 && c <= 0x5a) ||
  (c >= 0x61 && c <= 0x7a) ||
  "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c))

/** Go's `CanonicalMIMEHeaderKey`, so plugins written for Navidrome find `Content-Type` where they expect it. */
export const canonicalHeaderName = (name: string): string => {
  for (let i = 0; i < name.length; i++) if (!isTokenChar(name.charCodeAt(i))) return name
  return name
    .toLowerCase()
    .replace(/(^|-)([a-z])/g, (_, dash: string, letter: string) => dash + letter.toUpperCase())
}

const responseHeaders = (raw: ReadonlyArray<string>): Record<string, string> => {
  const headers: Record<string, string> = {}
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = canonicalHeaderName(raw[i] ?? "")
    const value = raw[i + 1] ?? ""
    const previous = headers[name]
    headers[name] = previous === undefined ? value : `${previous}, ${value}`
  }
  return headers
}

const without = (
  headers: Readonly<Record<string, string>>,
  names: ReadonlySet<string>
): Record<string, string> =>
  Object.fromEntries(Object.entries(headers).filter(([name]) => !names.has(name.toLowerCase())))

/** A URL for messages and logs: without credentials, query or fragment, which may carry secrets. */
const describeUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    return parsed.protocol === "http:" || parsed.protocol === "https:"
      ? `${parsed.protocol}//${parsed.host}${parsed.pathname}`
      : `${parsed.protocol}…`
  } catch {
    return JSON.stringify(url.slice(0, 200))
  }
}

/** One exchange's outcome: a final response, or a redirect to follow. */
type Hop =
  | { readonly _tag: "Response"; readonly response: IncomingResponse }
  | { readonly _tag: "Redirect"; readonly statusCode: number; readonly location: string }

interface HopRequest {
  readonly method: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: Uint8Array | undefined
}

/**
 * The hop's headers with our own framing: Node frames a DELETE/GET/OPTIONS body with neither a
 * length nor chunking (the server would read the body as the next request), so the length is always set.
 */
const framed = (hop: HopRequest): Record<string, string> => {
  const headers = without(hop.headers, FRAMING_HEADERS)
  const length = hop.body?.byteLength ?? 0
  return length > 0 ? { ...headers, "Content-Length": String(length) } : headers
}

/** A checked hop target. */
interface Target {
  readonly url: URL
  readonly host: string
}

const forbidden = (message: string, cause?: unknown) =>
  new HttpError({ reason: "Forbidden", message, ...(cause === undefined ? {} : { cause }) })

/** Checks scheme, allow-list and (for IP literals) the address, before anything is sent. */
const checkTarget = (url: string, policy: NetworkPolicy): Effect.Effect<Target, HttpError> =>
  Effect.gen(function* () {
    const parsed = yield* Effect.try({
      try: () => new URL(url),
      catch: (cause) =>
        new HttpError({ reason: "BadRequest", message: `invalid URL ${JSON.stringify(url)}`, cause })
    })
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      return yield* forbidden(`only http and https URLs are allowed, not ${JSON.stringify(parsed.protocol)}`)
    }
    const host = checkHost(policy, parsed.hostname)
    if (Either.isLeft(host)) return yield* forbidden(host.left)
    return { url: parsed, host: host.right }
  })

const networkError = (target: Target, cause: unknown, options: ClientOptions): HttpError => {
  if (cause instanceof HttpError) return cause
  // The refusal's message never names the address; the address stays in the cause, for the log.
  if (cause instanceof AddressRefused) return forbidden(cause.message, cause)
  if ((cause as { code?: unknown } | null)?.code === "HPE_HEADER_OVERFLOW") {
    return new HttpError({
      reason: "TooLarge",
      message: `response headers from ${target.host} exceed ${options.maxHeaderBytes} bytes`,
      cause
    })
  }
  return new HttpError({
    reason: "Network",
    message: `request to ${target.host} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
    cause
  })
}

/** The next request after a redirect, as browsers and Go's client do it. */
const redirected = (previous: HopRequest, from: Target, to: URL, statusCode: number): HopRequest => {
  const method = previous.method.toUpperCase()
  const toGet =
    statusCode === 303 ? method !== "HEAD" : (statusCode === 301 || statusCode === 302) && method === "POST"
  const sameHost = normaliseHostname(to.hostname) === from.host
  let headers = sameHost ? { ...previous.headers } : without(previous.headers, CREDENTIAL_HEADERS)
  if (toGet) headers = without(headers, BODY_HEADERS)
  return toGet
    ? { method: "GET", headers, body: undefined }
    : { method: previous.method, headers, body: previous.body }
}

/** Makes a client whose keep-alive connections are closed when the scope closes. */
export const make = Effect.fn("HttpClient.make")(function* (
  options: ClientOptions
): Effect.fn.Return<HttpClient, never, Scope.Scope> {
  // One pair of agents per plugin: a kept-alive socket is reused only for the same host and port
  // under the same plugin (same allow-list), so skipping `lookup` on reuse skips no check.
  const agents = yield* Effect.acquireRelease(
    Effect.sync(() => ({
      http: new http.Agent({ keepAlive: true }),
      https: new https.Agent({ keepAlive: true })
    })),
    ({ http, https }) =>
      Effect.sync(() => {
        http.destroy()
        https.destroy()
      })
  )

  const exchange = (target: Target, hop: HopRequest, followRedirects: boolean, policy: NetworkPolicy) =>
    Effect.async<Hop, HttpError>((resume) => {
      let settled = false
      const settle = (effect: Effect.Effect<Hop, HttpError>): void => {
        if (settled) return
        settled = true
        resume(effect)
      }
      const secure = target.url.protocol === "https:"
      let request: http.ClientRequest
      try {
        request = (secure ? https : http).request(target.url, {
          method: hop.method,
          headers: framed(hop),
          agent: secure ? agents.https : agents.http,
          // Pinned here rather than left to the process-wide --max-http-header-size.
          maxHeaderSize: options.maxHeaderBytes,
          lookup: guardedLookup(policy, target.host, options.lookup)
        })
      } catch (cause) {
        // Node validates the method and header names and values as it builds the request.
        settle(
          Effect.fail(
            new HttpError({
              reason: "BadRequest",
              message: `invalid request: ${cause instanceof Error ? cause.message : String(cause)}`,
              cause
            })
          )
        )
        return
      }
      request.on("error", (cause) => settle(Effect.fail(networkError(target, cause, options))))
      request.on("response", (response) => {
        const statusCode = response.statusCode ?? 0
        const location = response.headers.location
        if (followRedirects && REDIRECTS.has(statusCode) && location !== undefined) {
          response.destroy()
          settle(Effect.succeed({ _tag: "Redirect", statusCode, location }))
          return
        }
        const tooLarge = () =>
          new HttpError({
            reason: "TooLarge",
            message: `response body exceeds ${options.maxResponseBytes} bytes`
          })
        // A HEAD response announces the length of a body it does not carry.
        const declared =
          hop.method.toUpperCase() === "HEAD" ? 0 : Number(response.headers["content-length"] ?? "")
        if (Number.isFinite(declared) && declared > options.maxResponseBytes) {
          request.destroy()
          settle(Effect.fail(tooLarge()))
          return
        }
        const chunks: Array<Buffer> = []
        let size = 0
        response.on("data", (chunk: Buffer) => {
          size += chunk.byteLength
          if (size > options.maxResponseBytes) {
            request.destroy()
            settle(Effect.fail(tooLarge()))
            return
          }
          chunks.push(chunk)
        })
        response.on("end", () =>
          settle(
            Effect.succeed({
              _tag: "Response",
              response: {
                statusCode,
                headers: responseHeaders(response.rawHeaders),
                body: new Uint8Array(Buffer.concat(chunks, size))
              }
            })
          )
        )
        response.on("error", (cause) => settle(Effect.fail(networkError(target, cause, options))))
        response.on("close", () => {
          if (!response.complete) {
            settle(
              Effect.fail(
                networkError(
                  target,
                  new Error("the connection closed before the response was complete"),
                  options
                )
              )
            )
          }
        })
      })
      request.end(hop.body === undefined || hop.body.byteLength === 0 ? undefined : Buffer.from(hop.body))
      return Effect.sync(() => {
        settled = true
        request.destroy()
      })
    })

  const send = Effect.fn("HttpClient.send")(
    function* (request: OutgoingRequest, policy: NetworkPolicy) {
      let url = request.url
      let hop: HopRequest = { method: request.method, headers: request.headers, body: request.body }
      for (let redirects = 0; ; redirects++) {
        // A refused hop after a redirect says so: the plugin asked for another URL.
        const refusedRedirect = (error: HttpError) =>
          redirects === 0 || error.reason !== "Forbidden"
            ? error
            : new HttpError({
                reason: error.reason,
                message: `redirect to ${describeUrl(url)} refused: ${error.message}`,
                cause: error.cause
              })
        const target = yield* checkTarget(url, policy).pipe(Effect.mapError(refusedRedirect))
        const result = yield* exchange(target, hop, request.followRedirects, policy).pipe(
          Effect.mapError(refusedRedirect),
          Effect.tapError((error) =>
            error.cause instanceof AddressRefused
              ? Effect.logWarning(
                  `http ${hop.method} ${target.host} refused: it resolved to ${error.cause.address} ` +
                    `(${error.cause.kind}); grant it with --allow-network if the plugin may reach it`
                )
              : Effect.logDebug(`http ${hop.method} ${target.host} failed: ${error.message}`)
          )
        )
        yield* Effect.logDebug(
          `http ${hop.method} ${target.host} → ${result._tag === "Response" ? result.response.statusCode : result.statusCode}`
        )
        if (result._tag === "Response") return result.response
        const next = yield* Effect.try({
          try: () => new URL(result.location, target.url),
          catch: (cause) =>
            new HttpError({
              reason: "Network",
              message: `${target.host} redirected to an invalid location ${JSON.stringify(result.location)}`,
              cause
            })
        })
        if (redirects >= options.maxRedirects) {
          return yield* new HttpError({
            reason: "Network",
            message: `stopped after ${options.maxRedirects} redirects (the last one to ${describeUrl(next.href)})`
          })
        }
        hop = redirected(hop, target, next, result.statusCode)
        url = next.href
      }
    },
    (effect, request) =>
      Effect.timeoutFail(effect, {
        duration: Duration.millis(request.timeoutMs),
        onTimeout: () =>
          new HttpError({
            reason: "Timeout",
            message: `request to ${describeUrl(request.url)} timed out after ${request.timeoutMs} ms`
          })
      })
  )

  return { send }
})

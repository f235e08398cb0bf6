/**
 * The HTTP host service (`http`): Extism's built-in `http_request` (module `extism:host/env`,
 * answered through the host function of that name) and Navidrome's `http_send`. Both go through
 * one guarded client per plugin (see `HttpClient`): only http/https, hosts matched against
 * `http.requiredHosts`, private addresses refused after DNS resolution unless a host is listed
 * exactly, redirects re-checked hop by hop, bodies capped, every request under a deadline.
 */
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { lookup as dnsLookup } from "node:dns"
import type { LookupFunction } from "node:net"
import { Bytes, encodeError, type HostFunctionHandler, toBase64 } from "../HostCodec.js"
import type { HostServiceProvider, PluginContext } from "../HostFunctions.js"
import * as HttpClient from "./HttpClient.js"
import { parseAllowList } from "./HostPolicy.js"

/** Settings of the HTTP host service. */
export interface HttpOptions {
  /** Default per-request deadline (connect, headers and body, redirects included). */
  readonly timeoutMs: number
  /** A response body beyond this many bytes fails the request with `response body exceeds N bytes`. */
  readonly maxResponseBytes: number
  /** How many redirects are followed at most. */
  readonly maxRedirects: number
  /** Resolves host names (default `dns.lookup`); the addresses it gives are checked before connecting. */
  readonly lookup?: LookupFunction | undefined
}

/** 10 s deadline, 16 MiB bodies, 10 redirects, system DNS. */
export const defaultHttpOptions: HttpOptions = {
  timeoutMs: 10_000,
  maxResponseBytes: 16 * 1024 * 1024,
  maxRedirects: 10
}

/** The longest deadline a plugin may ask for with `timeoutMs`. */
export const MAX_TIMEOUT_MS = 5 * 60 * 1000

const Headers = Schema.Record({ key: Schema.String, value: Schema.String })

/** `http_send`'s request; Go's zero values (`""`, `0`, `null`) mean "not given". */
const SendRequest = Schema.Struct({
  request: Schema.Struct({
    method: Schema.optionalWith(Schema.String, { nullable: true, default: () => "" }),
    url: Schema.String,
    headers: Schema.optionalWith(Headers, { nullable: true, default: () => ({}) }),
    body: Schema.optionalWith(Bytes, { nullable: true }),
    timeoutMs: Schema.optionalWith(Schema.Number, { nullable: true, default: () => 0 }),
    noFollowRedirects: Schema.optionalWith(Schema.Boolean, { nullable: true, default: () => false })
  })
})

/** What the worker's `extism:host/env` `http_request` stub sends: the guest's request JSON and its body. */
const EnvRequest = Schema.Struct({
  request: Schema.Struct({
    url: Schema.String,
    method: Schema.optionalWith(Schema.String, { nullable: true, default: () => "" }),
    headers: Schema.optionalWith(Headers, { nullable: true, default: () => ({}) })
  }),
  body: Schema.optionalWith(Bytes, { nullable: true })
})

const decoder = new TextDecoder("utf-8", { fatal: true })
const encoder = new TextEncoder()

const camel = (key: string): string => key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())

/**
 * Adds camelCase spellings of snake_case keys, as the shared codec does, except inside `headers`:
 * header names are data (`x_api_key` must reach the server alone and unchanged).
 */
const normaliseKeys = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(normaliseKeys)
  if (value === null || typeof value !== "object") return value
  const out: Record<string, unknown> = {}
  const entries = Object.entries(value)
  for (const [key, member] of entries) out[key] = key === "headers" ? member : normaliseKeys(member)
  for (const [key, member] of entries) {
    const alias = camel(key)
    if (alias !== key && !(alias in out)) out[alias] = alias === "headers" ? member : normaliseKeys(member)
  }
  return out
}

const formatIssue = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error)
    .map((issue) => (issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message))
    .join("; ")

const badRequest = (message: string, cause?: unknown) =>
  new HttpClient.HttpError({ reason: "BadRequest", message: `invalid request: ${message}`, cause })

const decode =
  <A, I>(schema: Schema.Schema<A, I>) =>
  (payload: Uint8Array): Effect.Effect<A, HttpClient.HttpError> =>
    Effect.gen(function* () {
      const json = yield* Effect.try({
        try: (): unknown => (payload.byteLength === 0 ? {} : JSON.parse(decoder.decode(payload))),
        catch: (cause) =>
          badRequest(`not UTF-8 JSON (${cause instanceof Error ? cause.message : String(cause)})`, cause)
      })
      return yield* Schema.decodeUnknown(schema)(normaliseKeys(json)).pipe(
        Effect.mapError((error) => badRequest(formatIssue(error)))
      )
    })

/**
 * A host function over the HTTP client: decode, run, encode; every failure in-band as `{"error"}`.
 * Not the shared `hostFunction`: its key normalisation would add aliases to header names, and its
 * omit-zero encoding would drop headers whose value is empty. Handlers omit zero fields themselves.
 */
const httpFunction =
  <A, I>(
    name: string,
    schema: Schema.Schema<A, I>,
    handler: (request: A) => Effect.Effect<unknown, HttpClient.HttpError>
  ): HostFunctionHandler =>
  (payload) =>
    decode(schema)(payload).pipe(
      Effect.flatMap(handler),
      Effect.map((response) => encoder.encode(JSON.stringify(response))),
      Effect.catchAll((error) => Effect.succeed(encodeError(error.message))),
      Effect.catchAllDefect((defect) =>
        Effect.logError(`host function ${name} failed unexpectedly`, defect).pipe(
          Effect.as(encodeError(`host function ${name} failed unexpectedly`))
        )
      )
    )

/** A response in wire form, zero fields omitted (Go's `omitempty`); the status is never zero. */
const wireResponse = (response: HttpClient.IncomingResponse, statusKey: "status" | "statusCode") => ({
  [statusKey]: response.statusCode,
  ...(Object.keys(response.headers).length === 0 ? {} : { headers: response.headers }),
  ...(response.body.byteLength === 0 ? {} : { body: toBase64(response.body) })
})

const deadline = (options: HttpOptions, requested: number): number =>
  requested > 0 ? Math.min(Math.ceil(requested), MAX_TIMEOUT_MS) : options.timeoutMs

/** The two HTTP functions of one plugin over its client. */
export const functions = (
  client: HttpClient.HttpClient,
  context: PluginContext,
  options: HttpOptions
): Record<string, HostFunctionHandler> => {
  const allowList = parseAllowList(context.manifest.permissions.http?.requiredHosts ?? [])
  const annotate = Effect.annotateLogs({ plugin: context.pluginId, service: "http" })
  return {
    http_send: httpFunction("http_send", SendRequest, ({ request }) =>
      client
        .send(
          {
            method: request.method.length > 0 ? request.method : "GET",
            url: request.url,
            headers: request.headers,
            body: request.body,
            timeoutMs: deadline(options, request.timeoutMs),
            followRedirects: !request.noFollowRedirects
          },
          { allowList, emptyAllowsPublic: true }
        )
        .pipe(
          Effect.map((response) => ({ result: wireResponse(response, "statusCode") })),
          annotate
        )
    ),
    http_request: httpFunction("http_request", EnvRequest, ({ body, request }) =>
      client
        .send(
          {
            method: request.method.length > 0 ? request.method : "GET",
            url: request.url,
            headers: request.headers,
            body,
            timeoutMs: options.timeoutMs,
            followRedirects: true
          },
          { allowList, emptyAllowsPublic: false }
        )
        .pipe(
          Effect.map((response) => wireResponse(response, "status")),
          annotate
        )
    )
  }
}

/** The HTTP service: one guarded client per plugin, its connections closed when the plugin unloads. */
export const provider = (options: HttpOptions): HostServiceProvider => ({
  grant: "http",
  functions: ["http_send", "http_request"],
  make: (context) =>
    HttpClient.make({
      maxResponseBytes: options.maxResponseBytes,
      maxRedirects: options.maxRedirects,
      lookup: options.lookup ?? dnsLookup
    }).pipe(Effect.map((client) => functions(client, context, options)))
})

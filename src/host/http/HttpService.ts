/**
 * The HTTP host service (`http`): Extism's built-in `http_request` (module `extism:host/env`,
 * answered through the host function of that name) and Navidrome's `http_send`. Both go through
 * one guarded client per plugin (see `HttpClient`): only http/https, hosts matched against
 * `http.requiredHosts`, private addresses refused after DNS resolution unless the operator granted
 * them (`NetworkPolicy`), redirects re-checked hop by hop, heads and bodies capped, every request
 * under a deadline.
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { lookup as dnsLookup } from "node:dns"
import type { LookupFunction } from "node:net"
import { Bytes, encodeResponseAsIs, type HostFunctionHandler, hostFunction, toBase64 } from "../HostCodec.js"
import { define, type HostServiceProvider, type PluginContext } from "../HostProvider.js"
import * as HttpClient from "./HttpClient.js"
import * as NetworkPolicy from "../network/NetworkPolicy.js"

/**
 * The functions of the HTTP service and the permission they need. `http_request` is Extism's own
 * (`extism:host/env`); the worker forwards it here, and the catalogue leaves it out.
 */
export const definition = define({ grant: "http", functions: ["http_send", "http_request"] })

/** Settings of the HTTP host service. */
export interface HttpOptions {
  /** Default per-request deadline (connect, headers and body, redirects included). */
  readonly timeoutMs: number
  /** A response body beyond this many bytes fails the request with `response body exceeds N bytes`. */
  readonly maxResponseBytes: number
  /** A response head (status line and headers) beyond this many bytes fails the request. */
  readonly maxHeaderBytes: number
  /** How many redirects are followed at most. */
  readonly maxRedirects: number
  /** Resolves host names (default `dns.lookup`); the addresses it gives are checked before connecting. */
  readonly lookup?: LookupFunction | undefined
}

/** 10 s deadline, 16 MiB bodies, 16 KiB heads, 10 redirects, system DNS. */
export const defaultHttpOptions: HttpOptions = {
  timeoutMs: 10_000,
  maxResponseBytes: 16 * 1024 * 1024,
  maxHeaderBytes: 16 * 1024,
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

// Responses carry header maps, so they are encoded as given (see `encodeResponseAsIs`); the
// handlers below omit their zero fields themselves.
const httpFunction = <A, I>(
  name: string,
  schema: Schema.Schema<A, I>,
  handler: (request: A) => Effect.Effect<unknown, HttpClient.HttpError>
): HostFunctionHandler => hostFunction(name, schema, handler, encodeResponseAsIs)

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
): Record<(typeof definition.functions)[number], HostFunctionHandler> => {
  const requiredHosts = context.manifest.permissions.http?.requiredHosts ?? []
  const grants = context.allowedNetworks
  // An empty list: Navidrome's http_send may reach any host, Extism's http_request none.
  const sendPolicy = NetworkPolicy.make({ permission: "http", requiredHosts, grants, emptyAllowsAny: true })
  const envPolicy = NetworkPolicy.make({ permission: "http", requiredHosts, grants, emptyAllowsAny: false })
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
          sendPolicy
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
          envPolicy
        )
        .pipe(
          Effect.map((response) => wireResponse(response, "status")),
          annotate
        )
    )
  }
}

/** The HTTP host service: one guarded client per plugin, its connections closed when the plugin unloads. */
export class HttpService extends Context.Tag("ndp-engine/host/HttpService")<
  HttpService,
  HostServiceProvider
>() {}

/** The HTTP service with these settings (missing ones take `defaultHttpOptions`). */
export const make = Effect.fn("HttpService.make")((
  options: Partial<HttpOptions> = {}
): Effect.Effect<HostServiceProvider> => {
  const settings: HttpOptions = { ...defaultHttpOptions, ...options }
  return Effect.succeed({
    ...definition,
    make: (context) =>
      HttpClient.make({
        maxResponseBytes: settings.maxResponseBytes,
        maxHeaderBytes: settings.maxHeaderBytes,
        maxRedirects: settings.maxRedirects,
        lookup: settings.lookup ?? dnsLookup
      }).pipe(Effect.map((client) => functions(client, context, settings)))
  })
})

/** The HTTP service as a layer. */
export const layer = (options: Partial<HttpOptions> = {}): Layer.Layer<HttpService> =>
  Layer.effect(HttpService, make(options))

/** The HTTP service with its settings read from `Config` (`lookup` stays the system's unless given). */
export const layerConfig = (
  config: Config.Config.Wrap<Partial<HttpOptions>>
): Layer.Layer<HttpService, ConfigError.ConfigError> =>
  Layer.effect(HttpService, Effect.flatMap(Config.unwrap(config), make))

/**
 * The admin module as something to serve: the `AdminApi` with its handlers and token check, the
 * web page (`/`, built static files), `/metrics` in the Prometheus text format and
 * `/api/openapi.json`, with a request-body limit and, only when asked for, CORS.
 *
 * - `layer(options)` adds all of it to `HttpApiBuilder`'s router: serve it with
 *   `HttpApiBuilder.serve()` and an `HttpServer` (this is what `ndp serve --http` does), or
 * - `app(options)` builds it into one `HttpApp` to mount in an embedding server's own router
 *   (`HttpRouter.mountApp("/admin", app)`); the page only uses relative URLs, so any prefix works.
 */
import type * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import type * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { readFileSync } from "node:fs"
import { createServer } from "node:http"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import type { PluginLoader } from "../loader/PluginLoader.js"
import type { PluginManager } from "../manager/PluginManager.js"
import type { Registry } from "../manager/Registry.js"
import * as PluginMetrics from "../metrics/PluginMetrics.js"
import { WasmRuntime } from "../runtime/WasmRuntime.js"
import { AdminApi } from "./AdminApi.js"
import * as AdminAuth from "./AdminAuth.js"
import { authorizationLayer, pluginsLayer, refreshPoolGauges } from "./AdminHandlers.js"
import type { PluginLogs } from "./PluginLogs.js"

export interface AdminHttpOptions {
  /** Where the hashed token lives (`admin-token.sha256`); normally the engine's data folder. */
  readonly dataFolder: string
  /** A token chosen by the operator (at least 16 characters) instead of the generated one. */
  readonly token?: Redacted.Redacted<string> | undefined
  /** Largest request body accepted, in bytes (default 1 MiB + 64 KiB: a full call input fits). */
  readonly maxBodyBytes?: number | undefined
  /** Origins allowed to call the API from a browser page of theirs; none (CORS off) by default. */
  readonly corsOrigins?: ReadonlyArray<string> | undefined
  /** The built page (default: `web/` beside this module, which `npm run build` fills). */
  readonly webRoot?: string | undefined
}

export const defaultMaxBodyBytes = 1024 * 1024 + 64 * 1024

/** What the admin module needs from the engine (all provided by `ndp serve`'s layer). */
export type AdminRequirements = PluginManager | Registry | PluginLoader | WasmRuntime | PluginLogs

/** The page's files: a fixed list, so no request path ever reaches the filesystem. */
const assets: ReadonlyArray<readonly [route: `/${string}`, file: string, type: string]> = [
  ["/", "index.html", "text/html; charset=utf-8"],
  ["/app.js", "app.js", "text/javascript; charset=utf-8"],
  ["/style.css", "style.css", "text/css; charset=utf-8"]
]

const pageHeaders = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache"
}

const defaultWebRoot = () => fileURLToPath(new URL("./web/", import.meta.url))

const pageRoutes = (webRoot: string) =>
  HttpApiBuilder.Router.use((router) =>
    Effect.forEach(
      assets,
      ([route, file, contentType]) => {
        // Read once at start; a missing file (page not built) is answered with what to do.
        let body: Uint8Array | undefined
        try {
          body = readFileSync(join(webRoot, file))
        } catch {
          body = undefined
        }
        return router.get(
          route,
          Effect.succeed(
            body === undefined
              ? HttpServerResponse.text(
                  `the admin page is not built (${file} missing in ${webRoot}); run npm run build`,
                  {
                    status: 503
                  }
                )
              : HttpServerResponse.uint8Array(body, { contentType, headers: pageHeaders })
          )
        )
      },
      { discard: true }
    )
  )

/** `/metrics`: the Prometheus text format, behind the same token (scrapers send it as a bearer token). */
const metricsRoute = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const auth = yield* AdminAuth.AdminAuth
    const runtime = yield* WasmRuntime
    yield* router.get(
      "/metrics",
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        const token = yield* HttpApiBuilder.securityDecode(HttpApiSecurity.bearer)
        const from = `${Option.getOrElse(request.remoteAddress, () => "an unknown address")} (GET /metrics)`
        if (!(yield* auth.verify(token, from))) {
          return HttpServerResponse.text(
            "a valid admin token is required: send it as Authorization: Bearer <token>\n",
            {
              status: 401,
              headers: { "www-authenticate": "Bearer" }
            }
          )
        }
        yield* refreshPoolGauges(runtime)
        return HttpServerResponse.text(PluginMetrics.prometheusText(yield* PluginMetrics.samples()), {
          contentType: "text/plain; version=0.0.4; charset=utf-8"
        })
      })
    )
  })
)

/**
 * Refuses a declared body over the limit with 413 before reading it; a body without a length
 * (chunked) is cut off at the limit while it is read.
 */
const bodyLimit =
  (maxBody: number) =>
  (app: HttpApp.Default): HttpApp.Default =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const declared = Number(request.headers["content-length"] ?? "0")
      if (Number.isFinite(declared) && declared > maxBody) {
        return Effect.succeed(
          HttpServerResponse.text(`the request body exceeds the limit of ${maxBody} bytes\n`, {
            status: 413,
            headers: { connection: "close" }
          })
        )
      }
      return HttpIncomingMessage.withMaxBodySize(app, Option.some(maxBody))
    })

/**
 * The admin API, page and metrics on `HttpApiBuilder`'s router, with the token service. Needs the
 * engine's services; fails only if the token file cannot be read or written.
 */
export const layer = (
  options: AdminHttpOptions
): Layer.Layer<HttpApi.Api | AdminAuth.AdminAuth, AdminAuth.AdminAuthError, AdminRequirements> => {
  const maxBody = options.maxBodyBytes ?? defaultMaxBodyBytes
  const api = HttpApiBuilder.api(AdminApi).pipe(
    Layer.provide(pluginsLayer),
    Layer.provide(authorizationLayer)
  )
  return Layer.mergeAll(
    api,
    HttpApiBuilder.middlewareOpenApi({ path: "/api/openapi.json" }),
    pageRoutes(options.webRoot ?? defaultWebRoot()),
    metricsRoute,
    HttpApiBuilder.middleware(bodyLimit(maxBody)),
    options.corsOrigins === undefined || options.corsOrigins.length === 0
      ? Layer.empty
      : HttpApiBuilder.middlewareCors({ allowedOrigins: options.corsOrigins })
  ).pipe(Layer.provide(api), Layer.provideMerge(AdminAuth.layer(options)))
}

/**
 * The whole admin module as one `HttpApp`, for an embedding server to mount in its own router.
 * Lives as long as the scope it is built in.
 */
export const app = (
  options: AdminHttpOptions
): Effect.Effect<
  HttpApp.Default<never, HttpRouter.HttpRouter.DefaultServices>,
  AdminAuth.AdminAuthError,
  AdminRequirements | Scope.Scope
> =>
  Effect.flatMap(
    Layer.build(Layer.mergeAll(layer(options), HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer)),
    (context) => Effect.provide(HttpApiBuilder.httpApp, context)
  )

/** Where `ndp serve --http` listens. */
export interface Listen {
  readonly host: string
  readonly port: number
}

/** The admin module served by its own Node HTTP server (what `ndp serve --http` runs). */
export const serve = (options: AdminHttpOptions & Listen) =>
  HttpApiBuilder.serve().pipe(
    Layer.provideMerge(layer(options)),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { host: options.host, port: options.port }))
  )

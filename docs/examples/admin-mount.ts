/**
 * The admin module mounted in an embedding server's own router, under `/admin/`, beside the
 * server's own routes. Run it with `NDP_ADMIN_TOKEN=… npx tsx docs/examples/admin-mount.ts
 * <plugins folder> <data folder>` (after `npm run build`, which builds the page), then open
 * http://127.0.0.1:4533/admin/ and enter the token.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { createServer } from "node:http"
import { AdminHttp, Engine, PluginLogs, PluginManager, Registry } from "../../src/index.js"

export interface Settings {
  readonly port: number
  readonly folder: string
  readonly dataFolder: string
  readonly token: string
}

/** The server: the engine and manager, its own `/health`, and the admin module under `/admin`. */
export const ServerLive = (settings: Settings) => {
  // The engine, the registry and the manager the admin module works through.
  const plugins = PluginManager.layer(PluginManager.defaultManagerOptions(settings.folder)).pipe(
    Layer.provideMerge(Registry.layer),
    Layer.provideMerge(Engine.layer({ dataFolder: settings.dataFolder })),
    // Keeps each plugin's recent logs for the admin module (the logger must see the plugins' fibers).
    Layer.provide(PluginLogs.loggerLayer),
    Layer.provideMerge(PluginLogs.layer())
  )
  const routes = Effect.gen(function* () {
    const admin = yield* AdminHttp.app({
      dataFolder: settings.dataFolder,
      token: Redacted.make(settings.token)
    })
    return HttpRouter.empty.pipe(
      HttpRouter.get("/health", HttpServerResponse.text("ok")),
      HttpRouter.mountApp("/admin", admin)
    )
  })
  return Layer.unwrapScoped(Effect.map(routes, (router) => HttpServer.serve(router))).pipe(
    Layer.provide(plugins),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { host: "127.0.0.1", port: settings.port }))
  )
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [folder = "plugins", dataFolder = "ndp-data"] = process.argv.slice(2)
  const token = process.env.NDP_ADMIN_TOKEN ?? ""
  Layer.launch(ServerLive({ port: 4533, folder, dataFolder, token })).pipe(NodeRuntime.runMain)
}

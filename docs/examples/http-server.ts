/**
 * A small @effect/platform HTTP server that embeds the engine: it loads a metadata plugin at
 * start-up and serves `GET /artist/:name/biography` from it. Run it with
 * `npx tsx docs/examples/http-server.ts` (after `npm run build:fixtures`), then
 * `curl localhost:3000/artist/Björk/biography`.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { createServer } from "node:http"
import { Engine, MetadataAgent, PluginLoader } from "../../src/index.js"

/** The server's own service: the metadata agent it consults. */
class Biographies extends Context.Tag("example/Biographies")<Biographies, MetadataAgent.MetadataAgent>() {}

/** Loads the plugin once; it stays loaded for as long as the server runs (the layer's scope). */
const BiographiesLive = (pluginPath: string) =>
  Layer.scoped(
    Biographies,
    Effect.gen(function* () {
      const loader = yield* PluginLoader.PluginLoader
      const plugin = yield* loader.loadFile(pluginPath)
      return MetadataAgent.fromPlugin(plugin)
    })
  )

const routes = HttpRouter.empty.pipe(
  HttpRouter.get(
    "/artist/:name/biography",
    Effect.gen(function* () {
      const { name } = yield* HttpRouter.schemaPathParams(Schema.Struct({ name: Schema.String }))
      const agent = yield* Biographies
      const biography = yield* agent.getArtistBiography({ id: name, name })
      return Option.match(biography, {
        onNone: () => HttpServerResponse.text("no biography", { status: 404 }),
        onSome: (text) => HttpServerResponse.unsafeJson({ name, biography: text })
      })
    }).pipe(
      // A plugin failure is the plugin's problem: answer 502 and say which plugin failed.
      Effect.catchTags({
        ParseError: () => HttpServerResponse.text("bad artist name", { status: 400 }),
        PluginTimeoutError: (e) => HttpServerResponse.text(e.message, { status: 504 })
      }),
      Effect.catchAll((e) => HttpServerResponse.text(e.message, { status: 502 }))
    )
  )
)

/** The whole server as one layer: routes, the plugin, the engine, and a Node HTTP listener. */
export const ServerLive = (options: {
  readonly port: number
  readonly pluginPath: string
  readonly dataFolder?: string
}) =>
  routes.pipe(
    HttpServer.serve(),
    HttpServer.withLogAddress,
    Layer.provide(BiographiesLive(options.pluginPath)),
    Layer.provide(Engine.layer({ dataFolder: options.dataFolder })),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: options.port, host: "127.0.0.1" }))
  )

if (process.argv[1]?.endsWith("http-server.ts")) {
  Layer.launch(ServerLive({ port: 3000, pluginPath: "build/fixtures/agent-full.ndp" })).pipe(
    NodeRuntime.runMain
  )
}

/** The embedding example from docs/embedding.md, served for real on 127.0.0.1. */
import * as HttpServer from "@effect/platform/HttpServer"
import { expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { ServerLive } from "../../docs/examples/http-server.js"
import { tempDataFolder } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"

it.live("the documented HTTP server answers from a real plugin", () =>
  Effect.gen(function* () {
    const server = yield* HttpServer.HttpServer
    const address = server.address
    if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
    const base = `http://127.0.0.1:${address.port}`
    const ok = yield* Effect.promise(() => fetch(`${base}/artist/${encodeURIComponent("Björk")}/biography`))
    expect(ok.status).toBe(200)
    expect(yield* Effect.promise(() => ok.json())).toEqual({
      name: "Björk",
      biography: "Biography for Björk"
    })
    const miss = yield* Effect.promise(() => fetch(`${base}/artist/Nobody/biography`))
    expect(miss.status).toBe(404)
  }).pipe(
    Effect.provide(
      Layer.unwrapScoped(
        Effect.map(tempDataFolder, (dataFolder) =>
          Layer.fresh(ServerLive({ port: 0, pluginPath: fixture("agent-full"), dataFolder }))
        )
      )
    ),
    Effect.scoped
  )
)

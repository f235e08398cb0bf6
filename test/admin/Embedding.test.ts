/** The mounting example of docs/admin.md, served for real on 127.0.0.1. */
import * as HttpServer from "@effect/platform/HttpServer"
import { expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { ServerLive } from "../../docs/examples/admin-mount.js"
import { makeFolders } from "../support/manager.js"
import { realSleep } from "../support/wait.js"

const token = "embedding-token-0123456789"

it.scopedLive("the admin module mounted under /admin/ in the embedding server's own router", () =>
  Effect.gen(function* () {
    const folders = yield* makeFolders(["configurable"])
    const context = yield* Layer.build(
      Layer.fresh(ServerLive({ port: 0, folder: folders.folder, dataFolder: folders.dataFolder, token }))
    )
    const server = yield* Effect.provide(HttpServer.HttpServer, context)
    if (server.address._tag !== "TcpAddress") throw new Error("expected a TCP address")
    const base = `http://127.0.0.1:${server.address.port}`
    const get = (path: string, init: RequestInit = {}) =>
      Effect.promise(() =>
        fetch(`${base}${path}`, {
          ...init,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }
        }).then(async (r) => ({ status: r.status, text: await r.text() }))
      )
    expect((yield* get("/health")).text).toBe("ok")
    const page = yield* get("/admin/")
    expect(page.status).toBe(200)
    expect(page.text).toContain('<script type="module" src="app.js">')
    const listed = yield* get("/admin/api/plugins")
    expect(listed.status).toBe(200)
    expect(JSON.parse(listed.text)).toMatchObject([{ id: "configurable", state: "disabled" }])
    const enabled = yield* get("/admin/api/plugins/configurable/enable", { method: "POST", body: "{}" })
    expect(JSON.parse(enabled.text)).toMatchObject({ state: "loaded" })
    // The plugin's own log line reaches the ring buffer through the logger the example installs.
    yield* get("/admin/api/plugins/configurable/call", { method: "POST", body: '{"export":"ping"}' })
    const deadline = Date.now() + 60_000
    for (;;) {
      const logs = JSON.parse((yield* get("/admin/api/plugins/configurable/logs")).text)
      if (logs.some((e: { message: string }) => e.message === "pinged")) break
      if (Date.now() > deadline)
        throw new Error(`no guest log reached the admin module: ${JSON.stringify(logs)}`)
      yield* realSleep(50)
    }
    expect((yield* get("/admin/metrics")).text).toContain(
      'ndp_plugin_calls_total{export="ping",plugin="configurable"} '
    )
  })
)

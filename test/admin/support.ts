/** The admin module served on 127.0.0.1 (a free port) over a real manager and real plugins. */
import * as HttpServer from "@effect/platform/HttpServer"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Redacted from "effect/Redacted"
import * as AdminHttp from "../../src/admin/AdminHttp.js"
import * as PluginLogs from "../../src/admin/PluginLogs.js"
import type * as PluginManager from "../../src/manager/PluginManager.js"
import { managerLayer, type TestFolders } from "../support/manager.js"

export const TOKEN = "test-admin-token-0123456789"

export interface Admin {
  readonly url: string
  /** fetch against the server with the admin token (unless `token` says otherwise). */
  readonly request: (
    path: string,
    init?: { method?: string; body?: unknown; token?: string | null; rawBody?: string }
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON read field by field in assertions
  ) => Promise<{ status: number; body: any; text: string }>
}

/** Starts the server in the current scope; logs of plugins go to its ring buffers. */
export const startAdmin = (folders: TestFolders, options: Partial<PluginManager.ManagerOptions> = {}) =>
  Effect.gen(function* () {
    const logs = yield* PluginLogs.make()
    const context = yield* Layer.build(
      AdminHttp.serve({
        host: "127.0.0.1",
        port: 0,
        dataFolder: folders.dataFolder,
        token: Redacted.make(TOKEN)
      }).pipe(
        Layer.provideMerge(Layer.succeed(PluginLogs.PluginLogs, logs)),
        Layer.provideMerge(managerLayer(folders, { pollMs: 100, ...options })),
        Layer.orDie
      )
    ).pipe(Effect.provide(Logger.add(logs.logger)))
    const server = yield* Effect.provide(HttpServer.HttpServer, context)
    const address = server.address as HttpServer.TcpAddress
    const url = `http://127.0.0.1:${address.port}`
    const request: Admin["request"] = async (path, init = {}) => {
      const token = init.token === undefined ? TOKEN : init.token
      const response = await fetch(`${url}${path}`, {
        method: init.method ?? (init.body === undefined && init.rawBody === undefined ? "GET" : "POST"),
        headers: {
          ...(token === null ? {} : { authorization: `Bearer ${token}` }),
          ...(init.body === undefined && init.rawBody === undefined
            ? {}
            : { "content-type": "application/json" })
        },
        ...(init.rawBody !== undefined
          ? { body: init.rawBody }
          : init.body === undefined
            ? {}
            : { body: JSON.stringify(init.body) })
      })
      const text = await response.text()
      let body: unknown = undefined
      try {
        body = JSON.parse(text)
      } catch {
        body = undefined
      }
      return { status: response.status, body, text }
    }
    return { url, request, context, logs } satisfies Admin & Record<string, unknown>
  })

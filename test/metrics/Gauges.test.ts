/**
 * The per-plugin gauges the admin API and `/metrics` show follow what the plugin really holds:
 * KV bytes after each write, live schedules as they are made, fire and are cancelled, open sockets
 * as they connect and close. Driven from inside Wasm through the host fixtures.
 */
import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import * as PluginMetrics from "../../src/metrics/PluginMetrics.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { eventually, timedLogs, websocketPlugin, wsServer } from "../host/websocket/support.js"

const decoder = new TextDecoder()

const gauge = (name: string, pluginId: string) =>
  Effect.map(
    PluginMetrics.samples(pluginId),
    (all) => all.find((s) => s.name === name && s.tags["plugin"] === pluginId)?.value
  )

/** Loads `id` and returns a caller of its passthrough exports (`call_<fn>`). */
const passthrough = (id: string) =>
  Effect.gen(function* () {
    const loader = yield* PluginLoader
    const plugin = yield* loader.loadFile(fixture(id))
    return (fn: string, request: unknown) =>
      Effect.map(
        plugin.call(`call_${fn}`, JSON.stringify(request)),
        (b) => JSON.parse(decoder.decode(b!)) as Record<string, unknown>
      )
  })

layer(testEngine({ runtime: { poolSize: 2 } }))("per-plugin gauges", (it) => {
  it.scoped("ndp_plugin_kvstore_bytes is the store's usage after every write", () =>
    Effect.gen(function* () {
      const call = yield* passthrough("host-kvstore")
      expect(yield* gauge("ndp_plugin_kvstore_bytes", "host-kvstore")).toBe(0)
      yield* call("kvstore_set", { key: "a", value: Buffer.from("12345").toString("base64") })
      yield* call("kvstore_set", { key: "bb", value: Buffer.from("xyz").toString("base64") })
      const used = (yield* call("kvstore_getstorageused", {})).bytes as number
      expect(used).toBeGreaterThan(0)
      expect(yield* gauge("ndp_plugin_kvstore_bytes", "host-kvstore")).toBe(used)
      yield* call("kvstore_delete", { key: "a" })
      yield* call("kvstore_delete", { key: "bb" })
      expect(yield* gauge("ndp_plugin_kvstore_bytes", "host-kvstore")).toBe(0)
    })
  )

  it.scoped("ndp_plugin_schedules counts live schedules, down again on cancel", () =>
    Effect.gen(function* () {
      const call = yield* passthrough("host-scheduler")
      yield* call("scheduler_schedulerecurring", { cronExpression: "@every 1h", scheduleId: "a" })
      yield* call("scheduler_schedulerecurring", { cronExpression: "@every 1h", scheduleId: "b" })
      yield* call("scheduler_scheduleonetime", { delaySeconds: 3600, scheduleId: "c" })
      const live = () => Effect.runSync(gauge("ndp_plugin_schedules", "host-scheduler"))
      yield* eventually("three live schedules", () => live() === 3, 30_000)
      yield* call("scheduler_cancelschedule", { scheduleId: "b" })
      yield* eventually("two after a cancel", () => live() === 2, 30_000)
    })
  )

  it.scoped("ndp_plugin_open_sockets follows connects and closes", () =>
    Effect.gen(function* () {
      const server = yield* wsServer()
      const { call } = yield* websocketPlugin(timedLogs())
      const open = () => Effect.runSync(gauge("ndp_plugin_open_sockets", "host-websocket"))
      yield* call("websocket_connect", { url: server.url, connectionId: "one" })
      yield* call("websocket_connect", { url: server.url, connectionId: "two" })
      yield* eventually("two open sockets", () => open() === 2, 30_000)
      yield* call("websocket_closeconnection", { connectionId: "one", code: 1000, reason: "done" })
      yield* eventually("one after a close", () => open() === 1, 30_000)
    })
  )
})

/** The per-plugin log ring: bounded in entries, bytes, message length and plugins tracked. */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as PluginLogs from "../../src/admin/PluginLogs.js"
import { makeFolders } from "../support/manager.js"
import { realSleep } from "../support/wait.js"
import { startAdmin } from "./support.js"

const logAs = (logs: PluginLogs.PluginLogs["Type"], plugin: string, message: string) =>
  Effect.logWarning(message).pipe(
    Effect.annotateLogs("plugin", plugin),
    Effect.provide(Logger.add(logs.logger))
  )

describe("PluginLogs", () => {
  it.effect("keeps the newest entries within the entry, byte, length and plugin bounds", () =>
    Effect.gen(function* () {
      const logs = yield* PluginLogs.make({ maxEntries: 5, maxBytes: 40, maxMessageChars: 12, maxPlugins: 2 })
      for (let i = 0; i < 8; i++) yield* logAs(logs, "a", `line ${i}`)
      expect((yield* logs.recent("a")).map((e) => e.message)).toEqual([
        "line 3",
        "line 4",
        "line 5",
        "line 6",
        "line 7"
      ])
      // 12 characters kept + the ellipsis; three such entries pass the 40-byte budget.
      for (let i = 0; i < 3; i++) yield* logAs(logs, "a", `a long message number ${i}`)
      const cut = yield* logs.recent("a")
      expect(cut.every((e) => e.message.length <= 13)).toBe(true)
      expect(cut.reduce((n, e) => n + e.message.length, 0)).toBeLessThanOrEqual(40)
      expect(cut.at(-1)?.message).toBe("a long messa…")
      expect(cut.at(-1)?.level).toBe("warning")
      // A line without a plugin annotation is not kept anywhere.
      yield* Effect.logWarning("engine line").pipe(Effect.provide(Logger.add(logs.logger)))
      // A third plugin drops the least recently written one.
      yield* logAs(logs, "b", "from b")
      yield* logAs(logs, "a", "a again")
      yield* logAs(logs, "c", "from c")
      expect(yield* logs.recent("b")).toEqual([])
      expect((yield* logs.recent("a")).at(-1)?.message).toBe("a again")
      expect((yield* logs.recent("c", { level: "error" })).length).toBe(0)
      expect((yield* logs.recent("c", { level: "warning", limit: 1 })).map((e) => e.message)).toEqual([
        "from c"
      ])
    })
  )

  it.scopedLive(
    "a plugin flooding its log stays within its ring while a healthy plugin answers and keeps its lines",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders(["log-flood", "configurable"])
        const admin = yield* startAdmin(folders)
        const call = (path: string, body?: unknown) =>
          Effect.promise(() => admin.request(path, body === undefined ? {} : { body }))
        expect((yield* call("/api/plugins/log-flood/enable", {})).status).toBe(200)
        expect((yield* call("/api/plugins/configurable/enable", {})).status).toBe(200)
        const flood = yield* Effect.fork(
          call("/api/plugins/log-flood/call", { export: "nd_get_artist_biography" })
        )
        for (let i = 0; i < 3; i++) {
          expect((yield* call("/api/plugins/configurable/call", { export: "ping" })).status).toBe(200)
        }
        expect((yield* Fiber.join(flood)).status).toBe(200)
        const flooded = (yield* call("/api/plugins/log-flood/logs?level=trace&limit=1000")).body as Array<{
          message: string
        }>
        expect(flooded.length).toBeGreaterThan(0)
        expect(flooded.length).toBeLessThanOrEqual(PluginLogs.defaultPluginLogsOptions.maxEntries)
        expect(flooded.reduce((n, e) => n + e.message.length, 0)).toBeLessThanOrEqual(
          PluginLogs.defaultPluginLogsOptions.maxBytes
        )
        // Guest lines reach the ring asynchronously: poll for them.
        const deadline = Date.now() + 60_000
        for (;;) {
          const healthy = (yield* call("/api/plugins/configurable/logs")).body as Array<{ message: string }>
          const pinged = healthy.filter((e) => e.message === "pinged").length
          if (pinged === 3) break
          expect(pinged).toBeLessThan(3)
          if (Date.now() > deadline)
            throw new Error(`the healthy plugin's lines did not all arrive: ${pinged} of 3`)
          yield* realSleep(50)
        }
      })
  )
})

import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as Engine from "../../../src/Engine.js"
import { storePath } from "../../../src/host/kvstore/KvStoreService.js"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import { tempDataFolder } from "../../support/engine.js"
import { durabilityValue, kv, kvPackage, rawUsedBytes, withRawDb } from "./support.js"

const root = fileURLToPath(new URL("../../../", import.meta.url))
const writer = fileURLToPath(new URL("./durability-writer.ts", import.meta.url))

/** Runs the writer on `dataFolder`, SIGKILLs it once `killAfter` writes are acknowledged, and
 *  returns every acknowledged index. */
const writeUntilKilled = (dataFolder: string, killAfter: number) =>
  Effect.async<ReadonlyArray<number>, Error>((resume) => {
    const child = spawn(process.execPath, ["--import", "tsx", writer, dataFolder], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"]
    })
    const acked: Array<number> = []
    let pending = ""
    let stderr = ""
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (chunk: string) => {
      pending += chunk
      const lines = pending.split("\n")
      pending = lines.pop() ?? ""
      for (const line of lines) {
        if (line.startsWith("ack ")) acked.push(Number(line.slice(4)))
      }
      if (acked.length >= killAfter && child.exitCode === null) child.kill("SIGKILL")
    })
    child.stderr.setEncoding("utf8")
    child.stderr.on("data", (chunk: string) => (stderr += chunk))
    child.on("close", (_code, signal) =>
      resume(
        signal === "SIGKILL"
          ? Effect.succeed(acked)
          : Effect.fail(new Error(`writer ended without being killed (${String(_code)}): ${stderr}`))
      )
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

describe("KvStore durability", () => {
  it.live(
    "every acknowledged write survives a SIGKILL, and the usage equals the real sum afterwards",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dataFolder = yield* tempDataFolder
          const acked = yield* writeUntilKilled(dataFolder, 1500)
          expect(acked.length).toBeGreaterThanOrEqual(1500)
          expect(acked).toEqual(acked.map((_, i) => i))
          const file = storePath({ dataFolder, pluginId: "durable" })

          const check = yield* Effect.scoped(
            Effect.gen(function* () {
              const plugin = yield* (yield* PluginLoader).loadBytes("durable", kvPackage("10MB"))
              const keys = acked.map((n) => `k${n}`)
              const found = (yield* kv(plugin, "getmany", { keys }))["values"] as Record<string, string>
              const listed =
                ((yield* kv(plugin, "list", { prefix: "k" }))["keys"] as ReadonlyArray<string>) ?? []
              const used = (yield* kv(plugin, "getstorageused"))["bytes"]
              return { found, listed, used }
            })
          ).pipe(Effect.provide(Engine.layer({ dataFolder, runtime: { poolSize: 1 } })))

          for (const n of acked) expect(check.found[`k${n}`], `k${n}`).toBe(durabilityValue(n))
          // At most the one write in flight at the kill may have committed without its ack.
          expect(check.listed.length - acked.length).toBeGreaterThanOrEqual(0)
          expect(check.listed.length - acked.length).toBeLessThanOrEqual(1)
          const real = yield* rawUsedBytes(file)
          expect(check.used).toBe(real)
          const expected = check.listed.reduce(
            (sum, key) =>
              sum + key.length + Buffer.from(durabilityValue(Number(key.slice(1))), "base64").byteLength,
            0
          )
          expect(real).toBe(expected)
          const integrity = yield* withRawDb(
            file,
            (sql) => sql<{ integrity_check: string }>`PRAGMA integrity_check`
          )
          expect(integrity).toEqual([{ integrity_check: "ok" }])
        })
      ),
    // 1,500 fsynced writes plus a second engine: generous, for a busy machine.
    90_000
  )
})

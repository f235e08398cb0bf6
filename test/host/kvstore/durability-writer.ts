/**
 * Child process of the durability test: loads the KV fixture (10 MB limit) from the engine on the
 * data folder given as argument, then writes keys `k<n>` one after another, printing `ack <n>`
 * once each write is acknowledged, until killed.
 */
import * as Effect from "effect/Effect"
import * as Engine from "../../../src/Engine.js"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import { durabilityValue, kv, kvPackage } from "./support.js"

const dataFolder = process.argv[2]
if (dataFolder === undefined) throw new Error("usage: durability-writer.ts <dataFolder>")

const program = Effect.gen(function* () {
  const plugin = yield* (yield* PluginLoader).loadBytes("durable", kvPackage("10MB"))
  process.stdout.write("ready\n")
  for (let n = 0; n < 1_000_000; n++) {
    const response = yield* kv(plugin, "set", { key: `k${n}`, value: durabilityValue(n) })
    if (response["error"] !== undefined)
      return yield* Effect.dieMessage(`k${n}: ${String(response["error"])}`)
    process.stdout.write(`ack ${n}\n`)
  }
})

Effect.runPromise(
  program.pipe(Effect.scoped, Effect.provide(Engine.layer({ dataFolder, runtime: { poolSize: 1 } })))
).catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`)
  process.exit(1)
})

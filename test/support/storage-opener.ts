/**
 * A separate process opening the engine's storage: `storage-opener.ts <dataFolder> <name> <count>`.
 * It waits until `count` openers are ready (files `opener-*` in the data folder), so the openings
 * really overlap, then opens and migrates `<dataFolder>/ndp.db` and prints `{"users":n}`.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { readdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Storage } from "../../src/storage/Storage.js"
import { storageLayer } from "./storage.js"

const [dataFolder = "", name = "", countText = "2"] = process.argv.slice(2)
const count = Number(countText)

const barrier = Effect.gen(function* () {
  writeFileSync(join(dataFolder, `opener-${name}`), "")
  const deadline = Date.now() + 120_000
  while (readdirSync(dataFolder).filter((file) => file.startsWith("opener-")).length < count) {
    if (Date.now() > deadline) return yield* Effect.dieMessage("the other openers never started")
    yield* Effect.sleep("2 millis")
  }
})

const program = Effect.gen(function* () {
  yield* barrier
  const users = yield* Effect.scoped(
    Effect.flatMap(Layer.build(storageLayer(dataFolder)), (context) =>
      Effect.flatMap(
        Effect.provide(Storage, context),
        ({ sql }) => sql<{ n: number }>`SELECT COUNT(*) AS n FROM users`
      )
    )
  )
  process.stdout.write(JSON.stringify({ users: users[0]?.n }))
})

Effect.runPromise(program).catch((error: unknown) => {
  process.stderr.write(String(error))
  process.exitCode = 1
})

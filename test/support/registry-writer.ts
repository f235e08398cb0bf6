/**
 * A separate process writing one field of a registry row many times, as `ndp plugins` does while
 * `ndp serve` writes others: `registry-writer.ts <dataFolder> <id> config|users <count>`. Before each
 * write and at the end it reads the row and counts the times its own latest value was not there
 * (another process wrote it back with a stale value: lost).
 * Prints `{"writes":n,"lost":n}`.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { readdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as Layer from "effect/Layer"
import * as Registry from "../../src/manager/Registry.js"
import { storageLayer } from "./storage.js"

const [dataFolder = "", id = "", field = "", countText = "0", writersText = "2"] = process.argv.slice(2)
const count = Number(countText)
const writers = Number(writersText)

// Start together: each writer announces itself once its registry is open and waits for the others,
// so the writes really interleave however long each process took to start.
const barrier = Effect.gen(function* () {
  writeFileSync(join(dataFolder, `ready-${field}`), "")
  const deadline = Date.now() + 60_000
  while (readdirSync(dataFolder).filter((name) => name.startsWith("ready-")).length < writers) {
    if (Date.now() > deadline) return yield* Effect.dieMessage("the other writers never started")
    yield* Effect.sleep("5 millis")
  }
})

const valueOf = (i: number) => (field === "config" ? i : `u${i}`)

/** This process's field as the row holds it now. */
const ownField = (registry: Registry.Registry["Type"]) =>
  Effect.map(registry.get(id), (row) =>
    Option.getOrUndefined(
      Option.map(row, (r) => (field === "config" ? r.config["n"] : r.users === "all" ? "all" : r.users[0]))
    )
  )

const program = Effect.gen(function* () {
  const registry = yield* Registry.Registry
  yield* barrier
  let lost = 0
  for (let i = 1; i <= count; i++) {
    // Only this process writes this field, so it must still hold what this process wrote last.
    if (i > 1 && (yield* ownField(registry)) !== valueOf(i - 1)) lost++
    yield* registry.update(id, field === "config" ? { config: { n: i } } : { users: [`u${i}`] })
  }
  if ((yield* ownField(registry)) !== valueOf(count)) lost++
  process.stdout.write(JSON.stringify({ writes: count, lost }))
})

Effect.runPromise(
  program.pipe(Effect.provide(Registry.layer.pipe(Layer.provide(storageLayer(dataFolder)))))
).catch((error: unknown) => {
  process.stderr.write(String(error))
  process.exitCode = 1
})

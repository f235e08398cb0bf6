/** The registry as several processes use it: `ndp serve` and `ndp plugins` writing the same row. */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { execFile } from "node:child_process"
import { join } from "node:path"
import * as Registry from "../../src/manager/Registry.js"
import { repositoryRoot } from "../support/cli.js"
import { tempDataFolder } from "../support/engine.js"
import { storageLayer } from "../support/storage.js"

interface WriterResult {
  readonly writes: number
  readonly lost: number
}

/** Runs test/support/registry-writer.ts in its own Node process. */
const writer = (dataFolder: string, field: "config" | "users", count: number) =>
  Effect.async<WriterResult, Error>((resume) => {
    execFile(
      process.execPath,
      [
        "--import",
        "tsx",
        join(repositoryRoot, "test/support/registry-writer.ts"),
        dataFolder,
        "shared",
        field,
        String(count)
      ],
      { cwd: repositoryRoot, encoding: "utf8", timeout: 120_000 },
      (error, stdout, stderr) =>
        resume(
          error === null
            ? Effect.succeed(JSON.parse(stdout) as WriterResult)
            : Effect.fail(new Error(`writer ${field} failed: ${stderr || error.message}`))
        )
    )
  })

describe("Registry", () => {
  it.scopedLive("two processes updating different fields of one row many times: no update is lost", () =>
    Effect.gen(function* () {
      const dataFolder = yield* tempDataFolder
      const count = 300
      const registry = Context.get(
        yield* Layer.build(Registry.layer.pipe(Layer.provide(storageLayer(dataFolder)))),
        Registry.Registry
      )
      yield* registry.insert({
        id: "shared",
        path: "/p/shared.ndp",
        manifest: "{}",
        sha256: "0",
        lastError: null
      })
      const [configs, users] = yield* Effect.all(
        [writer(dataFolder, "config", count), writer(dataFolder, "users", count)],
        { concurrency: 2 }
      )
      expect(configs).toEqual({ writes: count, lost: 0 })
      expect(users).toEqual({ writes: count, lost: 0 })
      const row = Option.getOrThrow(yield* registry.get("shared"))
      expect(row.config).toEqual({ n: count })
      expect(row.users).toEqual([`u${count}`])
      // Fields neither writer touched kept their values.
      expect(row).toMatchObject({ path: "/p/shared.ndp", sha256: "0", enabled: false, allowedNetworks: [] })
    })
  )
})

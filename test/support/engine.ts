/** The engine for tests: embedded defaults in a temporary data folder that is removed afterwards. */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Engine from "../../src/Engine.js"

export const tempDataFolder = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "ndp-test-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** The engine, and Node's filesystem for what tests call beside it (`registerLibrary`). */
export const testEngine = (options: Engine.EngineOptions = {}) =>
  Layer.unwrapScoped(
    Effect.map(tempDataFolder, (dataFolder) =>
      Layer.merge(Engine.layer({ ...options, dataFolder }), NodeFileSystem.layer)
    )
  )

/** The engine for tests: embedded defaults in a temporary data folder that is removed afterwards. */
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

export const testEngine = (options: Engine.EngineOptions = {}) =>
  Layer.unwrapScoped(Effect.map(tempDataFolder, (dataFolder) => Engine.layer({ ...options, dataFolder })))

/**
 * A fixture's module compiled and one host service's handlers made for it, without the loader:
 * for tests that instantiate a plugin themselves to see which host calls reach the main thread.
 */
import * as Effect from "effect/Effect"
import { unzipSync } from "fflate"
import { readFileSync } from "node:fs"
import { HostFunctions } from "../../src/host/HostFunctions.js"
import type { HostServiceProvider } from "../../src/host/HostProvider.js"
import { decodeManifest } from "../../src/manifest/Manifest.js"
import { WasmRuntime } from "../../src/runtime/WasmRuntime.js"
import { fixture } from "./fixtures.js"

export const directHandlers = (fixtureId: string, pluginId: string, provider: HostServiceProvider) =>
  Effect.gen(function* () {
    const runtime = yield* WasmRuntime
    const { dataFolder } = yield* HostFunctions
    const entries = unzipSync(readFileSync(fixture(fixtureId)))
    const manifest = yield* decodeManifest(new TextDecoder().decode(entries["manifest.json"]))
    const compiled = yield* runtime.compile(pluginId, `${pluginId}-test`, entries["plugin.wasm"]!)
    const handlers = yield* provider.make({
      pluginId,
      manifest,
      config: {},
      dataFolder,
      users: [],
      libraries: [],
      callPlugin: () => Effect.succeed(null)
    })
    return { runtime, compiled, handlers }
  })

/**
 * A fixture's module compiled and one host service's handlers made for it, without the loader:
 * for tests that instantiate a plugin themselves to see which host calls reach the main thread.
 */
import * as Effect from "effect/Effect"
import { unzipSync } from "fflate"
import { readFileSync } from "node:fs"
import { HostFunctions } from "../../src/host/HostFunctions.js"
import type { HostFunctionHandler } from "../../src/host/HostCodec.js"
import type { HostServiceProvider } from "../../src/host/HostProvider.js"
import { decodeManifest } from "../../src/manifest/Manifest.js"
import { type InstantiateOptions, WasmRuntime } from "../../src/runtime/WasmRuntime.js"
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

/**
 * The fixture instantiated with `handlers` (and the worker-side sources in `local`), calling its
 * `call_<prefix><fn>` passthrough exports; `crossed` records every host call that reaches the
 * main thread, in order.
 */
export const recordingPlugin = (
  made: Effect.Effect.Success<ReturnType<typeof directHandlers>>,
  options: {
    readonly pluginId: string
    readonly userFunctions: ReadonlyArray<string>
    readonly exportPrefix: string
    readonly local: Pick<InstantiateOptions, "workerFunctions" | "localKvStore" | "localCache">
    /** The main thread's handler of `fn` (default: the service's own). */
    readonly route?: (fn: string) => HostFunctionHandler
  }
) =>
  Effect.gen(function* () {
    const { compiled, handlers, runtime } = made
    const route = options.route ?? ((fn: string) => handlers[fn]!)
    const crossed: Array<string> = []
    const plugin = yield* runtime.instantiate({
      pluginId: options.pluginId,
      compiled,
      config: {},
      userFunctions: options.userFunctions,
      ...options.local,
      envHttp: false,
      host: (fn, payload) => {
        crossed.push(fn)
        return route(fn)(payload)
      }
    })
    const call = (fn: string, request: unknown) =>
      Effect.map(
        Effect.orDie(
          plugin.call(`call_${options.exportPrefix}${fn}`, new TextEncoder().encode(JSON.stringify(request)))
        ),
        (bytes) => JSON.parse(new TextDecoder().decode(bytes ?? new Uint8Array(0))) as Record<string, unknown>
      )
    return { call, crossed }
  })

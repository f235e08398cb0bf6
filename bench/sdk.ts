/**
 * The baseline: the same plugin run by the stock `@extism/extism` JS SDK, driven the way a user of
 * that SDK would (plain promises, one call at a time per SDK plugin since its plugins are not
 * reentrant).
 */
import type { CallContext, Plugin } from "@extism/extism"
import { unzipSync } from "fflate"
import { readFileSync } from "node:fs"

/** The `plugin.wasm` inside an `.ndp` package. */
export const wasmOf = (ndpPath: string): Uint8Array => {
  const wasm = unzipSync(readFileSync(ndpPath))["plugin.wasm"]
  if (wasm === undefined) throw new Error(`${ndpPath} holds no plugin.wasm`)
  return wasm
}

/** `count` SDK plugins of the same module; with `runInWorker` each owns a worker thread. */
export const createSdkPlugins = async (
  wasm: Uint8Array,
  count: number,
  runInWorker: boolean
): Promise<ReadonlyArray<Plugin>> => {
  // Imported here, not at the top: the SDK loads `node:wasi`, whose ExperimentalWarning the
  // runner filters out before this runs.
  const { createPlugin } = await import("@extism/extism")
  return Promise.all(
    Array.from({ length: count }, () =>
      createPlugin(
        { wasm: [{ data: wasm }] },
        {
          useWasi: false,
          runInWorker,
          functions: {
            "extism:host/user": {
              config_get: (context: CallContext, _request: bigint) =>
                context.store('{"value":"v","exists":true}')
            }
          }
        }
      )
    )
  )
}

export const closeAll = (plugins: ReadonlyArray<Plugin>): Promise<void> =>
  Promise.all(plugins.map((plugin) => plugin.close())).then(() => undefined)

/** A FIFO mutex: an SDK plugin runs one call at a time ("plugin is not reentrant"). */
class Lock {
  private tail: Promise<void> = Promise.resolve()
  run(task: () => Promise<void>): Promise<void> {
    const result = this.tail.then(task)
    this.tail = result.catch(() => undefined)
    return result
  }
}

/**
 * Calls per second of `op` with `inFlight` concurrent callers for `durationMs`, caller `i` using
 * plugin `i % plugins.length` (each plugin behind its own lock).
 */
export const sdkThroughput = async (
  plugins: ReadonlyArray<Plugin>,
  op: (plugin: Plugin) => Promise<void>,
  inFlight: number,
  durationMs: number
): Promise<number> => {
  const locks = plugins.map(() => new Lock())
  let calls = 0
  const start = performance.now()
  const deadline = start + durationMs
  await Promise.all(
    Array.from({ length: inFlight }, async (_, i) => {
      const plugin = plugins[i % plugins.length]!
      const lock = locks[i % plugins.length]!
      const task = () => op(plugin)
      while (performance.now() < deadline) {
        await lock.run(task)
        calls++
      }
    })
  )
  return (calls / (performance.now() - start)) * 1000
}

/** Calls per second of `op` on one plugin, strictly sequential, for `durationMs`. */
export const sdkSequentialThroughput = async (
  plugin: Plugin,
  op: (plugin: Plugin) => Promise<void>,
  durationMs: number
): Promise<number> => {
  let calls = 0
  const start = performance.now()
  const deadline = start + durationMs
  while (performance.now() < deadline) {
    await op(plugin)
    calls++
  }
  return (calls / (performance.now() - start)) * 1000
}

/** What a user of the worker mode must do per call: without `reset` the worker mode breaks. */
export const callAndReset =
  (exportName: string) =>
  async (plugin: Plugin): Promise<void> => {
    await plugin.call(exportName)
    await plugin.reset()
  }

export const callOnly =
  (exportName: string) =>
  async (plugin: Plugin): Promise<void> => {
    await plugin.call(exportName)
  }

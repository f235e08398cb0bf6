/**
 * Footprint and load-time figures, run by bench/run.ts:
 * - RSS per loaded, idle plugin with the pool at its default size (200 distinct plugins, each its
 *   own compiled module), beside each plugin's own initial linear memory;
 * - the time to load 50 of those small plugins, and of one multi-megabyte module built here (a
 *   4 MiB data segment and 20,000 functions), cold (compiled) and again (compiled-module cache hit).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { unzipSync, zipSync } from "fflate"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Engine from "../src/Engine.js"
import { WasmRuntime } from "../src/runtime/WasmRuntime.js"
import { PluginLoader } from "../src/loader/PluginLoader.js"
import { inspect, WASM_PAGE_BYTES } from "../src/runtime/WasmBinary.js"
import { collectGarbage, rssMb } from "./stats.js"

const fixture = (id: string): string => fileURLToPath(new URL(`../build/fixtures/${id}.ndp`, import.meta.url))

const uleb = (value: number): Array<number> => {
  const out: Array<number> = []
  do {
    let byte = value & 0x7f
    value >>>= 7
    if (value !== 0) byte |= 0x80
    out.push(byte)
  } while (value !== 0)
  return out
}

const sleb = (value: number): Array<number> => {
  const out: Array<number> = []
  for (;;) {
    const byte = value & 0x7f
    value >>= 7
    if ((value === 0 && (byte & 0x40) === 0) || (value === -1 && (byte & 0x40) !== 0)) {
      out.push(byte)
      return out
    }
    out.push(byte | 0x80)
  }
}

const section = (id: number, body: ArrayLike<number>): Array<number> => [
  id,
  ...uleb(body.length),
  ...Array.from(body)
]
const name = (text: string): Array<number> => [...uleb(text.length), ...Buffer.from(text)]

/**
 * A module of `functions` small functions `() -> i32` and a `dataBytes` data segment of
 * incompressible bytes, exporting `memory` and `noop`: a stand-in for a large real plugin.
 */
export const largeModule = (functions: number, dataBytes: number): Uint8Array => {
  const type = section(1, [1, 0x60, 0, 1, 0x7f])
  const funcs = section(3, [...uleb(functions), ...new Array<number>(functions).fill(0)])
  const pages = Math.ceil(dataBytes / WASM_PAGE_BYTES) + 1
  const memory = section(5, [1, 0, ...uleb(pages)])
  const exports = section(7, [2, ...name("memory"), 2, 0, ...name("noop"), 0, 0])
  const bodies: Array<number> = [...uleb(functions)]
  for (let f = 0; f < functions; f++) {
    const code: Array<number> = [0]
    for (let i = 0; i < 8; i++) code.push(0x41, ...sleb(f * 8 + i), 0x1a)
    code.push(0x41, 0, 0x0b)
    bodies.push(...uleb(code.length), ...code)
  }
  const code = section(10, bodies)
  const data = new Uint8Array(dataBytes)
  let seed = 0x2545f491
  for (let i = 0; i < dataBytes; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    data[i] = seed >>> 24
  }
  // One active segment at offset 0 of memory 0.
  const header = [1, 0, 0x41, 0, 0x0b, ...uleb(dataBytes)]
  const dataSection = [11, ...uleb(header.length + dataBytes), ...header]
  const head = Uint8Array.from([
    0,
    0x61,
    0x73,
    0x6d,
    1,
    0,
    0,
    0,
    ...type,
    ...funcs,
    ...memory,
    ...exports,
    ...code
  ])
  const out = new Uint8Array(head.length + dataSection.length + dataBytes)
  out.set(head)
  out.set(dataSection, head.length)
  out.set(data, head.length + dataSection.length)
  return out
}

const packed = (id: string, wasm: Uint8Array): Uint8Array =>
  zipSync({
    "manifest.json": Buffer.from(JSON.stringify({ name: id, author: "ndp-engine bench", version: "1.0.0" })),
    "plugin.wasm": wasm
  })

/** `wasm` with a custom section naming `tag`: same code, another SHA-256, so another compiled module. */
const distinct = (wasm: Uint8Array, tag: string): Uint8Array => {
  const body = [...name("ndp-bench"), ...Buffer.from(tag)]
  return Uint8Array.from([...wasm, ...section(0, body)])
}

export interface FootprintFigures {
  readonly plugins: number
  readonly poolSize: number
  /** Load of the first 50 plugins, 4 at a time, each compiled (no cache hits). */
  readonly loadSmallMs: number
  readonly loadSmallPlugins: number
  readonly rssBeforeMb: number
  readonly rssAfterMb: number
  readonly rssPerPluginMb: number
  /** The initial linear memory of one instance (its `memory` minimum). */
  readonly linearMemoryPerPluginMb: number
  readonly rssPerPluginBeyondLinearMemoryMb: number
  readonly large: {
    readonly wasmBytes: number
    readonly ndpBytes: number
    readonly functions: number
    readonly dataBytes: number
    readonly coldLoadMs: number
    readonly cachedLoadMs: number
  }
}

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const started = performance.now()
    const result = yield* effect
    return { result, ms: performance.now() - started }
  })

/** How many of the plugins the load time covers. */
const TIMED_LOADS = 50

/** The footprint stage, in an engine of its own with default options. */
export const footprint = (plugins = 200) =>
  Effect.gen(function* () {
    const dataFolder = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "ndp-bench-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    return yield* Effect.gen(function* () {
      const loader = yield* PluginLoader
      const { options } = yield* WasmRuntime
      const wasm = unzipSync(readFileSync(fixture("agent-full")))["plugin.wasm"]!
      const shape = yield* inspect(wasm)
      const linearBytes = (shape.memories[0]?.min ?? 0) * WASM_PAGE_BYTES
      const packages = Array.from({ length: plugins }, (_, i) =>
        packed(`small-${i}`, distinct(wasm, String(i)))
      )
      yield* Effect.sleep("300 millis")
      collectGarbage()
      collectGarbage()
      const rssBeforeMb = rssMb()
      const load = (from: number, to: number) =>
        Effect.forEach(packages.slice(from, to), (bytes, i) => loader.loadBytes(`small-${from + i}`, bytes), {
          concurrency: 4
        })
      const small = yield* timed(load(0, TIMED_LOADS))
      // The rest only for the memory figure: a few hundred kilobytes per plugin drown in the noise of 50.
      yield* load(TIMED_LOADS, plugins)
      // Idle: let the workers settle, then collect the main thread's garbage.
      yield* Effect.sleep("500 millis")
      collectGarbage()
      collectGarbage()
      const rssAfterMb = rssMb()
      const rssPerPluginMb = (rssAfterMb - rssBeforeMb) / plugins
      const linearMemoryPerPluginMb = linearBytes / (1024 * 1024)

      const functions = 20_000
      const dataBytes = 4 * 1024 * 1024
      const largeWasm = largeModule(functions, dataBytes)
      const largeNdp = packed("large-module", largeWasm)
      const cold = yield* timed(loader.loadBytes("large-module", largeNdp))
      const cached = yield* timed(loader.loadBytes("large-module-again", largeNdp))
      return {
        plugins,
        poolSize: options.poolSize,
        loadSmallMs: Math.round(small.ms),
        loadSmallPlugins: TIMED_LOADS,
        rssBeforeMb: Math.round(rssBeforeMb * 10) / 10,
        rssAfterMb: Math.round(rssAfterMb * 10) / 10,
        rssPerPluginMb: Math.round(rssPerPluginMb * 100) / 100,
        linearMemoryPerPluginMb: Math.round(linearMemoryPerPluginMb * 100) / 100,
        rssPerPluginBeyondLinearMemoryMb: Math.round((rssPerPluginMb - linearMemoryPerPluginMb) * 100) / 100,
        large: {
          wasmBytes: largeWasm.byteLength,
          ndpBytes: largeNdp.byteLength,
          functions,
          dataBytes,
          coldLoadMs: Math.round(cold.ms),
          cachedLoadMs: Math.round(cached.ms)
        }
      } satisfies FootprintFigures
    }).pipe(Effect.scoped, Effect.provide(Layer.fresh(Engine.layer({ dataFolder }))))
  }).pipe(Effect.scoped)

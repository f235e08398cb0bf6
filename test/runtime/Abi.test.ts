/**
 * The import ABI the loader checks on the main thread (src/runtime/abi/Imports.ts) is exactly what
 * the worker implements: a name added to the kernel or to WASI without the list (or the reverse)
 * would make the loader refuse a working plugin or accept one the worker cannot link.
 */
import { describe, expect, it } from "@effect/vitest"
import { kernelFunctionNames, wasiFunctionNames } from "../../src/runtime/abi/Imports.js"
import { Kernel } from "../../src/runtime/worker/Kernel.js"
import { makeWasi } from "../../src/runtime/worker/Wasi.js"

describe("import ABI", () => {
  it("lists every Extism kernel function the worker's kernel provides, and no other", () => {
    const kernel = new Kernel(
      {},
      { maxHostMemoryBytes: 0, maxOutputBytes: 0, maxVarBytes: 0, maxLinearMemoryBytes: 0 },
      5,
      () => {}
    )
    expect(new Set(Object.keys(kernel.imports()))).toEqual(kernelFunctionNames)
  })

  it("lists every WASI preview 1 function the worker's WASI provides, and no other", () => {
    const wasi = makeWasi({ memory: () => undefined, log: { write: () => undefined, text: () => undefined } })
    expect(new Set(Object.keys(wasi.imports))).toEqual(wasiFunctionNames)
  })
})

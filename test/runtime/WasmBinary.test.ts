import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import { capMemory, inspect, WASM_PAGE_BYTES, WasmBinaryError } from "../../src/runtime/WasmBinary.js"

// The tsconfig has no DOM lib and @types/node does not declare WebAssembly, so type the bits we use.
interface WasmApi {
  validate(bytes: Uint8Array): boolean
  Module: {
    new (bytes: Uint8Array): object
    customSections(module: object, name: string): Array<ArrayBuffer>
  }
  Instance: new (module: object, imports?: object) => { exports: Record<string, unknown> }
  Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => object
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

const wabt = await (await import("wabt")).default()

type Features = Parameters<typeof wabt.parseWat>[2]

const wat = (
  src: string,
  options: { features?: Features; debugNames?: boolean; canonicalLebs?: boolean } = {}
): Uint8Array => {
  const mod = wabt.parseWat("x.wat", new TextEncoder().encode(src), { threads: true, ...options.features })
  try {
    const { buffer } = mod.toBinary({
      write_debug_names: options.debugNames ?? false,
      canonicalize_lebs: options.canonicalLebs ?? true
    })
    return buffer.slice()
  } finally {
    mod.destroy()
  }
}

const uleb = (n: number): Array<number> => {
  const out: Array<number> = []
  do {
    const b = n & 0x7f
    n = Math.floor(n / 128)
    out.push(n === 0 ? b : b | 0x80)
  } while (n !== 0)
  return out
}

const section = (id: number, content: ArrayLike<number>): Array<number> => [
  id,
  ...uleb(content.length),
  ...Array.from(content)
]

const customSection = (name: string, payload: ArrayLike<number>): Array<number> => {
  const nameBytes = Array.from(new TextEncoder().encode(name))
  return section(0, [...uleb(nameBytes.length), ...nameBytes, ...Array.from(payload)])
}

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]

const growModule = (memory: string): Uint8Array =>
  wat(`(module
    ${memory}
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`)

const growBy = (bytes: Uint8Array, pages: number): number => {
  const instance = new Wasm.Instance(new Wasm.Module(bytes))
  return (instance.exports["grow"] as (n: number) => number)(pages)
}

const memoriesOf = (bytes: Uint8Array) => Effect.map(inspect(bytes), (shape) => shape.memories)

const sameBytes = (a: ArrayBuffer | Uint8Array | undefined, b: ArrayBuffer | Uint8Array | undefined) => {
  expect(a).toBeDefined()
  expect(b).toBeDefined()
  expect(Buffer.from(new Uint8Array(a!)).equals(Buffer.from(new Uint8Array(b!)))).toBe(true)
}

/** A module touching every import kind, several exports, a start function, data and debug names. */
const RICH = wat(
  `(module
    (type $t (func (param i32)))
    (import "env" "log" (func $log (param i32)))
    (import "env" "table" (table 1 10 funcref))
    (import "env" "memory" (memory 1 100))
    (import "env" "g" (global $g (mut i32)))
    (import "env" "err" (tag $err (param i32)))
    (memory $own (export "scratch") 2)
    (global $count (export "count") (mut i32) (i32.const 0))
    (tag $boom (export "boom") (param i32))
    (table $t2 (export "tbl") 2 funcref)
    (func $init (global.set $count (i32.const 1)))
    (func $run (export "run") (param $x i32) (result i32) (local $y i32)
      (local.set $y (i32.add (local.get $x) (global.get $g)))
      (call $log (local.get $y))
      (memory.size))
    (start $init)
    (data (memory 0) (i32.const 16) "hello"))`,
  { features: { exceptions: true, multi_memory: true } as Features, debugNames: true }
)

/** A valid module with memory that Node can validate, used as the seed for mutations. */
const SEED = wat(
  `(module
    (import "env" "log" (func $log (param i32)))
    (import "env" "memory" (memory 1 100))
    (import "env" "g" (global $g i32))
    (table 1 funcref)
    (func $f (export "f") (param $x i32) (result i32) (call $log (local.get $x)) (memory.size))
    (start $f2)
    (func $f2)
    (data (i32.const 0) "abc"))`,
  { debugNames: true }
)

describe("capMemory", () => {
  it.effect("caps how far a plugin can grow its memory", () =>
    Effect.gen(function* () {
      const original = growModule(`(memory (export "memory") 1)`)
      const capped = yield* capMemory(original, 4)
      expect(growBy(capped, 10)).toBe(-1)
      expect(growBy(capped, 2)).toBe(1)
      expect(growBy(capped, 3)).toBe(1)
      expect(growBy(capped, 4)).toBe(-1)
      expect(growBy(original, 10)).toBe(1)
      expect(yield* memoriesOf(capped)).toEqual([{ imported: false, min: 1, max: 4, shared: false }])
    })
  )

  it.effect("keeps a declared maximum below the cap and lowers one above it", () =>
    Effect.gen(function* () {
      const small = growModule(`(memory 1 2)`)
      const keptAsIs = yield* capMemory(small, 4)
      expect(keptAsIs).toEqual(small)
      expect(yield* memoriesOf(keptAsIs)).toEqual([{ imported: false, min: 1, max: 2, shared: false }])
      expect(growBy(keptAsIs, 2)).toBe(-1)

      const large = growModule(`(memory 1 100)`)
      const lowered = yield* capMemory(large, 4)
      expect(yield* memoriesOf(lowered)).toEqual([{ imported: false, min: 1, max: 4, shared: false }])
      expect(growBy(lowered, 4)).toBe(-1)
      expect(growBy(large, 4)).toBe(1)
    })
  )

  it.effect("caps an imported memory, so the host must supply a bounded one", () =>
    Effect.gen(function* () {
      const original = wat(`(module (import "env" "memory" (memory 2)) (func (export "f")))`)
      const capped = yield* capMemory(original, 8)
      expect(Wasm.validate(capped)).toBe(true)
      expect(yield* memoriesOf(capped)).toEqual([{ imported: true, min: 2, max: 8, shared: false }])
      const mod = new Wasm.Module(capped)
      expect(
        () => new Wasm.Instance(mod, { env: { memory: new Wasm.Memory({ initial: 2, maximum: 8 }) } })
      ).not.toThrow()
      expect(() => new Wasm.Instance(mod, { env: { memory: new Wasm.Memory({ initial: 2 }) } })).toThrow()
      expect(
        () => new Wasm.Instance(mod, { env: { memory: new Wasm.Memory({ initial: 2, maximum: 9 }) } })
      ).toThrow()
    })
  )

  it.effect("refuses a module whose initial memory is already over the limit", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(capMemory(growModule(`(memory 17)`), 16))
      expect(error).toBeInstanceOf(WasmBinaryError)
      expect(error.reason).toBe("MemoryTooLarge")
      expect(error.message).toContain("17 pages (1.06 MiB)")
      expect(error.message).toContain("16 pages (1 MiB)")
      expect(error.message).toContain("raise the plugin's memory limit")

      const imported = wat(`(module (import "env" "memory" (memory 5)))`)
      expect((yield* Effect.flip(capMemory(imported, 4))).reason).toBe("MemoryTooLarge")
      // Exactly at the limit is fine.
      expect(yield* memoriesOf(yield* capMemory(imported, 5))).toEqual([
        { imported: true, min: 5, max: 5, shared: false }
      ])
    })
  )

  it.effect("keeps shared memories shared", () =>
    Effect.gen(function* () {
      const declared = wat(`(module (memory (export "memory") 1 16 shared))`)
      const capped = yield* capMemory(declared, 4)
      expect(Wasm.validate(capped)).toBe(true)
      expect(yield* memoriesOf(capped)).toEqual([{ imported: false, min: 1, max: 4, shared: true }])

      const imported = wat(`(module (import "env" "memory" (memory 1 100 shared)))`)
      const cappedImport = yield* capMemory(imported, 4)
      expect(Wasm.validate(cappedImport)).toBe(true)
      expect(yield* memoriesOf(cappedImport)).toEqual([{ imported: true, min: 1, max: 4, shared: true }])
      const memory = new Wasm.Memory({ initial: 1, maximum: 4, shared: true })
      expect(() => new Wasm.Instance(new Wasm.Module(cappedImport), { env: { memory } })).not.toThrow()
    })
  )

  it.effect("leaves names and custom sections intact", () =>
    Effect.gen(function* () {
      const named = wat(
        `(module (memory 1) (func $answer (export "answer") (param $x i32) (result i32) (local.get $x)))`,
        { debugNames: true }
      )
      const meta = [1, 2, 3, 250, 0]
      const original = Uint8Array.from([...named, ...customSection("ndp.meta", meta)])
      const capped = yield* capMemory(original, 4)
      expect(Wasm.validate(capped)).toBe(true)
      const before = new Wasm.Module(original)
      const after = new Wasm.Module(capped)
      expect(Wasm.Module.customSections(after, "name")).toHaveLength(1)
      sameBytes(Wasm.Module.customSections(after, "name")[0], Wasm.Module.customSections(before, "name")[0])
      sameBytes(Wasm.Module.customSections(after, "ndp.meta")[0], Uint8Array.from(meta))
      // Only the memory section grew (by the encoded maximum).
      expect(capped.length).toBe(original.length + 1)
    })
  )

  it.effect("handles non-minimal LEB128 encodings", () =>
    Effect.gen(function* () {
      const padded = wat(
        `(module (memory (export "memory") 1) (func (export "grow") (param i32) (result i32)
        (memory.grow (local.get 0))))`,
        { canonicalLebs: false }
      )
      const capped = yield* capMemory(padded, 4)
      expect(growBy(capped, 10)).toBe(-1)
      expect(growBy(capped, 3)).toBe(1)

      // Memory section whose count, minimum and maximum are all padded to five bytes.
      const handmade = Uint8Array.from([
        ...HEADER,
        ...section(
          5,
          [0x81, 0x80, 0x80, 0x80, 0x00, 0x01, 0x82, 0x80, 0x80, 0x80, 0x00, 0xe4, 0x80, 0x80, 0x80, 0x00]
        )
      ])
      expect(Wasm.validate(handmade)).toBe(true)
      expect(yield* memoriesOf(handmade)).toEqual([{ imported: false, min: 2, max: 100, shared: false }])
      const cappedHandmade = yield* capMemory(handmade, 8)
      expect(Wasm.validate(cappedHandmade)).toBe(true)
      expect(yield* memoriesOf(cappedHandmade)).toEqual([{ imported: false, min: 2, max: 8, shared: false }])
    })
  )

  it.effect("returns a module without memory unchanged", () =>
    Effect.gen(function* () {
      const noMemory = wat(`(module (func (export "f") (result i32) (i32.const 1)))`)
      expect(yield* capMemory(noMemory, 4)).toBe(noMemory)
    })
  )

  it.effect("caps every memory of a multi-memory module", () =>
    Effect.gen(function* () {
      const capped = yield* capMemory(RICH, 3)
      expect(yield* memoriesOf(capped)).toEqual([
        { imported: true, min: 1, max: 3, shared: false },
        { imported: false, min: 2, max: 3, shared: false }
      ])
      expect((yield* inspect(capped)).exports).toEqual((yield* inspect(RICH)).exports)
    })
  )

  it.effect("reports memory64 as unsupported", () =>
    Effect.gen(function* () {
      const mem64 = wat(`(module (memory i64 1))`, { features: { memory64: true } })
      const error = yield* Effect.flip(capMemory(mem64, 4))
      expect(error.reason).toBe("Unsupported")
      expect(error.message).toContain("memory64")
      expect((yield* Effect.flip(inspect(mem64))).reason).toBe("Unsupported")
    })
  )

  it.effect("clamps the cap to the wasm32 limit", () =>
    Effect.gen(function* () {
      const capped = yield* capMemory(growModule(`(memory 1)`), Infinity)
      expect(yield* memoriesOf(capped)).toEqual([{ imported: false, min: 1, max: 65536, shared: false }])
      expect(Wasm.validate(capped)).toBe(true)
    })
  )
})

describe("inspect", () => {
  it.effect("lists imports, exports, memories and the start function", () =>
    Effect.gen(function* () {
      const shape = yield* inspect(RICH)
      expect(shape.imports).toEqual([
        { module: "env", name: "log", kind: "function" },
        { module: "env", name: "table", kind: "table" },
        { module: "env", name: "memory", kind: "memory" },
        { module: "env", name: "g", kind: "global" },
        { module: "env", name: "err", kind: "tag" }
      ])
      expect(shape.exports).toEqual([
        { name: "scratch", kind: "memory" },
        { name: "count", kind: "global" },
        { name: "boom", kind: "tag" },
        { name: "tbl", kind: "table" },
        { name: "run", kind: "function" }
      ])
      expect(shape.memories).toEqual([
        { imported: true, min: 1, max: 100, shared: false },
        { imported: false, min: 2, max: undefined, shared: false }
      ])
      expect(shape.hasStart).toBe(true)
    })
  )

  it.effect("reads an empty module", () =>
    Effect.gen(function* () {
      expect(yield* inspect(Uint8Array.from(HEADER))).toEqual({
        imports: [],
        exports: [],
        memories: [],
        hasStart: false
      })
    })
  )

  it.effect("decodes UTF-8 names and rejects invalid ones", () =>
    Effect.gen(function* () {
      const unicode = wat(`(module (func (export "héllo→🌍")))`)
      expect((yield* inspect(unicode)).exports).toEqual([{ name: "héllo→🌍", kind: "function" }])

      // export section: one export, name length 1, byte 0xff (never valid UTF-8)
      const bad = Uint8Array.from([...HEADER, ...section(7, [0x01, 0x01, 0xff, 0x00, 0x00])])
      const error = yield* Effect.flip(inspect(bad))
      expect(error.reason).toBe("Malformed")
      expect(error.message).toContain("UTF-8")
      expect(error.message).toContain("byte offset 12")
    })
  )
})

describe("malformed input", () => {
  const malformed = (bytes: ArrayLike<number>) =>
    Effect.gen(function* () {
      const input = Uint8Array.from(bytes)
      const fromCap = yield* Effect.flip(capMemory(input, 4))
      const fromInspect = yield* Effect.flip(inspect(input))
      expect(fromCap.reason).toBe("Malformed")
      expect(fromInspect.reason).toBe("Malformed")
      return fromCap.message
    })

  it.effect("names what is wrong and where", () =>
    Effect.gen(function* () {
      expect(yield* malformed([])).toContain("magic")
      expect(yield* malformed([0x7f, 0x45, 0x4c, 0x46, 1, 0, 0, 0])).toContain("magic")
      // section claims 10 bytes, has 1
      expect(yield* malformed([...HEADER, 0x05, 0x0a, 0x01])).toMatch(/section 5.*byte offset 10/)
      // memory count 1 but no limits
      expect(yield* malformed([...HEADER, ...section(5, [0x01])])).toMatch(/memory limits at byte offset 11/)
      // six-byte LEB128 for the section size
      expect(yield* malformed([...HEADER, 0x05, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00])).toMatch(
        /LEB128.*byte offset 9/
      )
      // u32 overflow in the fifth byte
      expect(yield* malformed([...HEADER, 0x05, 0xff, 0xff, 0xff, 0xff, 0x1f])).toContain("LEB128")
      // unknown import kind 0x07
      expect(yield* malformed([...HEADER, ...section(2, [0x01, 0x00, 0x00, 0x07])])).toMatch(
        /import kind 0x07 at byte offset 13/
      )
      // trailing garbage inside the memory section
      expect(yield* malformed([...HEADER, ...section(5, [0x01, 0x00, 0x01, 0xaa])])).toContain("trailing")
      // invalid limits flags
      expect(yield* malformed([...HEADER, ...section(5, [0x01, 0x10, 0x01])])).toContain("flags 0x10")
    })
  )

  it.effect("rejects component binaries as unsupported", () =>
    Effect.gen(function* () {
      const component = Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00])
      expect((yield* Effect.flip(capMemory(component, 4))).reason).toBe("Unsupported")
    })
  )

  it.effect("fails with a huge vector count instead of looping", () =>
    Effect.gen(function* () {
      const hugeCount = [...HEADER, ...section(2, [0xff, 0xff, 0xff, 0xff, 0x0f])]
      expect(yield* malformed(hugeCount)).toContain("import module name")
    })
  )
})

/** Runs both functions synchronously: a defect or a thrown exception fails the property. */
const neverThrows = (bytes: Uint8Array, cap: number) => {
  const capped = Effect.runSync(Effect.either(capMemory(bytes, cap)))
  const shape = Effect.runSync(Effect.either(inspect(bytes)))
  if (Either.isLeft(capped)) expect(capped.left).toBeInstanceOf(WasmBinaryError)
  if (Either.isLeft(shape)) expect(shape.left).toBeInstanceOf(WasmBinaryError)
  return capped
}

const arbSection = FastCheck.record({
  id: FastCheck.oneof(FastCheck.constantFrom(0, 2, 5, 7, 8), FastCheck.integer({ min: 0, max: 255 })),
  content: FastCheck.uint8Array({ maxLength: 40 })
})

describe("properties", () => {
  it.prop("arbitrary bytes never throw", [FastCheck.uint8Array({ maxLength: 200 })], ([bytes]) => {
    neverThrows(bytes, 4)
  })

  it.prop(
    "arbitrary section contents never throw",
    [FastCheck.array(arbSection, { maxLength: 6 }), FastCheck.integer({ min: -5, max: 70000 })],
    ([sections, cap]) => {
      const bytes = Uint8Array.from([...HEADER, ...sections.flatMap((s) => section(s.id, s.content))])
      neverThrows(bytes, cap)
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "truncations of a valid module never throw",
    [FastCheck.integer({ min: 0, max: SEED.length })],
    ([length]) => {
      neverThrows(SEED.subarray(0, length), 4)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "bit flips of a valid module never throw, and a capped valid mutant stays valid",
    [
      FastCheck.array(
        FastCheck.record({
          at: FastCheck.integer({ min: 0, max: SEED.length - 1 }),
          bit: FastCheck.integer({ min: 0, max: 7 })
        }),
        { minLength: 1, maxLength: 3 }
      ),
      FastCheck.integer({ min: 1, max: 200 })
    ],
    ([flips, cap]) => {
      const mutant = SEED.slice()
      for (const { at, bit } of flips) mutant[at]! ^= 1 << bit
      const capped = neverThrows(mutant, cap)
      if (Either.isRight(capped) && Wasm.validate(mutant)) expect(Wasm.validate(capped.right)).toBe(true)
    },
    { fastCheck: { numRuns: 1000 } }
  )

  it.prop(
    "capped memories match the model and still validate",
    [
      FastCheck.record({
        imported: FastCheck.boolean(),
        shared: FastCheck.boolean(),
        min: FastCheck.integer({ min: 0, max: 300 }),
        extra: FastCheck.option(FastCheck.integer({ min: 0, max: 70000 }), { nil: undefined }),
        cap: FastCheck.integer({ min: 0, max: 300 })
      })
    ],
    ([{ imported, shared, min, extra, cap }]) => {
      // shared memories must declare a maximum
      const declaredMax = extra === undefined && !shared ? undefined : Math.min(65536, min + (extra ?? 0))
      const limits = `${min}${declaredMax === undefined ? "" : ` ${declaredMax}`}${shared ? " shared" : ""}`
      const bytes = wat(
        imported ? `(module (import "env" "memory" (memory ${limits})))` : `(module (memory ${limits}))`
      )
      const result = Effect.runSync(Effect.either(capMemory(bytes, cap)))
      if (min > cap) {
        expect(Either.isLeft(result) && result.left.reason).toBe("MemoryTooLarge")
        return
      }
      if (Either.isLeft(result)) throw new Error(`unexpected failure: ${result.left.message}`)
      const capped = result.right
      expect(Wasm.validate(capped)).toBe(true)
      const max = Math.min(declaredMax ?? Infinity, cap)
      expect(Effect.runSync(memoriesOf(capped))).toEqual([{ imported, min, max, shared }])
      // Capping twice changes nothing more.
      expect(Effect.runSync(capMemory(capped, cap))).toEqual(capped)
    },
    { fastCheck: { numRuns: 200 } }
  )
})

describe("WASM_PAGE_BYTES", () => {
  it("is 64 KiB", () => {
    expect(WASM_PAGE_BYTES).toBe(64 * 1024)
  })
})

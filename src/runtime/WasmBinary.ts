/**
 * Pure reading and patching of WebAssembly binaries: cap linear memory growth and list a module's
 * imports, exports and memories without compiling it.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

/** Size of one WebAssembly linear-memory page in bytes. */
export const WASM_PAGE_BYTES = 65536

/** Largest page count a 32-bit linear memory can have (4 GiB). */
const MAX_WASM32_PAGES = 65536

/** Why a wasm binary could not be read or patched. */
export class WasmBinaryError extends Schema.TaggedError<WasmBinaryError>()("WasmBinaryError", {
  reason: Schema.Literal("Malformed", "MemoryTooLarge", "Unsupported"),
  message: Schema.String
}) {}

/** The kind of an imported or exported item. */
export type WasmExternKind = "function" | "table" | "memory" | "global" | "tag"

/** One entry of the import section. */
export interface WasmImport {
  readonly module: string
  readonly name: string
  readonly kind: WasmExternKind
}

/** One entry of the export section. */
export interface WasmExport {
  readonly name: string
  readonly kind: WasmExternKind
}

/** A linear memory, in memory index order (imported memories first). Sizes are in pages. */
export interface WasmMemory {
  readonly imported: boolean
  readonly min: number
  readonly max: number | undefined
  readonly shared: boolean
}

/** What a module imports, exports and declares, read straight from the binary. */
export interface WasmShape {
  readonly imports: ReadonlyArray<WasmImport>
  readonly exports: ReadonlyArray<WasmExport>
  readonly memories: ReadonlyArray<WasmMemory>
  readonly hasStart: boolean
}

type Reason = WasmBinaryError["reason"]

// Thrown inside the parser only; `run` turns it into a typed failure so the public API never throws.
class ParseFailure {
  constructor(
    readonly reason: Reason,
    readonly message: string
  ) {}
}

const fail = (reason: Reason, message: string): never => {
  throw new ParseFailure(reason, message)
}

const hex = (n: number): string => `0x${n.toString(16).padStart(2, "0")}`

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

const KINDS: ReadonlyArray<WasmExternKind> = ["function", "table", "memory", "global", "tag"]

/** Bounds-checked cursor over `buf[pos, end)`; offsets in messages are absolute in the module. */
class Reader {
  constructor(
    readonly buf: Uint8Array,
    public pos: number,
    readonly end: number
  ) {}

  get done(): boolean {
    return this.pos >= this.end
  }

  malformed(what: string, at: number = this.pos): never {
    return fail("Malformed", `malformed wasm: ${what} at byte offset ${at}`)
  }

  u8(what: string): number {
    if (this.pos >= this.end) return this.malformed(`unexpected end of ${what}`)
    return this.buf[this.pos++]!
  }

  u32(what: string): number {
    const start = this.pos
    let result = 0
    for (let i = 0; i < 5; i++) {
      const b = this.u8(what)
      // The fifth byte carries bits 28..31 only; anything more is overflow or an over-long encoding.
      if (i === 4 && (b & 0xf0) !== 0) return this.malformed(`invalid u32 LEB128 for ${what}`, start)
      result += (b & 0x7f) * 2 ** (7 * i)
      if ((b & 0x80) === 0) return result
    }
    return this.malformed(`invalid u32 LEB128 for ${what}`, start)
  }

  /** Skips a LEB128 of at most `maxBytes` bytes (s33 heap types, u64 table64 limits). */
  skipLeb(maxBytes: number, what: string): void {
    const start = this.pos
    for (let i = 0; i < maxBytes; i++) {
      if ((this.u8(what) & 0x80) === 0) return
    }
    this.malformed(`over-long LEB128 for ${what}`, start)
  }

  skip(n: number, what: string): void {
    if (n > this.end - this.pos) this.malformed(`${what} runs past its end (${n} bytes)`)
    this.pos += n
  }

  name(what: string): string {
    const len = this.u32(`${what} length`)
    const start = this.pos
    this.skip(len, what)
    try {
      return utf8.decode(this.buf.subarray(start, this.pos))
    } catch {
      return this.malformed(`invalid UTF-8 in ${what}`, start)
    }
  }

  expectEnd(what: string): void {
    if (this.pos !== this.end) this.malformed(`${what} has ${this.end - this.pos} unexpected trailing bytes`)
  }
}

interface Section {
  readonly id: number
  /** Offset of the id byte. */
  readonly start: number
  readonly contentStart: number
  readonly end: number
}

const readSections = (bytes: Uint8Array): ReadonlyArray<Section> => {
  if (bytes.length < 8 || bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    return fail("Malformed", "malformed wasm: missing \\0asm magic header at byte offset 0")
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    const version = Array.from(bytes.subarray(4, 8), hex).join(" ")
    return fail(
      "Unsupported",
      `unsupported wasm binary version ${version}: only core modules (version 1) are supported`
    )
  }
  const r = new Reader(bytes, 8, bytes.length)
  const sections: Array<Section> = []
  while (!r.done) {
    const start = r.pos
    const id = r.u8("section id")
    const size = r.u32(`section ${id} size`)
    const contentStart = r.pos
    r.skip(size, `section ${id}`)
    sections.push({ id, start, contentStart, end: r.pos })
  }
  return sections
}

const sectionReader = (bytes: Uint8Array, s: Section): Reader => new Reader(bytes, s.contentStart, s.end)

interface MemoryLimits {
  /** Byte range of the encoded limits, for in-place replacement. */
  readonly start: number
  readonly end: number
  readonly min: number
  readonly max: number | undefined
  readonly shared: boolean
}

const readMemoryLimits = (r: Reader): MemoryLimits => {
  const start = r.pos
  const flags = r.u8("memory limits")
  if ((flags & ~0x0f) !== 0) r.malformed(`invalid memory limits flags ${hex(flags)}`, start)
  if ((flags & 0x04) !== 0)
    fail("Unsupported", `memory64 is not supported (memory limits at byte offset ${start})`)
  if ((flags & 0x08) !== 0) {
    fail("Unsupported", `custom memory page sizes are not supported (memory limits at byte offset ${start})`)
  }
  const min = r.u32("memory minimum")
  const max = (flags & 0x01) !== 0 ? r.u32("memory maximum") : undefined
  return { start, end: r.pos, min, max, shared: (flags & 0x02) !== 0 }
}

const skipTableLimits = (r: Reader): void => {
  const start = r.pos
  const flags = r.u8("table limits")
  if ((flags & ~0x07) !== 0) r.malformed(`invalid table limits flags ${hex(flags)}`, start)
  // table64 limits are u64; we never interpret them, only step over them.
  const width = (flags & 0x04) !== 0 ? 10 : 5
  r.skipLeb(width, "table minimum")
  if ((flags & 0x01) !== 0) r.skipLeb(width, "table maximum")
}

/** A value or reference type: one byte, or `(ref null? ht)` = 0x63/0x64 followed by an s33 heap type. */
const skipValType = (r: Reader, what: string): void => {
  const b = r.u8(what)
  if (b === 0x63 || b === 0x64) r.skipLeb(5, `${what} heap type`)
}

interface ImportEntry extends WasmImport {
  readonly memory: MemoryLimits | undefined
}

const readImport = (r: Reader): ImportEntry => {
  const module = r.name("import module name")
  const name = r.name("import field name")
  const kindAt = r.pos
  const kindByte = r.u8("import kind")
  let memory: MemoryLimits | undefined
  switch (kindByte) {
    case 0x00:
      r.u32("imported function type index")
      break
    case 0x01:
      skipValType(r, "imported table element type")
      skipTableLimits(r)
      break
    case 0x02:
      memory = readMemoryLimits(r)
      break
    case 0x03:
      skipValType(r, "imported global type")
      r.u8("imported global mutability")
      break
    case 0x04:
      r.u8("imported tag attribute")
      r.u32("imported tag type index")
      break
    default:
      return r.malformed(`unknown import kind ${hex(kindByte)}`, kindAt)
  }
  return { module, name, kind: KINDS[kindByte]!, memory }
}

const readImports = (bytes: Uint8Array, s: Section): ReadonlyArray<ImportEntry> => {
  const r = sectionReader(bytes, s)
  const count = r.u32("import count")
  const entries: Array<ImportEntry> = []
  // Every entry consumes at least one byte, so a bogus count fails at the section end instead of looping.
  for (let i = 0; i < count; i++) entries.push(readImport(r))
  r.expectEnd("import section")
  return entries
}

const readMemories = (bytes: Uint8Array, s: Section): ReadonlyArray<MemoryLimits> => {
  const r = sectionReader(bytes, s)
  const count = r.u32("memory count")
  const memories: Array<MemoryLimits> = []
  for (let i = 0; i < count; i++) memories.push(readMemoryLimits(r))
  r.expectEnd("memory section")
  return memories
}

const pushU32 = (out: Array<number>, value: number): void => {
  let v = value
  do {
    const b = v & 0x7f
    v = Math.floor(v / 128)
    out.push(v === 0 ? b : b | 0x80)
  } while (v !== 0)
}

const encodeU32 = (value: number): Uint8Array => {
  const out: Array<number> = []
  pushU32(out, value)
  return Uint8Array.from(out)
}

const formatPages = (pages: number): string => {
  const mib = Number(((pages * WASM_PAGE_BYTES) / (1024 * 1024)).toFixed(2))
  return `${pages} pages (${mib} MiB)`
}

/** New encoded limits for `m`, or undefined when it already satisfies the cap. */
const cappedLimits = (m: MemoryLimits, maxPages: number): Uint8Array | undefined => {
  if (m.min > maxPages) {
    return fail(
      "MemoryTooLarge",
      `module declares an initial memory of ${formatPages(m.min)} but the limit is ${formatPages(maxPages)}; ` +
        "raise the plugin's memory limit"
    )
  }
  const max = Math.min(m.max ?? Infinity, maxPages)
  if (m.max === max) return undefined
  const out: Array<number> = [m.shared ? 0x03 : 0x01]
  pushU32(out, m.min)
  pushU32(out, max)
  return Uint8Array.from(out)
}

const concat = (chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  let total = 0
  for (const c of chunks) total += c.length
  const out = new Uint8Array(total)
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.length
  }
  return out
}

/** Re-encodes a section, replacing the given byte ranges and copying everything else as slices. */
const patchSection = (
  bytes: Uint8Array,
  s: Section,
  patches: ReadonlyArray<{ readonly start: number; readonly end: number; readonly with: Uint8Array }>
): Array<Uint8Array> => {
  const content: Array<Uint8Array> = []
  let from = s.contentStart
  for (const p of patches) {
    content.push(bytes.subarray(from, p.start), p.with)
    from = p.end
  }
  content.push(bytes.subarray(from, s.end))
  let size = 0
  for (const c of content) size += c.length
  return [Uint8Array.of(s.id), encodeU32(size), ...content]
}

const capMemorySync = (bytes: Uint8Array, maxPages: number): Uint8Array => {
  const cap = Number.isNaN(maxPages) ? 0 : Math.max(0, Math.min(MAX_WASM32_PAGES, Math.floor(maxPages)))
  const chunks: Array<Uint8Array> = []
  let copiedUpTo = 0
  for (const s of readSections(bytes)) {
    let limits: ReadonlyArray<MemoryLimits>
    if (s.id === 2) {
      limits = readImports(bytes, s).flatMap((e) => (e.memory === undefined ? [] : [e.memory]))
    } else if (s.id === 5) {
      limits = readMemories(bytes, s)
    } else {
      continue
    }
    const patches = limits.flatMap((m) => {
      const replacement = cappedLimits(m, cap)
      return replacement === undefined ? [] : [{ start: m.start, end: m.end, with: replacement }]
    })
    if (patches.length === 0) continue
    chunks.push(bytes.subarray(copiedUpTo, s.start), ...patchSection(bytes, s, patches))
    copiedUpTo = s.end
  }
  if (chunks.length === 0) return bytes
  chunks.push(bytes.subarray(copiedUpTo))
  return concat(chunks)
}

const inspectSync = (bytes: Uint8Array): WasmShape => {
  const imports: Array<WasmImport> = []
  const exports: Array<WasmExport> = []
  const importedMemories: Array<WasmMemory> = []
  const declaredMemories: Array<WasmMemory> = []
  let hasStart = false
  for (const s of readSections(bytes)) {
    switch (s.id) {
      case 2:
        for (const e of readImports(bytes, s)) {
          imports.push({ module: e.module, name: e.name, kind: e.kind })
          if (e.memory !== undefined) {
            const { min, max, shared } = e.memory
            importedMemories.push({ imported: true, min, max, shared })
          }
        }
        break
      case 5:
        for (const { min, max, shared } of readMemories(bytes, s)) {
          declaredMemories.push({ imported: false, min, max, shared })
        }
        break
      case 7: {
        const r = sectionReader(bytes, s)
        const count = r.u32("export count")
        for (let i = 0; i < count; i++) {
          const name = r.name("export name")
          const kindAt = r.pos
          const kindByte = r.u8("export kind")
          const kind = KINDS[kindByte] ?? r.malformed(`unknown export kind ${hex(kindByte)}`, kindAt)
          r.u32("export index")
          exports.push({ name, kind })
        }
        r.expectEnd("export section")
        break
      }
      case 8: {
        const r = sectionReader(bytes, s)
        r.u32("start function index")
        r.expectEnd("start section")
        hasStart = true
        break
      }
    }
  }
  return { imports, exports, memories: [...importedMemories, ...declaredMemories], hasStart }
}

const run = <A>(f: () => A): Effect.Effect<A, WasmBinaryError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(f())
    } catch (e) {
      if (e instanceof ParseFailure)
        return Effect.fail(new WasmBinaryError({ reason: e.reason, message: e.message }))
      return Effect.die(e)
    }
  })

/**
 * Rewrites the limits of every linear memory (declared and imported) so its maximum is
 * `min(declaredMax, maxPages)`, keeping the shared flag. Only the import and memory sections are
 * re-encoded; every other byte is copied. Returns the input itself when nothing needs to change.
 * `maxPages` is floored and clamped to [0, 65536] (NaN counts as 0). Fails with `MemoryTooLarge`
 * when a memory's initial size already exceeds the cap.
 */
export const capMemory = (bytes: Uint8Array, maxPages: number): Effect.Effect<Uint8Array, WasmBinaryError> =>
  run(() => capMemorySync(bytes, maxPages))

/** Lists imports, exports, memories and whether a start function exists, parsing the binary directly. */
export const inspect = (bytes: Uint8Array): Effect.Effect<WasmShape, WasmBinaryError> =>
  run(() => inspectSync(bytes))

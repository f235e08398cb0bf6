/**
 * The Extism kernel (`extism:host/env`) as seen by one plugin instance: host-side memory blocks,
 * input, output, error, config, vars and logging. We run our own instead of the SDK's because the
 * SDK discards the export's return code and offers no per-call limits (see
 * docs/decisions/0001-own-extism-kernel.md).
 */
import { utf8Cut } from "./GuestLog.js"
import type { KernelLimits } from "../abi/protocol.js"

/** Thrown from a host function to unwind the guest: the call fails with this kind. */
export class KernelAbort extends Error {
  constructor(
    readonly kind: "memory" | "outputTooLarge" | "procExit",
    message: string,
    readonly code?: number
  ) {
    super(message)
  }
}

/**
 * A handle is an i64, kept positive: `[0][generation: 7][slot: 24][offset: 32]`. Slot 0 is the null
 * handle. A freed slot is reused with the next generation, so a stale handle no longer matches its
 * slot and reads as freed; a slot is retired once its generations run out, so a stale handle can
 * never alias a later block of the same call.
 */
const OFFSET_BITS = 32n
const SLOT_MASK = 0xff_ffff
const MAX_SLOTS = SLOT_MASK + 1
const MAX_GENERATION = 0x7f
const MAX_BLOCK_BYTES = 2 ** 32 - 1

/** What one block costs against the host-memory cap besides its bytes: even `alloc(0)` is not free. */
export const BLOCK_OVERHEAD_BYTES = 256
/** Blocks one call may hold at once (each is a JS object on the worker's heap). */
export const MAX_LIVE_BLOCKS = 256 * 1024
/** What one var costs besides its key and value bytes. */
export const VAR_OVERHEAD_BYTES = 64
/** The longest error text (`error_set`) passed on; the rest is cut off. */
export const MAX_ERROR_BYTES = 64 * 1024

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const EMPTY = new Uint8Array(0)
// u64 loads and stores go through this scratch: a DataView per block would make V8 move every small
// block off-heap (`.buffer`), which costs more than the rest of an alloc/store/load/free round.
const scratch = new Uint8Array(8)
const scratchView = new DataView(scratch.buffer)

const handleOf = (slot: number, generation: number): bigint =>
  BigInt(generation * MAX_SLOTS + slot) << OFFSET_BITS
const offsetOf = (handle: bigint): number => Number(BigInt.asUintN(32, handle))

/** Receives a guest log line's bytes (Extism level); the sink filters, cuts and budgets. */
export type LogSink = (level: number, line: Uint8Array) => void

export class Kernel {
  // Per slot: the block (null when free or retired) and its generation.
  private blocks: Array<Uint8Array | null> = [null]
  private generations: Array<number> = [0]
  /** Free slots, reused last-freed first. */
  private freeSlots: Array<number> = []
  private liveBlocks = 0
  private hostBytes = 0
  private input: Uint8Array = EMPTY
  private inputView: DataView<ArrayBufferLike> = new DataView(EMPTY.buffer)
  private outputHandle = 0n
  private outputLength = 0
  private errorHandle = 0n
  private readonly vars = new Map<string, Uint8Array>()
  private varBytes = 0

  constructor(
    private readonly config: Readonly<Record<string, string>>,
    private readonly limits: KernelLimits,
    private readonly logLevel: number,
    private readonly log: LogSink
  ) {}

  /** Prepares a call: fresh blocks, the given input, no output or error. Vars persist, as in Extism. */
  begin(input: Uint8Array): void {
    this.reset()
    // The input is also block 1 so that PDKs reading it through `input_offset` + `load_u8` work.
    this.input = input
    this.inputView = new DataView(input.buffer, input.byteOffset, input.byteLength)
    this.place(input)
    // The host made the input, not the plugin: it does not count against the plugin's caps.
    this.liveBlocks = 0
    this.hostBytes = 0
  }

  /** Releases the call's blocks so an idle instance holds no host memory. */
  end(): void {
    this.reset()
    this.input = EMPTY
    this.inputView = new DataView(EMPTY.buffer)
  }

  private reset(): void {
    this.blocks = [null]
    this.generations = [0]
    this.freeSlots = []
    this.liveBlocks = 0
    this.hostBytes = 0
    this.outputHandle = 0n
    this.outputLength = 0
    this.errorHandle = 0n
  }

  output(): Uint8Array | null {
    const block = this.blockOf(this.outputHandle)
    return block === null ? null : block.slice(0, this.outputLength)
  }

  error(): string | null {
    const block = this.blockOf(this.errorHandle)
    if (block === null) return null
    if (block.byteLength <= MAX_ERROR_BYTES) return decoder.decode(block)
    const keep = utf8Cut(block, MAX_ERROR_BYTES)
    return `${decoder.decode(block.subarray(0, keep))} … [truncated ${block.byteLength - keep} bytes]`
  }

  /** The block a handle names, or null for handle 0, a freed block or a stale handle. */
  private blockOf(handle: bigint): Uint8Array | null {
    const high = Number(handle >> OFFSET_BITS)
    const slot = high & SLOT_MASK
    const block = this.blocks[slot]
    if (block == null || this.generations[slot] !== high >>> 24) return null
    return block
  }

  /** Reads a block's bytes from the handle's offset; handle 0, a freed or stale block reads as empty. */
  read(handle: bigint): Uint8Array {
    const block = this.blockOf(handle)
    return block === null ? EMPTY : block.subarray(offsetOf(handle))
  }

  readString(handle: bigint): string {
    return decoder.decode(this.read(handle))
  }

  alloc(size: number): bigint {
    if (size < 0 || !Number.isSafeInteger(size) || size > MAX_BLOCK_BYTES) {
      throw new KernelAbort("memory", `alloc of an invalid size (${size})`)
    }
    const cost = size + BLOCK_OVERHEAD_BYTES
    if (this.hostBytes + cost > this.limits.maxHostMemoryBytes) {
      throw new KernelAbort(
        "memory",
        `the plugin allocated more than ${this.limits.maxHostMemoryBytes} bytes of host memory in one call (each block counts its size + ${BLOCK_OVERHEAD_BYTES} bytes); free blocks it no longer needs`
      )
    }
    if (this.liveBlocks >= MAX_LIVE_BLOCKS) {
      throw new KernelAbort(
        "memory",
        `the plugin holds more than ${MAX_LIVE_BLOCKS} Extism memory blocks at once in one call; free blocks it no longer needs`
      )
    }
    return this.place(size === 0 ? EMPTY : new Uint8Array(size))
  }

  private place(block: Uint8Array): bigint {
    let slot = this.freeSlots.pop()
    if (slot === undefined) {
      slot = this.blocks.length
      if (slot >= MAX_SLOTS) {
        throw new KernelAbort("memory", `the plugin made more than ${MAX_SLOTS} live Extism memory blocks`)
      }
      this.generations.push(0)
    } else {
      this.generations[slot]! += 1
    }
    this.blocks[slot] = block
    this.liveBlocks++
    this.hostBytes += block.byteLength + BLOCK_OVERHEAD_BYTES
    return handleOf(slot, this.generations[slot]!)
  }

  store(bytes: Uint8Array): bigint {
    const handle = this.alloc(bytes.byteLength)
    this.blockOf(handle)!.set(bytes)
    return handle
  }

  storeString(text: string): bigint {
    return this.store(encoder.encode(text))
  }

  private free(handle: bigint): void {
    const high = Number(handle >> OFFSET_BITS)
    const slot = high & SLOT_MASK
    const block = this.blocks[slot]
    // Handle 0, a double free or a stale handle: nothing to do.
    if (slot === 0 || block == null || this.generations[slot] !== high >>> 24) return
    if (slot !== 1 || this.generations[slot] !== 0) {
      this.hostBytes -= block.byteLength + BLOCK_OVERHEAD_BYTES
      this.liveBlocks--
    }
    this.blocks[slot] = null
    // A slot whose generations ran out is retired: reusing it could make a stale handle match.
    if (this.generations[slot]! < MAX_GENERATION) this.freeSlots.push(slot)
  }

  /** The block of the last `locate`. */
  private located: Uint8Array = EMPTY

  /**
   * Finds the block of a handle for a load or store of `width` bytes and returns the offset in it
   * (the block is left in `located`); an invalid handle or an access out of bounds traps.
   */
  private locate(handle: bigint, width: number): number {
    const high = Number(handle >> OFFSET_BITS)
    const slot = high & SLOT_MASK
    const block = this.blocks[slot]
    if (block == null || this.generations[slot] !== high >>> 24) {
      throw new RangeError(`invalid Extism memory handle 0x${handle.toString(16)}`)
    }
    const offset = Number(handle - (BigInt(high) << OFFSET_BITS))
    if (offset + width > block.byteLength) {
      throw new RangeError(`Extism memory access out of bounds at 0x${handle.toString(16)}`)
    }
    this.located = block
    return offset
  }

  private loadU64(handle: bigint): bigint {
    const offset = this.locate(handle, 8)
    const block = this.located
    for (let i = 0; i < 8; i++) scratch[i] = block[offset + i]!
    return scratchView.getBigUint64(0, true)
  }

  private storeU64(handle: bigint, value: bigint): void {
    const offset = this.locate(handle, 8)
    const block = this.located
    scratchView.setBigUint64(0, value, true)
    for (let i = 0; i < 8; i++) block[offset + i] = scratch[i]!
  }

  /** The import object for `extism:host/env` (HTTP functions are added by the worker). */
  imports(): Record<string, (...args: Array<never>) => unknown> {
    return {
      alloc: (n: bigint) => this.alloc(Number(n)),
      free: (handle: bigint) => this.free(handle),
      length: (handle: bigint) => BigInt(this.blockOf(handle)?.byteLength ?? 0),
      length_unsafe: (handle: bigint) => BigInt(this.blockOf(handle)?.byteLength ?? 0),
      load_u8: (handle: bigint) => {
        const offset = this.locate(handle, 1)
        return this.located[offset]!
      },
      load_u64: (handle: bigint) => this.loadU64(handle),
      store_u8: (handle: bigint, value: number) => {
        const offset = this.locate(handle, 1)
        this.located[offset] = value
      },
      store_u64: (handle: bigint, value: bigint) => this.storeU64(handle, value),
      input_offset: () => handleOf(1, 0),
      input_length: () => BigInt(this.input.byteLength),
      input_load_u8: (offset: bigint) => this.inputView.getUint8(offsetOf(offset)),
      input_load_u64: (offset: bigint) => this.inputView.getBigUint64(offsetOf(offset), true),
      output_set: (handle: bigint, length: bigint) => {
        const block = this.blockOf(handle)
        if (block === null) throw new RangeError("output_set on an invalid handle")
        const size = Number(length)
        if (size > this.limits.maxOutputBytes) {
          throw new KernelAbort(
            "outputTooLarge",
            `the plugin's output is ${size} bytes; the limit is ${this.limits.maxOutputBytes}`
          )
        }
        if (size > block.byteLength) throw new RangeError("output_set length is longer than its block")
        this.outputHandle = handle - BigInt(offsetOf(handle))
        this.outputLength = size
      },
      error_set: (handle: bigint) => {
        if (this.blockOf(handle) === null) throw new RangeError("error_set on an invalid handle")
        this.errorHandle = handle - BigInt(offsetOf(handle))
      },
      error_get: () => (this.blockOf(this.errorHandle) === null ? 0n : this.errorHandle),
      config_get: (handle: bigint) => {
        const key = this.readString(handle)
        const value = Object.prototype.hasOwnProperty.call(this.config, key) ? this.config[key] : undefined
        return value === undefined ? 0n : this.storeString(value)
      },
      var_get: (handle: bigint) => {
        const value = this.vars.get(this.readString(handle))
        return value === undefined ? 0n : this.store(value)
      },
      var_set: (keyHandle: bigint, valueHandle: bigint) => this.setVar(keyHandle, valueHandle),
      log_trace: (handle: bigint) => this.emit(0, handle),
      log_debug: (handle: bigint) => this.emit(1, handle),
      log_info: (handle: bigint) => this.emit(2, handle),
      log_warn: (handle: bigint) => this.emit(3, handle),
      log_error: (handle: bigint) => this.emit(4, handle),
      get_log_level: () => this.logLevel
    }
  }

  /** Vars count their key bytes, value bytes and a fixed overhead against `maxVarBytes`. */
  private setVar(keyHandle: bigint, valueHandle: bigint): void {
    const keyBytes = this.read(keyHandle)
    const limit = this.limits.maxVarBytes
    const tooMuch = (bytes: number) =>
      new KernelAbort(
        "memory",
        `the plugin's vars would take ${bytes} bytes (keys + values + ${VAR_OVERHEAD_BYTES} bytes each), over the limit of ${limit} bytes; delete vars it no longer needs, or raise maxVarBytes in RuntimeOptions`
      )
    // Refuse an oversized key before decoding it.
    if (keyBytes.byteLength + VAR_OVERHEAD_BYTES > limit && valueHandle !== 0n) {
      throw tooMuch(this.varBytes + keyBytes.byteLength + VAR_OVERHEAD_BYTES)
    }
    const key = decoder.decode(keyBytes)
    const keyCost = encoder.encode(key).byteLength + VAR_OVERHEAD_BYTES
    const previous = this.vars.get(key)
    const previousCost = previous === undefined ? 0 : keyCost + previous.byteLength
    if (valueHandle === 0n) {
      if (previous !== undefined) {
        this.vars.delete(key)
        this.varBytes -= previousCost
      }
      return
    }
    const source = this.read(valueHandle)
    const next = this.varBytes - previousCost + keyCost + source.byteLength
    if (next > limit) throw tooMuch(next)
    this.varBytes = next
    this.vars.set(key, source.byteLength === 0 ? EMPTY : source.slice())
  }

  private emit(level: number, handle: bigint): void {
    if (level >= this.logLevel) this.log(level, this.read(handle))
  }
}

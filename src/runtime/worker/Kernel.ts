/**
 * The Extism kernel (`extism:host/env`) as seen by one plugin instance: host-side memory blocks,
 * input, output, error, config, vars and logging. We run our own instead of the SDK's because the
 * SDK discards the export's return code and offers no per-call limits (see
 * docs/decisions/0001-own-extism-kernel.md).
 */
import type { KernelLimits } from "./protocol.js"

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

const OFFSET_BITS = 48n
const OFFSET_MASK = (1n << OFFSET_BITS) - 1n

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const blockIndex = (handle: bigint): number => Number(handle >> OFFSET_BITS)
const blockOffset = (handle: bigint): number => Number(handle & OFFSET_MASK)
const handleOf = (index: number): bigint => BigInt(index) << OFFSET_BITS

export type LogSink = (level: number, message: string) => void

export class Kernel {
  // Index 0 is the null handle and never holds data.
  private blocks: Array<Uint8Array | null> = [null]
  private views: Array<DataView | null> = [null]
  private hostBytes = 0
  private input: Uint8Array = new Uint8Array(0)
  private inputView = new DataView(this.input.buffer)
  private outputIndex = 0
  private outputLength = 0
  private errorIndex = 0
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
    // The input is also block 1 so that PDKs reading it through `input_offset` + `load_u8` work.
    this.blocks = [null, input]
    this.views = [null, new DataView(input.buffer, input.byteOffset, input.byteLength)]
    this.hostBytes = 0
    this.input = input
    this.inputView = new DataView(input.buffer, input.byteOffset, input.byteLength)
    this.outputIndex = 0
    this.outputLength = 0
    this.errorIndex = 0
  }

  /** Releases the call's blocks so an idle instance holds no host memory. */
  end(): void {
    this.blocks = [null]
    this.views = [null]
    this.hostBytes = 0
    this.input = new Uint8Array(0)
  }

  output(): Uint8Array | null {
    const block = this.blocks[this.outputIndex]
    if (this.outputIndex === 0 || block == null) return null
    return block.slice(0, this.outputLength)
  }

  error(): string | null {
    const block = this.blocks[this.errorIndex]
    if (this.errorIndex === 0 || block == null) return null
    return decoder.decode(block)
  }

  /** Reads a block's bytes; handle 0 or a freed block reads as empty. */
  read(handle: bigint): Uint8Array {
    const block = this.blocks[blockIndex(handle)]
    if (block == null) return new Uint8Array(0)
    return block.subarray(blockOffset(handle))
  }

  readString(handle: bigint): string {
    return decoder.decode(this.read(handle))
  }

  alloc(size: number): bigint {
    if (size < 0 || !Number.isSafeInteger(size)) {
      throw new KernelAbort("memory", `alloc of an invalid size (${size})`)
    }
    if (this.hostBytes + size > this.limits.maxHostMemoryBytes) {
      throw new KernelAbort(
        "memory",
        `the plugin allocated more than ${this.limits.maxHostMemoryBytes} bytes of host memory in one call`
      )
    }
    const block = new Uint8Array(size)
    this.hostBytes += size
    this.blocks.push(block)
    this.views.push(new DataView(block.buffer))
    return handleOf(this.blocks.length - 1)
  }

  store(bytes: Uint8Array): bigint {
    const handle = this.alloc(bytes.byteLength)
    this.blocks[this.blocks.length - 1]!.set(bytes)
    return handle
  }

  storeString(text: string): bigint {
    return this.store(encoder.encode(text))
  }

  private free(handle: bigint): void {
    const index = blockIndex(handle)
    const block = this.blocks[index]
    if (index === 0 || block == null) return
    this.hostBytes -= block.byteLength
    this.blocks[index] = null
    this.views[index] = null
  }

  private view(handle: bigint): DataView {
    const view = this.views[blockIndex(handle)]
    if (view == null) throw new RangeError(`invalid Extism memory handle 0x${handle.toString(16)}`)
    return view
  }

  /** The import object for `extism:host/env` (HTTP functions are added by the worker). */
  imports(): Record<string, (...args: Array<never>) => unknown> {
    return {
      alloc: (n: bigint) => this.alloc(Number(n)),
      free: (handle: bigint) => this.free(handle),
      length: (handle: bigint) => BigInt(this.blocks[blockIndex(handle)]?.byteLength ?? 0),
      length_unsafe: (handle: bigint) => BigInt(this.blocks[blockIndex(handle)]?.byteLength ?? 0),
      load_u8: (handle: bigint) => this.view(handle).getUint8(blockOffset(handle)),
      load_u64: (handle: bigint) => this.view(handle).getBigUint64(blockOffset(handle), true),
      store_u8: (handle: bigint, value: number) => this.view(handle).setUint8(blockOffset(handle), value),
      store_u64: (handle: bigint, value: bigint) =>
        this.view(handle).setBigUint64(blockOffset(handle), value, true),
      input_offset: () => handleOf(1),
      input_length: () => BigInt(this.input.byteLength),
      input_load_u8: (offset: bigint) => this.inputView.getUint8(Number(offset & OFFSET_MASK)),
      input_load_u64: (offset: bigint) => this.inputView.getBigUint64(Number(offset & OFFSET_MASK), true),
      output_set: (handle: bigint, length: bigint) => {
        const index = blockIndex(handle)
        const block = this.blocks[index]
        if (block == null) throw new RangeError("output_set on an invalid handle")
        const size = Number(length)
        if (size > this.limits.maxOutputBytes) {
          throw new KernelAbort(
            "outputTooLarge",
            `the plugin's output is ${size} bytes; the limit is ${this.limits.maxOutputBytes}`
          )
        }
        if (size > block.byteLength) throw new RangeError("output_set length is longer than its block")
        this.outputIndex = index
        this.outputLength = size
      },
      error_set: (handle: bigint) => {
        const index = blockIndex(handle)
        if (this.blocks[index] == null) throw new RangeError("error_set on an invalid handle")
        this.errorIndex = index
      },
      error_get: () => (this.errorIndex === 0 ? 0n : handleOf(this.errorIndex)),
      config_get: (handle: bigint) => {
        const key = this.readString(handle)
        const value = Object.prototype.hasOwnProperty.call(this.config, key) ? this.config[key] : undefined
        return value === undefined ? 0n : this.storeString(value)
      },
      var_get: (handle: bigint) => {
        const value = this.vars.get(this.readString(handle))
        return value === undefined ? 0n : this.store(value)
      },
      var_set: (keyHandle: bigint, valueHandle: bigint) => {
        const key = this.readString(keyHandle)
        const previous = this.vars.get(key)?.byteLength ?? 0
        if (valueHandle === 0n) {
          this.vars.delete(key)
          this.varBytes -= previous
          return
        }
        const value = this.read(valueHandle).slice()
        const next = this.varBytes - previous + value.byteLength
        if (next > this.limits.maxVarBytes) {
          throw new KernelAbort("memory", `plugin vars exceed ${this.limits.maxVarBytes} bytes`)
        }
        this.varBytes = next
        this.vars.set(key, value)
      },
      log_trace: (handle: bigint) => this.emit(0, handle),
      log_debug: (handle: bigint) => this.emit(1, handle),
      log_info: (handle: bigint) => this.emit(2, handle),
      log_warn: (handle: bigint) => this.emit(3, handle),
      log_error: (handle: bigint) => this.emit(4, handle),
      get_log_level: () => this.logLevel
    }
  }

  private emit(level: number, handle: bigint): void {
    if (level >= this.logLevel) this.log(level, this.readString(handle))
  }
}

/** Names a plugin may import from `extism:host/env` without any permission. */
export const kernelFunctionNames: ReadonlySet<string> = new Set(
  Object.keys(
    new Kernel(
      {},
      { maxHostMemoryBytes: 0, maxOutputBytes: 0, maxVarBytes: 0, maxLinearMemoryBytes: 0 },
      5,
      () => {}
    ).imports()
  )
)

/** Extism's built-in HTTP functions in `extism:host/env`, granted by the `http` permission. */
export const kernelHttpFunctionNames: ReadonlySet<string> = new Set([
  "http_request",
  "http_status_code",
  "http_headers"
])

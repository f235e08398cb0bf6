/**
 * Guest output on its way to the main thread: Extism `log_*`, WASI stdout/stderr lines and the
 * engine's own lines about the guest. Everything is bounded here, in the worker, before it crosses
 * a thread: lines below the plugin's level are ignored, each line is cut to `maxLineBytes`, lines
 * and bytes pass a token bucket shared by every instance of the plugin, and what passes travels in
 * batches. Dropped output is counted and reported as one summary line at most once a second.
 */
import type { LogBudget, LogBudgetSpec, LogLine } from "../abi/protocol.js"

const decoder = new TextDecoder()
const encoder = new TextEncoder()

/** A dropped-output summary at most this often per plugin and worker. */
export const SUMMARY_INTERVAL_MS = 1000
/** Lines wait for company at most this long when the plugin writes a lot (checked on the next line). */
const BATCH_MS = 10
const BATCH_LINES = 64
const BATCH_BYTES = 64 * 1024
/** What the truncation marker is charged against the byte budget. */
const MARKER_BYTES = 32

/** A length ≤ `max` that does not split a UTF-8 sequence of `bytes`. */
export const utf8Cut = (bytes: Uint8Array, max: number): number => {
  if (bytes.length <= max) return bytes.length
  let cut = max
  // Back off over continuation bytes (at most three) to the start of the character crossing `max`.
  while (cut > max - 3 && cut > 0 && (bytes[cut]! & 0xc0) === 0x80) cut--
  return cut
}

/** Nanoseconds one unit costs at `perSecond` (Infinity: never; 0: free). */
const nsPerUnit = (perSecond: number): number => (perSecond === 0 ? Infinity : 1e9 / perSecond)

/**
 * One generic-cell-rate bucket in a shared BigInt64 slot holding its theoretical arrival time.
 * Lock-free (one compare-and-swap), so a worker terminated mid-update cannot wedge the others.
 */
const take = (
  state: BigInt64Array,
  slot: number,
  unitNs: number,
  toleranceNs: number,
  units: number,
  now: bigint
): boolean => {
  if (unitNs === 0) return true
  if (unitNs === Infinity) return false
  const cost = BigInt(Math.ceil(units * unitNs))
  for (;;) {
    const tat = Atomics.load(state, slot)
    const next = (tat > now ? tat : now) + cost
    if (Number(next - now) > toleranceNs) return false
    if (Atomics.compareExchange(state, slot, tat, next) === tat) return true
  }
}

const describe = (budget: LogBudget): string =>
  `${budget.linesPerSecond} lines/s (burst ${budget.burstLines}) and ${budget.bytesPerSecond} bytes/s (burst ${budget.burstBytes})`

export class GuestLog {
  private readonly state: BigInt64Array
  private readonly limits: LogBudget
  private readonly lineNs: number
  private readonly byteNs: number
  private readonly lineTolerance: number
  private readonly byteTolerance: number
  private batch: Array<LogLine> = []
  private batchBytes = 0
  private lastPost = -Infinity
  private droppedLines = 0
  private droppedBytes = 0
  private lastSummary = -Infinity

  constructor(
    private readonly pluginId: string,
    /** The plugin's Extism log level: lines below it are ignored. */
    readonly level: number,
    budget: LogBudgetSpec,
    private readonly post: (lines: ReadonlyArray<LogLine>) => void
  ) {
    this.state = new BigInt64Array(budget.state)
    this.limits = budget.limits
    this.lineNs = nsPerUnit(budget.limits.linesPerSecond)
    this.byteNs = nsPerUnit(budget.limits.bytesPerSecond)
    // At least one line must fit in a burst, or nothing would ever pass.
    this.lineTolerance = Math.max(1, budget.limits.burstLines) * this.lineNs
    this.byteTolerance =
      Math.max(budget.limits.burstBytes, budget.limits.maxLineBytes + MARKER_BYTES) * this.byteNs
  }

  /** A complete line of guest output; `alreadyCut` bytes of it were discarded before it got here. */
  write(level: number, bytes: Uint8Array, alreadyCut = 0): void {
    if (level < this.level) return
    const total = bytes.byteLength + alreadyCut
    const keep = utf8Cut(bytes, this.limits.maxLineBytes)
    const cut = total - keep
    const cost = keep + (cut > 0 ? MARKER_BYTES : 0)
    const now = process.hrtime.bigint()
    if (
      !take(this.state, 0, this.lineNs, this.lineTolerance, 1, now) ||
      !take(this.state, 1, this.byteNs, this.byteTolerance, cost, now)
    ) {
      this.droppedLines++
      this.droppedBytes += total
      return
    }
    const text = decoder.decode(bytes.subarray(0, keep))
    const at = performance.now()
    this.summarise(at)
    this.push(level, cut > 0 ? `${text} … [truncated ${cut} bytes]` : text, cost, at)
  }

  /** A line the engine writes about the guest (a WASI host error, a failed `http_request`). */
  text(level: number, message: string): void {
    if (level >= this.level) this.write(level, encoder.encode(message))
  }

  /** Sends what is batched; before a host call, so the main thread sees lines in order. */
  flush(): void {
    if (this.batch.length === 0) return
    const lines = this.batch
    this.batch = []
    this.batchBytes = 0
    this.lastPost = performance.now()
    this.post(lines)
  }

  /** End of a plugin call: report drops (if due) and send everything. */
  endCall(): void {
    this.summarise(performance.now())
    this.flush()
  }

  /** Whether dropped output waits for its summary. */
  get dropsPending(): boolean {
    return this.droppedLines > 0
  }

  private summarise(at: number): void {
    if (this.droppedLines === 0 || at - this.lastSummary < SUMMARY_INTERVAL_MS) return
    this.lastSummary = at
    const message = `plugin ${this.pluginId}: ${this.droppedLines} lines / ${this.droppedBytes} bytes of log output dropped over its budget of ${describe(this.limits)}; raise logBudget in its LoadOptions or in RuntimeOptions if this output is wanted`
    this.droppedLines = 0
    this.droppedBytes = 0
    this.push(3, message, message.length, at)
  }

  private push(level: number, message: string, bytes: number, at: number): void {
    this.batch.push([level, message])
    this.batchBytes += bytes
    // A lone line goes at once; under load lines travel together.
    if (
      this.batch.length >= BATCH_LINES ||
      this.batchBytes >= BATCH_BYTES ||
      at - this.lastPost >= BATCH_MS
    ) {
      this.flush()
    }
  }
}

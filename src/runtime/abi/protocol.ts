/**
 * Messages between the main thread and the execution workers. Kept free of Effect so the worker
 * bundle stays small; the main side decodes nothing here because both ends are our own code.
 */
import type { WasmModule } from "../internal/WasmModule.js"

/** Extism log levels, as numbers the guest sees through `get_log_level`. */
export const LogLevels = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, off: 5 } as const
export type LogLevelName = Exclude<keyof typeof LogLevels, "off">

/** A KV store file the worker may read, and the better-sqlite3 module (absolute path) to read it with. */
export interface LocalKvStore {
  readonly filename: string
  readonly driver: string
}

/** Everything a worker needs to instantiate one loaded plugin. */
export interface PluginSpec {
  readonly key: string
  readonly id: string
  readonly module: WasmModule
  readonly config: Readonly<Record<string, string>>
  /** Names in `extism:host/user` this plugin may import (already permission-checked). */
  readonly userFunctions: ReadonlyArray<string>
  /**
   * Of `userFunctions`, those the worker answers itself from `config`, `localKvStore` or `localCache` (see
   * `LocalHost.ts`); the others cross to the main thread.
   */
  readonly workerFunctions: ReadonlyArray<string>
  /** The plugin's SQLite KV store, which the worker reads over its own connection (see `KvReader.ts`). */
  readonly localKvStore?: LocalKvStore | undefined
  /** The plugin cache's shared index (`host/cache/CacheIndex.ts`), for the worker's copies of entries. */
  readonly localCache?: SharedArrayBuffer | undefined
  /** The engine's time, published at each call (`abi/EngineClock.ts`); present with `localCache`. */
  readonly engineClock?: SharedArrayBuffer | undefined
  /** One Int32 slot per `workerFunctions` entry: calls answered in the worker (see `abi/LocalCounts.ts`). */
  readonly localCounts?: SharedArrayBuffer | undefined
  /** Whether `http_request` & co. in `extism:host/env` reach the host's HTTP service. */
  readonly envHttp: boolean
  readonly logLevel: number
  readonly limits: KernelLimits
  readonly freshInstance: boolean
  /** Host folders the plugin's WASI filesystem sees read-only (empty: no filesystem at all). */
  readonly mounts: ReadonlyArray<Mount>
  /** How much log and stdout/stderr output the plugin may send to the main thread. */
  readonly logBudget: LogBudgetSpec
}

/**
 * Budget of guest output (Extism `log_*`, WASI stdout/stderr, and engine lines about the guest)
 * that may reach the main thread. Lines over the budget are dropped in the worker and reported as
 * one summary line. Rates are per loaded plugin, shared by all its instances on every worker.
 */
export interface LogBudget {
  /** Longest line kept, in UTF-8 bytes; the rest is cut off and replaced by a marker. */
  readonly maxLineBytes: number
  /** Sustained lines per second (0: drop every line; Infinity: no limit). */
  readonly linesPerSecond: number
  /** Lines that may pass at once before the sustained rate applies. */
  readonly burstLines: number
  /** Sustained bytes per second of kept line text. */
  readonly bytesPerSecond: number
  /** Bytes that may pass at once; never less than one full line. */
  readonly burstBytes: number
}

export const defaultLogBudget: LogBudget = {
  maxLineBytes: 4 * 1024,
  linesPerSecond: 200,
  burstLines: 1000,
  bytesPerSecond: 256 * 1024,
  burstBytes: 1024 * 1024
}

/** The budget's settings plus its shared token state (see `GuestLog.ts`). */
export interface LogBudgetSpec {
  readonly limits: LogBudget
  /** Two BigInt64 slots: the theoretical arrival times (ns, `process.hrtime`) of lines and bytes. */
  readonly state: SharedArrayBuffer
}

const budgetNumber = (value: number | undefined, fallback: number): number =>
  value === undefined || Number.isNaN(value) || value < 0 ? fallback : value

/** Merges partial budgets over the defaults (later wins); invalid numbers keep the default. */
export const resolveLogBudget = (...layers: ReadonlyArray<Partial<LogBudget> | undefined>): LogBudget => {
  let budget = defaultLogBudget
  for (const layer of layers) {
    if (layer === undefined) continue
    budget = {
      maxLineBytes: budgetNumber(layer.maxLineBytes, budget.maxLineBytes),
      linesPerSecond: budgetNumber(layer.linesPerSecond, budget.linesPerSecond),
      burstLines: budgetNumber(layer.burstLines, budget.burstLines),
      bytesPerSecond: budgetNumber(layer.bytesPerSecond, budget.bytesPerSecond),
      burstBytes: budgetNumber(layer.burstBytes, budget.burstBytes)
    }
  }
  // A line shorter than 64 bytes cannot carry its own truncation marker.
  return { ...budget, maxLineBytes: Math.max(64, Math.floor(budget.maxLineBytes)) }
}

/** A fresh budget state, created once per loaded plugin on the main thread. */
export const makeLogBudget = (limits: LogBudget): LogBudgetSpec => ({
  limits,
  state: new SharedArrayBuffer(2 * BigInt64Array.BYTES_PER_ELEMENT)
})

/** A host folder visible to a plugin at `guestPath` (e.g. `/libraries/1`), read-only unless `writable`. */
export interface Mount {
  readonly guestPath: string
  readonly hostPath: string
  /** The guest may create, write, rename and remove below it (never symlinks or hard links). */
  readonly writable?: boolean
  /** With `writable`: the most bytes (sum of file sizes) the folder may hold; absent: no quota. */
  readonly maxBytes?: number
}

export interface KernelLimits {
  /** Host-side Extism memory (blocks from `alloc`) per instance. */
  readonly maxHostMemoryBytes: number
  readonly maxOutputBytes: number
  readonly maxVarBytes: number
  readonly maxLinearMemoryBytes: number
}

/** One export call; `spec` travels only the first time a worker sees the plugin. */
export interface CallRequest {
  readonly callId: number
  readonly spec?: PluginSpec
  readonly key: string
  readonly fn: string | null
  readonly input: Uint8Array
}

export type MainToWorker =
  /**
   * Calls of one plugin, run in order. The first always runs; each later one only if the worker
   * wins its claim in the control block, so the pool can take back the ones not started yet
   * (docs/decisions/0043-dispatch-in-batches.md).
   */
  | {
      readonly t: "batch"
      readonly key: string
      /** Only the first time this worker sees the plugin. */
      readonly spec?: PluginSpec
      readonly callIds: ReadonlyArray<number>
      readonly fns: ReadonlyArray<string | null>
      /**
       * Every call's input, back to back, call _i_'s ending at `ends[i]`: one buffer instead of
       * one object and one typed array per call keeps the structured clone of a batch cheap.
       */
      readonly inputs: Uint8Array
      readonly ends: ReadonlyArray<number>
    }
  | { readonly t: "drop"; readonly key: string }

export type FailureKind =
  | "trap"
  | "stack"
  | "memory"
  | "plugin"
  | "notImplemented"
  | "exitCode"
  | "outputTooLarge"
  | "procExit"
  | "link"
  | "missingExport"
  | "instantiate"

export interface CallFailure {
  readonly kind: FailureKind
  readonly message: string
  readonly code?: number
}

/** One guest log line: an Extism log level and its text. */
export type LogLine = readonly [level: number, message: string]

export type WorkerToMain =
  | { readonly t: "ready" }
  | {
      readonly t: "host"
      readonly callId: number
      readonly key: string
      readonly fn: string
      readonly payload: Uint8Array
    }
  /** A batch of guest log lines, already filtered, truncated and budgeted in the worker. */
  | { readonly t: "log"; readonly key: string; readonly lines: ReadonlyArray<LogLine> }
  /** A result too large for the results area of the control block. */
  | { readonly t: "done"; readonly callId: number; readonly output: Uint8Array | null }
  | { readonly t: "failed"; readonly callId: number; readonly failure: CallFailure }
  /** The call is about to sleep `ms` in WASI `poll_oneoff` (not burning CPU; see the pool's burst). */
  | { readonly t: "sleep"; readonly callId: number; readonly ms: number }
  /** New results wait in the results area (sent at most every `Control.noticeMs` within a batch). */
  | { readonly t: "results" }
  /** The batch is over: `ran` calls ran, the rest were taken back by the pool. */
  | { readonly t: "batchEnd"; readonly ran: number }

/**
 * Layout of the per-worker shared control block.
 *
 * Host calls: the worker blocks in `Atomics.wait` on `state` until the main thread answers. Small
 * replies travel inline; larger ones go through a MessagePort that the worker drains synchronously
 * with `receiveMessageOnPort`.
 *
 * Batches: `claim` is the index of the next call of the batch not started yet; the worker starts
 * it only by advancing `claim` with `compareExchange`, the pool takes the rest back by swapping in
 * `revoked`. `current` is the index of the running call (-1 between calls) and the Float64 at
 * `startedAtByte` when it started (ms since epoch), so the pool times each call without a message.
 * Results of the batch are appended to the results area (entries: index, kind, length, bytes
 * padded to 4); `resultCount` is stored last, so the pool reads only whole entries, even from a
 * worker that died. A result whose call logged is announced at once, and the pool reads it only
 * on a message (after the log lines), so lines still go before their call's result.
 */
export const Control = {
  state: 0,
  length: 1,
  claim: 2,
  current: 3,
  resultCount: 4,
  startedAtByte: 24,
  headerBytes: 32,
  inlineBytes: 64 * 1024,
  resultsBytes: 64 * 1024,
  idle: 0,
  inlineReply: 1,
  portReply: 2,
  revoked: 0x7fffffff,
  /** Result kinds in the results area. */
  doneEmpty: 0,
  doneOutput: 1,
  failed: 2,
  /** Flag on a result kind: the call sent log lines, which must reach the main thread first. */
  logged: 4,
  /** Results older than this are announced before the next call of the batch starts. */
  noticeMs: 1
} as const

export const CONTROL_BUFFER_BYTES = Control.headerBytes + Control.inlineBytes + Control.resultsBytes

/**
 * Messages between the main thread and the execution workers. Kept free of Effect so the worker
 * bundle stays small; the main side decodes nothing here because both ends are our own code.
 */
import type { WasmModule } from "../internal/WasmModule.js"

/** Extism log levels, as numbers the guest sees through `get_log_level`. */
export const LogLevels = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, off: 5 } as const
export type LogLevelName = Exclude<keyof typeof LogLevels, "off">

/** Everything a worker needs to instantiate one loaded plugin. */
export interface PluginSpec {
  readonly key: string
  readonly id: string
  readonly module: WasmModule
  readonly config: Readonly<Record<string, string>>
  /** Names in `extism:host/user` this plugin may import (already permission-checked). */
  readonly userFunctions: ReadonlyArray<string>
  /** Whether `http_request` & co. in `extism:host/env` reach the host's HTTP service. */
  readonly envHttp: boolean
  readonly logLevel: number
  readonly limits: KernelLimits
  readonly freshInstance: boolean
  /** Host folders the plugin's WASI filesystem sees read-only (empty: no filesystem at all). */
  readonly mounts: ReadonlyArray<Mount>
}

/** A host folder visible to a plugin at `guestPath` (e.g. `/libraries/1`), read-only. */
export interface Mount {
  readonly guestPath: string
  readonly hostPath: string
}

export interface KernelLimits {
  /** Host-side Extism memory (blocks from `alloc`) per instance. */
  readonly maxHostMemoryBytes: number
  readonly maxOutputBytes: number
  readonly maxVarBytes: number
  readonly maxLinearMemoryBytes: number
}

export type MainToWorker =
  | {
      readonly t: "call"
      readonly callId: number
      readonly spec?: PluginSpec
      readonly key: string
      readonly fn: string | null
      readonly input: Uint8Array
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

export type WorkerToMain =
  | { readonly t: "ready" }
  | {
      readonly t: "host"
      readonly callId: number
      readonly key: string
      readonly fn: string
      readonly payload: Uint8Array
    }
  | { readonly t: "log"; readonly key: string; readonly level: number; readonly message: string }
  | { readonly t: "done"; readonly callId: number; readonly output: Uint8Array | null }
  | { readonly t: "failed"; readonly callId: number; readonly failure: CallFailure }

/**
 * Layout of the per-worker shared control block used to answer host calls while the worker
 * blocks in `Atomics.wait`. Small replies travel inline; larger ones go through a MessagePort
 * that the worker drains synchronously with `receiveMessageOnPort`.
 */
export const Control = {
  state: 0,
  length: 1,
  headerBytes: 16,
  inlineBytes: 64 * 1024,
  idle: 0,
  inlineReply: 1,
  portReply: 2
} as const

export const CONTROL_BUFFER_BYTES = Control.headerBytes + Control.inlineBytes

/** Settings of the plugin manager and their defaults. */
import type * as LogLevel from "effect/LogLevel"

/** Settings of the manager. */
export interface ManagerOptions {
  /** The plugins folder (`*.ndp`). */
  readonly folder: string
  /** Load plugins (true for a server; false for tools that only edit the registry). */
  readonly live: boolean
  /** Watch the folder and act on changes. */
  readonly autoReload: boolean
  /** Quiet time per plugin before a folder change is acted on. */
  readonly debounceMs: number
  /** How often the registry is checked for changes made by other processes (e.g. `ndp plugins`). */
  readonly pollMs: number
  /** How many plugins load at once on start. */
  readonly loadConcurrency: number
  /** Per-plugin call timeouts, by plugin ID. */
  readonly timeoutsMs: Readonly<Record<string, number>>
  /** Per-plugin memory limits, by plugin ID. */
  readonly memoryBytes: Readonly<Record<string, number>>
  /** The most verbose guest log level passed on (default Info). */
  readonly logLevel?: LogLevel.LogLevel | undefined
  /**
   * On shutdown, how long calls already running may take to finish before every plugin is closed
   * anyway (default 10 s).
   */
  readonly drainTimeoutMs?: number | undefined
}

/** Default of `ManagerOptions.drainTimeoutMs`. */
export const defaultDrainTimeoutMs = 10_000

export const defaultManagerOptions = (folder: string): ManagerOptions => ({
  folder,
  live: true,
  autoReload: false,
  debounceMs: 2_000,
  pollMs: 1_000,
  loadConcurrency: 4,
  timeoutsMs: {},
  memoryBytes: {},
  drainTimeoutMs: defaultDrainTimeoutMs
})

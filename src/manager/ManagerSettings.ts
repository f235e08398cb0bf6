/** The `[Plugins]` settings: their keys, their decoded shape, and the error reading them. */
import type * as LogLevel from "effect/LogLevel"
import * as Schema from "effect/Schema"
import type {} from "../Engine.js"

/** The settings could not be read: an unreadable file (`File`) or a bad value or key (`Invalid`). */
export class ManagerConfigError extends Schema.TaggedError<ManagerConfigError>()("ManagerConfigError", {
  reason: Schema.Literal("File", "Invalid"),
  /** Where the bad value came from: `NDP_PLUGINS_CACHESIZE`, `Plugins.CacheSize in ndp.toml`, … */
  key: Schema.optional(Schema.String),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/** The keys of the `[Plugins]` block, as Navidrome spells them. */
export const SettingKeys = [
  "Enabled",
  "Folder",
  "AutoReload",
  "LogLevel",
  "CacheSize",
  "DataFolder",
  "Timeout",
  "Timeouts",
  "Memory",
  "Workers",
  "Agents",
  "Debounce",
  "ShutdownTimeout",
  "Database"
] as const

/** One key of the `[Plugins]` block. */
export type SettingKey = (typeof SettingKeys)[number]

/** The plugin system's settings, decoded. */
export interface ManagerSettings {
  /** Whether the server runs plugins at all. */
  readonly enabled: boolean
  /** The engine's data folder (absolute). */
  readonly dataFolder: string
  /** The plugins folder (absolute); `<dataFolder>/plugins` unless set. */
  readonly folder: string
  /** A `postgres://` URL: state shared with the other nodes of a cluster (docs/cluster.md); unset = SQLite. */
  readonly database: string | undefined
  readonly autoReload: boolean
  /** The most verbose level logged by the plugin system. */
  readonly logLevel: LogLevel.LogLevel
  /** Bound of the compiled-module cache. */
  readonly cacheSizeBytes: number
  /** Default call timeout. */
  readonly timeoutMs: number
  /** Per-plugin call timeouts, by plugin ID. */
  readonly timeoutsMs: Readonly<Record<string, number>>
  /** Per-plugin memory limits, by plugin ID. */
  readonly memoryBytes: Readonly<Record<string, number>>
  /** Worker threads; the runtime's default (2 × cores) when unset. */
  readonly workers: number | undefined
  /** Metadata agents in the order they are asked, e.g. `["lastfm", "spotify", "my-plugin"]`. */
  readonly agents: ReadonlyArray<string>
  /** Quiet time before a change in the plugins folder is acted on. */
  readonly debounceMs: number
  /** On shutdown, how long calls already running may take before the plugins close anyway. */
  readonly shutdownTimeoutMs: number
}

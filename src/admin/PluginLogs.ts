/**
 * The recent log lines of each plugin, for the admin API: a ring buffer per plugin bounded both in
 * entries and in bytes, filled by a `Logger` that keeps every log annotated with `plugin` (the
 * guest's own logs and the engine's lines about that plugin).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"

export type LevelName = "trace" | "debug" | "info" | "warning" | "error"

export interface LogEntry {
  readonly time: string
  readonly level: LevelName
  readonly message: string
}

export interface PluginLogsOptions {
  /** Entries kept per plugin. */
  readonly maxEntries: number
  /** Bytes of messages kept per plugin (UTF-16 code units, close enough for a budget). */
  readonly maxBytes: number
  /** A longer message is cut to this many characters. */
  readonly maxMessageChars: number
  /** Plugins tracked at once; the least recently written one is dropped beyond it. */
  readonly maxPlugins: number
}

export const defaultPluginLogsOptions: PluginLogsOptions = {
  maxEntries: 200,
  maxBytes: 64 * 1024,
  maxMessageChars: 2_048,
  maxPlugins: 1_000
}

const rank: Record<LevelName, number> = { trace: 0, debug: 1, info: 2, warning: 3, error: 4 }

const levelName = (level: LogLevel.LogLevel): LevelName => {
  if (LogLevel.lessThanEqual(level, LogLevel.Trace)) return "trace"
  if (LogLevel.lessThanEqual(level, LogLevel.Debug)) return "debug"
  if (LogLevel.lessThanEqual(level, LogLevel.Info)) return "info"
  if (LogLevel.lessThanEqual(level, LogLevel.Warning)) return "warning"
  return "error"
}

const text = (message: unknown): string =>
  Array.isArray(message)
    ? message.map(text).join(" ")
    : typeof message === "string"
      ? message
      : message instanceof Error
        ? message.message
        : (JSON.stringify(message) ?? String(message))

interface Ring {
  readonly entries: Array<LogEntry>
  bytes: number
}

export class PluginLogs extends Context.Tag("ndp-engine/PluginLogs")<
  PluginLogs,
  {
    /** Add with `Logger.add` (or `loggerLayer`) where the plugins run, so their logs are kept. */
    readonly logger: Logger.Logger<unknown, void>
    /** The newest entries of one plugin, oldest first, at `level` or above. */
    readonly recent: (
      pluginId: string,
      options?: { readonly level?: LevelName | undefined; readonly limit?: number | undefined }
    ) => Effect.Effect<ReadonlyArray<LogEntry>>
  }
>() {}

export const make = (options: Partial<PluginLogsOptions> = {}) =>
  Effect.sync(() => {
    const settings = { ...defaultPluginLogsOptions, ...options }
    // A Map iterates in insertion order: re-inserting on write keeps the least recent first.
    const rings = new Map<string, Ring>()

    const append = (pluginId: string, entry: LogEntry) => {
      let ring = rings.get(pluginId)
      if (ring === undefined) {
        ring = { entries: [], bytes: 0 }
        if (rings.size >= settings.maxPlugins) rings.delete(rings.keys().next().value!)
      } else {
        rings.delete(pluginId)
      }
      rings.set(pluginId, ring)
      ring.entries.push(entry)
      ring.bytes += entry.message.length
      while (ring.entries.length > settings.maxEntries || ring.bytes > settings.maxBytes) {
        ring.bytes -= ring.entries.shift()!.message.length
      }
    }

    const logger = Logger.make<unknown, void>(({ annotations, date, logLevel, message }) => {
      const plugin = Option.getOrUndefined(HashMap.get(annotations, "plugin"))
      if (typeof plugin !== "string") return
      const full = text(message)
      append(plugin, {
        time: date.toISOString(),
        level: levelName(logLevel),
        message: full.length > settings.maxMessageChars ? `${full.slice(0, settings.maxMessageChars)}…` : full
      })
    })

    return PluginLogs.of({
      logger,
      recent: (pluginId, query = {}) =>
        Effect.sync(() => {
          const min = rank[query.level ?? "trace"]
          const kept = (rings.get(pluginId)?.entries ?? []).filter((e) => rank[e.level] >= min)
          return query.limit === undefined ? kept : kept.slice(-query.limit)
        })
    })
  })

export const layer = (options: Partial<PluginLogsOptions> = {}): Layer.Layer<PluginLogs> =>
  Layer.effect(PluginLogs, make(options))

/** Adds the service's logger to the default loggers of what this layer is provided to. */
export const loggerLayer: Layer.Layer<never, never, PluginLogs> = Layer.unwrapEffect(
  Effect.map(PluginLogs, (logs) => Logger.add(logs.logger))
)

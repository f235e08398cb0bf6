/**
 * Server settings of the plugin system, mirroring Navidrome's `[Plugins]` block plus the engine's
 * own knobs. One Effect `Config` reads them; the sources, strongest first, are the command line,
 * the environment (`NDP_PLUGINS_<KEY>`) and a `.toml` / `.json` file. See docs/manager.md.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"
import { extname, join, resolve } from "node:path"
import { parse as parseToml } from "smol-toml"
import type { EngineOptions } from "../Engine.js"
import { parseGoDuration } from "../internal/GoDuration.js"
import { parseByteSize } from "../manifest/Manifest.js"
import { defaultDrainTimeoutMs, defaultManagerOptions, type ManagerOptions } from "./PluginManager.js"

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

// ---- values: every source hands over text, decoded by one Schema per kind ----

const invalid = (ast: SchemaAST.AST, actual: string, message: string) =>
  ParseResult.fail(new ParseResult.Type(ast, actual, message))

const fromText = <A>(
  to: Schema.Schema<A>,
  parse: (text: string) => Either.Either<A, string>
): Schema.Schema<A, string> =>
  Schema.transformOrFail(Schema.String, Schema.typeSchema(to), {
    strict: true,
    decode: (text, _options, ast) =>
      Either.match(parse(text.trim()), {
        onLeft: (message) => invalid(ast, text, message),
        onRight: ParseResult.succeed
      }),
    encode: (value, _options, ast) =>
      ParseResult.fail(new ParseResult.Forbidden(ast, value, "settings are only decoded"))
  })

const TRUE = new Set(["true", "1", "yes", "on"])
const FALSE = new Set(["false", "0", "no", "off"])

/** `true`/`false`, also `1`/`0`, `yes`/`no`, `on`/`off` (any case). */
export const BooleanFromText = fromText(Schema.Boolean, (text) => {
  const lower = text.toLowerCase()
  if (TRUE.has(lower)) return Either.right(true)
  if (FALSE.has(lower)) return Either.right(false)
  return Either.left(`expected true or false, got ${JSON.stringify(text)}`)
})

/** Milliseconds from `"30000"` (ms), Go's `"30s"`, `"1m30s"`, `"500ms"`, or Effect's `"30 seconds"`. */
export const DurationMsFromText = fromText(Schema.Number, (text) => {
  const ms = /^\d+$/.test(text)
    ? Number(text)
    : (parseGoDuration(text) ??
      Option.getOrUndefined(Option.map(Duration.decodeUnknown(text), Duration.toMillis)))
  return ms === undefined || !Number.isFinite(ms) || ms <= 0
    ? Either.left(
        `expected a positive duration like "30s", "1m30s", "500ms" or 30000 (ms), got ${JSON.stringify(text)}`
      )
    : Either.right(Math.round(ms))
})

const sizeOf = (text: string, minimum: number) =>
  Option.match(
    Option.filter(parseByteSize(text), (bytes) => bytes >= minimum),
    {
      onNone: () =>
        Either.left(
          `expected a size like "200MB" or "256MiB" (units B, KB, MB, GB, KiB, MiB, GiB)${minimum > 0 ? " above zero" : ""}, got ${JSON.stringify(text)}`
        ),
      onSome: Either.right
    }
  )

/** Bytes from an SI or IEC size: `"200MB"` (2·10^8), `"256MiB"`, `"1.5 GB"`, `"4096"` (bytes). */
export const ByteSizeFromText = fromText(Schema.Number, (text) => sizeOf(text, 0))

/** As {@link ByteSizeFromText}, above zero (a memory limit). */
export const PositiveByteSizeFromText = fromText(Schema.Number, (text) => sizeOf(text, 1))

/** A whole number ≥ 1. */
export const PositiveIntFromText = fromText(Schema.Number, (text) => {
  const n = Number(text)
  return /^\d+$/.test(text) && Number.isSafeInteger(n) && n >= 1
    ? Either.right(n)
    : Either.left(`expected a whole number of at least 1, got ${JSON.stringify(text)}`)
})

const LogLevelSchema = Schema.declare((u): u is LogLevel.LogLevel => LogLevel.allLevels.some((l) => l === u))

const LEVELS: Record<string, LogLevel.LogLevel> = {
  all: LogLevel.All,
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warn: LogLevel.Warning,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None,
  off: LogLevel.None
}

/** Navidrome's level names (`error`, `warn`, `info`, `debug`, `trace`) and Effect's (`warning`, `fatal`, `all`, `none`). */
export const LogLevelFromText = fromText(LogLevelSchema, (text) => {
  const level = LEVELS[text.toLowerCase()]
  return level === undefined
    ? Either.left(
        `expected one of error, warn, info, debug, trace (or all, fatal, none), got ${JSON.stringify(text)}`
      )
    : Either.right(level)
})

/** A comma-separated list; blanks around items and empty items are dropped. */
export const ListFromText = fromText(Schema.Array(Schema.String), (text) =>
  Either.right(
    text
      .split(",")
      .map((item) => item.trim())
      .filter((item) => item !== "")
  )
)

/** `"id=value,id=value"` → `{id: value}`, each value decoded by `value`. */
export const MapFromText = (value: Schema.Schema<number, string>) => {
  const decodeValue = Schema.decodeEither(value)
  return fromText(Schema.Record({ key: Schema.String, value: Schema.Number }), (text) => {
    const out: Record<string, number> = {}
    for (const item of text.split(",").map((i) => i.trim())) {
      if (item === "") continue
      const at = item.indexOf("=")
      const id = item.slice(0, at).trim()
      if (at <= 0 || id === "") {
        return Either.left(`expected plugin-id=value pairs separated by commas, got ${JSON.stringify(item)}`)
      }
      const decoded = decodeValue(item.slice(at + 1).trim())
      if (Either.isLeft(decoded)) return Either.left(`${id}: ${firstIssue(decoded.left)}`)
      out[id] = decoded.right
    }
    return Either.right(out)
  })
}

const firstIssue = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error)[0]?.message ?? "is not valid"

/** One key of the block, decoded from its text by `schema`. */
const setting = <A>(key: SettingKey, schema: Schema.Schema<A, string>): Config.Config<A> => {
  const decode = Schema.decodeEither(schema)
  return Config.string(key).pipe(
    Config.mapOrFail((text) =>
      Either.mapLeft(decode(text), (error) => ConfigError.InvalidData([], firstIssue(error)))
    )
  )
}

/** Empty text counts as unset, as in Navidrome. */
const optionalText = (key: SettingKey) =>
  Config.map(
    Config.option(Config.string(key)),
    Option.filter((text) => text.trim() !== "")
  )

/** The `[Plugins]` block as an Effect `Config` (paths `Plugins.<Key>`); pair it with {@link provider}. */
export const ManagerConfig: Config.Config<ManagerSettings> = Config.nested(
  Config.all({
    enabled: setting("Enabled", BooleanFromText).pipe(Config.withDefault(true)),
    dataFolder: optionalText("DataFolder"),
    folder: optionalText("Folder"),
    database: optionalText("Database"),
    autoReload: setting("AutoReload", BooleanFromText).pipe(Config.withDefault(false)),
    logLevel: setting("LogLevel", LogLevelFromText).pipe(Config.withDefault(LogLevel.Info)),
    cacheSizeBytes: setting("CacheSize", ByteSizeFromText).pipe(Config.withDefault(200_000_000)),
    timeoutMs: setting("Timeout", DurationMsFromText).pipe(Config.withDefault(30_000)),
    timeoutsMs: setting("Timeouts", MapFromText(DurationMsFromText)).pipe(Config.withDefault({})),
    memoryBytes: setting("Memory", MapFromText(PositiveByteSizeFromText)).pipe(Config.withDefault({})),
    workers: Config.option(setting("Workers", PositiveIntFromText)),
    agents: setting("Agents", ListFromText).pipe(Config.withDefault([])),
    debounceMs: setting("Debounce", DurationMsFromText).pipe(Config.withDefault(2_000)),
    shutdownTimeoutMs: setting("ShutdownTimeout", DurationMsFromText).pipe(
      Config.withDefault(defaultDrainTimeoutMs)
    )
  }),
  "Plugins"
).pipe(
  Config.map(({ database, dataFolder, folder, workers, ...rest }): ManagerSettings => {
    const data = resolve(Option.getOrElse(dataFolder, () => "ndp-data"))
    return {
      ...rest,
      dataFolder: data,
      folder: resolve(Option.getOrElse(folder, () => join(data, "plugins"))),
      workers: Option.getOrUndefined(workers),
      database: Option.getOrUndefined(database)
    }
  })
)

// ---- sources ----

// Lists and maps are parsed by their settings, so no source may split values at commas itself.
const NO_SPLIT = { pathDelim: "_", seqDelim: "\u0000" }

/** Name of the environment variable of a key: Navidrome's scheme with `NDP_` for `ND_`. */
export const envName = (key: SettingKey): string => `NDP_PLUGINS_${key.toUpperCase()}`

/**
 * The environment as a provider: `NDP_PLUGINS_<KEY>` (key upper-cased, no separators), e.g.
 * `NDP_PLUGINS_AUTORELOAD=true`. `env` replaces `process.env` (for tests).
 */
export const envProvider = (
  env?: Readonly<Record<string, string | undefined>>
): ConfigProvider.ConfigProvider =>
  (env === undefined
    ? ConfigProvider.fromEnv(NO_SPLIT)
    : ConfigProvider.fromMap(
        new Map(Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [[k, v] as const]))),
        NO_SPLIT
      )
  ).pipe(ConfigProvider.upperCase, ConfigProvider.nested("NDP"))

/** Settings given as text by key, as a provider (used for a decoded file and for command-line flags). */
export const valuesProvider = (values: Partial<Record<SettingKey, string>>): ConfigProvider.ConfigProvider =>
  ConfigProvider.fromMap(new Map(Object.entries(values).map(([k, v]) => [`Plugins.${k}`, v])), {
    ...NO_SPLIT,
    pathDelim: "."
  })

const Scalar = Schema.Union(Schema.String, Schema.Number, Schema.Boolean).annotations({
  message: () => "expected a string, a number or a boolean"
})
const ListValue = Schema.Union(Schema.String, Schema.Array(Schema.String)).annotations({
  message: () => 'expected a string like "a,b" or an array of strings'
})
const MapValue = Schema.Union(
  Schema.String,
  Schema.Record({ key: Schema.String, value: Schema.Union(Schema.String, Schema.Number) })
).annotations({
  message: () => 'expected a table of plugin-id = value, or a string like "id=value,id=value"'
})

const FileBlock = Schema.Struct({
  Enabled: Schema.optional(Scalar),
  Folder: Schema.optional(Schema.String),
  AutoReload: Schema.optional(Scalar),
  LogLevel: Schema.optional(Schema.String),
  CacheSize: Schema.optional(Scalar),
  DataFolder: Schema.optional(Schema.String),
  Timeout: Schema.optional(Scalar),
  Timeouts: Schema.optional(MapValue),
  Memory: Schema.optional(MapValue),
  Workers: Schema.optional(Scalar),
  Agents: Schema.optional(ListValue),
  Debounce: Schema.optional(Scalar),
  ShutdownTimeout: Schema.optional(Scalar),
  Database: Schema.optional(Schema.String)
})

const decodeBlock = Schema.decodeUnknownEither(FileBlock, { onExcessProperty: "error", errors: "all" })

const isTable = (value: unknown): value is Readonly<Record<string, unknown>> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** Renames keys that match a setting case-insensitively (`autoReload`, `AUTORELOAD`) to its spelling. */
const canonicalKeys = (table: Readonly<Record<string, unknown>>): Record<string, unknown> =>
  Object.fromEntries(
    Object.entries(table).map(([key, value]) => [
      SettingKeys.find((k) => k.toLowerCase() === key.toLowerCase()) ?? key,
      value
    ])
  )

const asText = (value: unknown): string => {
  if (Array.isArray(value)) return value.join(",")
  if (isTable(value)) {
    return Object.entries(value)
      .map(([id, v]) => `${id}=${String(v)}`)
      .join(",")
  }
  return String(value)
}

/**
 * Decodes a settings file's contents: the `[Plugins]` table (any key case), plus Navidrome's
 * top-level `DataFolder` and `Agents` (the `[Plugins]` ones win). Other top-level keys are ignored,
 * so a whole `navidrome.toml` can be read; an unknown key inside `[Plugins]` is an error.
 */
export const decodeFile = (
  text: string,
  format: "toml" | "json",
  name: string
): Effect.Effect<Partial<Record<SettingKey, string>>, ManagerConfigError> =>
  Effect.gen(function* () {
    const parsed = yield* Effect.try({
      try: (): unknown => (format === "toml" ? parseToml(text) : JSON.parse(text)),
      catch: (cause) =>
        new ManagerConfigError({
          reason: "File",
          message: `${name} is not valid ${format.toUpperCase()}: ${cause instanceof Error ? cause.message : String(cause)}`,
          cause
        })
    })
    if (!isTable(parsed)) {
      return yield* new ManagerConfigError({
        reason: "File",
        message: `${name} must hold an object of settings`
      })
    }
    const top = Object.entries(parsed)
    const blockEntry = top.find(([key]) => key.toLowerCase() === "plugins")
    if (blockEntry !== undefined && !isTable(blockEntry[1])) {
      return yield* new ManagerConfigError({
        reason: "Invalid",
        key: `${blockEntry[0]} in ${name}`,
        message: `${blockEntry[0]} in ${name}: expected a table ([Plugins]) of settings`
      })
    }
    const outer = canonicalKeys(
      Object.fromEntries(top.filter(([key]) => ["datafolder", "agents"].includes(key.toLowerCase())))
    )
    const block = {
      ...outer,
      ...canonicalKeys(blockEntry !== undefined && isTable(blockEntry[1]) ? blockEntry[1] : {})
    }
    const decoded = decodeBlock(block)
    if (Either.isLeft(decoded)) {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
      const key = `Plugins.${String(issue?.path[0] ?? "")}`
      const message =
        issue?._tag === "Unexpected"
          ? `unknown key; the keys are ${SettingKeys.join(", ")}`
          : (issue?.message ?? "is not valid")
      return yield* new ManagerConfigError({
        reason: "Invalid",
        key: `${key} in ${name}`,
        message: `${key} in ${name}: ${message}`
      })
    }
    const values: Partial<Record<SettingKey, string>> = {}
    for (const key of SettingKeys) {
      const value = decoded.right[key]
      if (value !== undefined) values[key] = asText(value)
    }
    return values
  })

/** Reads and decodes a `.toml` or `.json` settings file. */
export const readFile = (
  path: string
): Effect.Effect<Partial<Record<SettingKey, string>>, ManagerConfigError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const ext = extname(path).toLowerCase()
    if (ext !== ".toml" && ext !== ".json") {
      return yield* new ManagerConfigError({
        reason: "File",
        message: `config file ${path} must end in .toml or .json`
      })
    }
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(path).pipe(
      Effect.mapError(
        (cause) =>
          new ManagerConfigError({
            reason: "File",
            message: `cannot read config file ${path}: ${cause.message}`,
            cause
          })
      )
    )
    return yield* decodeFile(text, ext === ".toml" ? "toml" : "json", path)
  })

/** Where {@link load} reads from. */
export interface LoadOptions {
  /** A `.toml` or `.json` file. */
  readonly file?: string | undefined
  /** Replaces `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  /** Values from the command line, strongest of all. */
  readonly overrides?: Partial<Record<SettingKey, string>> | undefined
}

const collectInvalid = (
  error: ConfigError.ConfigError
): Array<{ path: ReadonlyArray<string>; message: string }> => {
  switch (error._op) {
    case "And":
    case "Or":
      return [...collectInvalid(error.left), ...collectInvalid(error.right)]
    case "InvalidData":
    case "SourceUnavailable":
    case "Unsupported":
      return [{ path: error.path, message: error.message }]
    case "MissingData":
      return []
  }
}

/** Reads the settings: command line, then environment, then file, then defaults. */
export const load = (
  options: LoadOptions = {}
): Effect.Effect<ManagerSettings, ManagerConfigError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const file = options.file === undefined ? {} : yield* readFile(options.file)
    const overrides = options.overrides ?? {}
    const env = options.env ?? process.env
    const provider = valuesProvider(overrides).pipe(
      ConfigProvider.orElse(() => envProvider(env)),
      ConfigProvider.orElse(() => valuesProvider(file))
    )
    return yield* Effect.withConfigProvider(ManagerConfig, provider).pipe(
      Effect.mapError((error) => {
        const [first] = collectInvalid(error)
        const key = first?.path[first.path.length - 1] as SettingKey | undefined
        const source =
          key === undefined
            ? "settings"
            : overrides[key] !== undefined
              ? `command-line ${key}`
              : env[envName(key)] !== undefined
                ? envName(key)
                : `Plugins.${key} in ${options.file ?? "the config file"}`
        return new ManagerConfigError({
          reason: "Invalid",
          key: source,
          message: `${source}: ${first?.message ?? String(error)}`,
          cause: error
        })
      })
    )
  })

/** What the manager and the engine are built with. */
export interface ManagerRunOptions {
  readonly manager: ManagerOptions
  readonly engine: EngineOptions
}

/** Turns settings into `PluginManager.layer` and `Engine.layer` options (`live`: load plugins). */
export const toOptions = (settings: ManagerSettings, live = true): ManagerRunOptions => ({
  manager: {
    ...defaultManagerOptions(settings.folder),
    live,
    autoReload: settings.autoReload,
    debounceMs: settings.debounceMs,
    drainTimeoutMs: settings.shutdownTimeoutMs,
    timeoutsMs: settings.timeoutsMs,
    memoryBytes: settings.memoryBytes,
    logLevel: settings.logLevel
  },
  engine: {
    dataFolder: settings.dataFolder,
    runtime: {
      defaultTimeoutMs: settings.timeoutMs,
      moduleCacheBytes: settings.cacheSizeBytes,
      ...(settings.workers === undefined ? {} : { poolSize: settings.workers })
    }
  }
})

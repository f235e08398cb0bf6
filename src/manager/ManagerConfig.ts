/**
 * Server settings of the plugin system, mirroring Navidrome's `[Plugins]` block plus the engine's
 * own knobs. One Effect `Config` reads them; the sources, strongest first, are the command line,
 * the environment (`NDP_PLUGINS_<KEY>`) and a `.toml` / `.json` file. See docs/manager.md.
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { join, resolve } from "node:path"
import type { EngineOptions } from "../Engine.js"
import {
  BooleanFromText,
  ByteSizeFromText,
  firstIssue,
  DurationMsFromText,
  ListFromText,
  LogLevelFromText,
  MapFromText,
  PositiveByteSizeFromText,
  PositiveIntFromText
} from "./SettingCodecs.js"
import { ManagerConfigError, type ManagerSettings, type SettingKey } from "./ManagerSettings.js"
import { envName, envProvider, readFile, valuesProvider } from "./SettingSources.js"
import { defaultDrainTimeoutMs, defaultManagerOptions, type ManagerOptions } from "./ManagerOptions.js"

export * from "./ManagerSettings.js"
export * from "./SettingCodecs.js"
export * from "./SettingSources.js"

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

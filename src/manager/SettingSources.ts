/**
 * Where settings come from: environment variables, values given by key (flags), and a `.toml` or
 * `.json` file with a `[Plugins]` block.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { extname } from "node:path"
import { parse as parseToml } from "smol-toml"
import type {} from "../Engine.js"
import { ManagerConfigError, type SettingKey, SettingKeys } from "./ManagerSettings.js"

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

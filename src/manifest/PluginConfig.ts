/**
 * Plugin configuration: a JSON object checked against the manifest's `config.schema`, and the flat
 * string map the plugin sees through the Config host service.
 */
import type { ErrorObject, ValidateFunction } from "ajv"
import { Ajv } from "ajv"
import { Ajv2019 } from "ajv/dist/2019.js"
import { Ajv2020 } from "ajv/dist/2020.js"
import addFormats from "ajv-formats"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Manifest } from "./Manifest.js"

/** Why a configuration was rejected. */
export const ConfigErrorReason = Schema.Literal("Invalid", "InvalidSchema", "InvalidPair")

/** The reason literal of a {@link ConfigError}. */
export type ConfigErrorReason = typeof ConfigErrorReason.Type

/** One problem with one configuration value; `path` is relative to the config object ("" = the whole object). */
export const ConfigIssue: Schema.Schema<ConfigIssue> = Schema.Struct({
  path: Schema.String,
  message: Schema.String
})

/** One problem with one configuration value. */
export interface ConfigIssue {
  readonly path: string
  readonly message: string
}

/** A plugin configuration was rejected; `message` lists each problem, `issues` has them one by one. */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  reason: ConfigErrorReason,
  message: Schema.String,
  issues: Schema.optional(Schema.Array(ConfigIssue))
}) {}

/** A plugin configuration: a JSON object. */
export type ConfigObject = { readonly [key: string]: unknown }

const isObject = (value: unknown): value is ConfigObject =>
  typeof value === "object" && value !== null && !Array.isArray(value)

type Compiled =
  | { readonly _tag: "Ok"; readonly validate: ValidateFunction }
  | { readonly _tag: "Bad"; readonly error: string }

// Keyed by the decoded schema object, so each manifest's schema compiles once and is forgotten with
// it. One Ajv per schema: a shared instance would keep every schema alive and clash on `$id`s.
const compiled = new WeakMap<object, Compiled>()

const makeAjv = (draft: unknown) => {
  const options = { allErrors: true, strict: false, logger: false } as const
  const ajv =
    typeof draft === "string" && draft.includes("2020-12")
      ? new Ajv2020(options)
      : typeof draft === "string" && draft.includes("2019-09")
        ? new Ajv2019(options)
        : new Ajv(options)
  addFormats.default(ajv)
  return ajv
}

const compile = (schema: { readonly [key: string]: unknown }): Compiled => {
  const cached = compiled.get(schema)
  if (cached !== undefined) return cached
  const draft = schema["$schema"]
  const known = typeof draft !== "string" || /draft-07|2019-09|2020-12/.test(draft)
  // Ajv 8 ships no meta-schema for older drafts; their keywords are close enough to draft-07.
  const { $schema: _ignored, ...withoutDraft } = schema
  let result: Compiled
  try {
    result = { _tag: "Ok", validate: makeAjv(draft).compile(known ? schema : withoutDraft) }
  } catch (error) {
    result = { _tag: "Bad", error: error instanceof Error ? error.message : String(error) }
  }
  compiled.set(schema, result)
  return result
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/

const formatPath = (segments: ReadonlyArray<string>): string =>
  segments.reduce<string>((out, segment) => {
    if (/^\d+$/.test(segment)) return `${out}[${segment}]`
    if (!IDENTIFIER.test(segment)) return `${out}[${JSON.stringify(segment)}]`
    return out === "" ? segment : `${out}.${segment}`
  }, "")

const pointerSegments = (pointer: string): Array<string> =>
  pointer === ""
    ? []
    : pointer
        .slice(1)
        .split("/")
        .map((segment) => segment.replace(/~1/g, "/").replace(/~0/g, "~"))

const toIssue = (error: ErrorObject): ConfigIssue => {
  const segments = pointerSegments(error.instancePath)
  const params: Record<string, unknown> = error.params
  // Point at the offending field itself rather than at the object that contains it.
  if (error.keyword === "required" && typeof params["missingProperty"] === "string") {
    return { path: formatPath([...segments, params["missingProperty"]]), message: "is required" }
  }
  if (error.keyword === "additionalProperties" && typeof params["additionalProperty"] === "string") {
    return {
      path: formatPath([...segments, params["additionalProperty"]]),
      message: "is not a known setting"
    }
  }
  const base = error.message ?? `fails the "${error.keyword}" rule`
  const allowed = params["allowedValues"]
  const message =
    error.keyword === "enum" && Array.isArray(allowed)
      ? `${base}: ${allowed.map((value) => JSON.stringify(value)).join(", ")}`
      : base
  return { path: formatPath(segments), message }
}

const issueLine = (issue: ConfigIssue) =>
  issue.path === ""
    ? `config: ${issue.message}`
    : `config${issue.path.startsWith("[") ? "" : "."}${issue.path}: ${issue.message}`

const invalid = (issues: ReadonlyArray<ConfigIssue>) =>
  new ConfigError({ reason: "Invalid", message: issues.map(issueLine).join("\n"), issues })

/**
 * Checks a configuration against the manifest's `config.schema` (any JSON object passes when there
 * is none). Values are not coerced: a schema asking for an integer rejects the string "30".
 */
export const validateConfig = (
  manifest: Manifest,
  config: unknown
): Effect.Effect<ConfigObject, ConfigError> =>
  Effect.suspend(() => {
    if (!isObject(config)) return Effect.fail(invalid([{ path: "", message: "must be a JSON object" }]))
    const schema = manifest.config?.schema
    if (schema === undefined) return Effect.succeed(config)
    const compiledSchema = compile(schema)
    if (compiledSchema._tag === "Bad") {
      return Effect.fail(
        new ConfigError({
          reason: "InvalidSchema",
          message: `manifest.json: config.schema is not a valid JSON Schema (${compiledSchema.error}); fix the plugin's manifest`
        })
      )
    }
    const validate = compiledSchema.validate
    if (validate(config)) return Effect.succeed(config)
    const seen = new Set<string>()
    const issues = (validate.errors ?? []).map(toIssue).filter((issue) => {
      const key = `${issue.path}\u0000${issue.message}`
      return seen.has(key) ? false : (seen.add(key), true)
    })
    return Effect.fail(
      invalid(issues.length > 0 ? issues : [{ path: "", message: "does not match the schema" }])
    )
  })

// Go's encoding/json sorts map keys by UTF-8 bytes, i.e. by code point; plain JS sorting uses UTF-16
// units, which disagrees once surrogate pairs meet U+E000..U+FFFF. Remapping the units fixes that.
const codePointOrder = (unit: number) =>
  unit < 0xd800 ? unit : unit >= 0xe000 ? unit - 0x800 : unit + 0x2000

const compareKeys = (a: string, b: string): number => {
  const length = Math.min(a.length, b.length)
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x !== y) return codePointOrder(x) - codePointOrder(y)
  }
  return a.length - b.length
}

const canonicalJson = (value: unknown): string | undefined => {
  if (value === null) return "null"
  switch (typeof value) {
    case "string":
    case "boolean":
      return JSON.stringify(value)
    case "number":
      return Number.isFinite(value) ? JSON.stringify(value) : "null"
    case "bigint":
      return value.toString()
    case "object": {
      if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item) ?? "null").join(",")}]`
      const record = value as { readonly [key: string]: unknown }
      const members: Array<string> = []
      for (const key of Object.keys(record).sort(compareKeys)) {
        const json = canonicalJson(record[key])
        if (json !== undefined) members.push(`${JSON.stringify(key)}:${json}`)
      }
      return `{${members.join(",")}}`
    }
    default:
      return undefined
  }
}

/**
 * The configuration as the plugin sees it: strings as they are, anything else as compact JSON with
 * object keys sorted (`30` → `"30"`, `true` → `"true"`, `{"b":1,"a":2}` → `'{"a":2,"b":1}'`).
 */
export const flattenConfig = (config: ConfigObject): Record<string, string> => {
  const entries: Array<[string, string]> = []
  for (const key of Object.keys(config)) {
    const value = config[key]
    const flat = typeof value === "string" ? value : canonicalJson(value)
    if (flat !== undefined) entries.push([key, flat])
  }
  // fromEntries defines own properties, so a "__proto__" key stays an ordinary key.
  return Object.fromEntries(entries)
}

/**
 * Builds a configuration from the CLI's `--config key=value` pairs, splitting at the first `=`.
 * Values stay strings (no JSON parsing), so a schema expecting numbers or booleans will reject them.
 * A repeated key keeps its last value.
 */
export const parseConfigPairs = (pairs: ReadonlyArray<string>): Effect.Effect<ConfigObject, ConfigError> =>
  Effect.suspend(() => {
    const entries = new Map<string, string>()
    for (const pair of pairs) {
      const at = pair.indexOf("=")
      if (at <= 0) {
        const message =
          at === 0
            ? `--config ${JSON.stringify(pair)} has an empty key; write key=value`
            : `--config ${JSON.stringify(pair)} has no "="; write key=value`
        return Effect.fail(new ConfigError({ reason: "InvalidPair", message }))
      }
      entries.set(pair.slice(0, at), pair.slice(at + 1))
    }
    return Effect.succeed(Object.fromEntries(entries))
  })

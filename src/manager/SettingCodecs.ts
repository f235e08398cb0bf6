/**
 * Decoding of setting values: every source hands over text, decoded by one Schema per kind
 * (booleans, Go durations, byte sizes, log levels, lists, `id=value` maps).
 */
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"
import type {} from "../Engine.js"
import { parseGoDuration } from "../internal/GoDuration.js"
import { parseByteSize } from "../manifest/Manifest.js"

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

/** The first problem a decode found, as one line. */
export const firstIssue = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error)[0]?.message ?? "is not valid"

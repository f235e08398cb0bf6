/**
 * The JSON conventions of host calls (contract §3): requests decoded with Schema (snake_case
 * spellings of the README draft accepted), responses with Go-style omitted zero values, bytes as
 * padded base64 (a JSON array of numbers accepted on input), and every failure in-band as
 * `{"error": "…"}` so a host function never traps the guest.
 */
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { HostCallContext } from "../runtime/WasmRuntime.js"

/** A host service refused or failed a request; travels to the guest as `{"error": message}`. */
export class HostCallError extends Schema.TaggedError<HostCallError>()("HostCallError", {
  message: Schema.String
}) {}

/** A handler of one host function: request bytes in, response bytes out, never failing. */
export type HostFunctionHandler = (payload: Uint8Array, call?: HostCallContext) => Effect.Effect<Uint8Array>

/** For handlers invoked outside a plugin call (tests, the host itself): already finished. */
export const noCall: HostCallContext = { callFinished: Effect.void }

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

const camel = (key: string): string => key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())

const aliasKeys = (value: object): Record<string, unknown> => {
  const entries = Object.entries(value)
  const present = new Set(entries.map(([key]) => key))
  const aliases = entries.flatMap(([key, member]) => {
    const alias = camel(key)
    return alias !== key && !present.has(alias) ? [[alias, member] as const] : []
  })
  // fromEntries: a member named `__proto__` stays a member instead of changing the prototype.
  return Object.fromEntries([...entries, ...aliases])
}

/**
 * Adds camelCase spellings of snake_case request fields (`ttl_seconds` → `ttlSeconds`) unless
 * already present: at the top level and in `http_send`'s `request` object, never inside map
 * fields such as `headers` or `values`, whose keys are data.
 */
export const normaliseKeys = (value: unknown): unknown => {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value
  const top = aliasKeys(value)
  const request = top.request
  if (request !== null && typeof request === "object" && !Array.isArray(request))
    top.request = aliasKeys(request)
  return top
}

import { encodeResponse } from "./WireJson.js"

export { encodeResponse, encodeResponseAsIs, omitZero } from "./WireJson.js"

export const encodeError = (message: string): Uint8Array => encoder.encode(JSON.stringify({ error: message }))

/**
 * Bytes on the wire: standard padded base64, or (input only) a JSON array of byte values.
 * Decodes to `Uint8Array`; encodes to base64.
 */
export const Bytes = Schema.Union(
  Schema.Uint8ArrayFromBase64,
  Schema.transform(Schema.Array(Schema.Int.pipe(Schema.between(0, 255))), Schema.Uint8ArrayFromSelf, {
    strict: true,
    decode: (values) => Uint8Array.from(values),
    encode: (bytes) => Array.from(bytes)
  })
)

/** Standard padded base64 of some bytes, for responses. */
export const toBase64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64")

const formatIssue = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error)
    .map((issue) => (issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message))
    .join("; ")

/** Parses a request payload (UTF-8 JSON; empty means `{}`) and decodes it with `schema`. */
export const decodeRequest = <A, I>(schema: Schema.Schema<A, I>) => {
  // Built once per schema: host calls are a hot path.
  const decode = Schema.decodeUnknownEither(schema)
  return (payload: Uint8Array): Effect.Effect<A, HostCallError> => {
    let json: unknown = {}
    if (payload.byteLength > 0) {
      try {
        json = JSON.parse(decoder.decode(payload))
      } catch (error) {
        return Effect.fail(
          new HostCallError({
            message: `invalid request: not UTF-8 JSON (${error instanceof Error ? error.message : String(error)})`
          })
        )
      }
    }
    const decoded = decode(normaliseKeys(json))
    return decoded._tag === "Right"
      ? Effect.succeed(decoded.right)
      : Effect.fail(new HostCallError({ message: `invalid request: ${formatIssue(decoded.left)}` }))
  }
}

/**
 * Builds a host function from a request schema and a handler. Any failure, typed or not, becomes
 * an in-band `{"error"}` response; a defect is logged as well, since it is our bug, not the plugin's.
 */
export const hostFunction = <A, I, E extends { readonly message: string }>(
  name: string,
  schema: Schema.Schema<A, I>,
  handler: (request: A, call: HostCallContext) => Effect.Effect<unknown, E>,
  encode: (response: unknown) => Uint8Array = encodeResponse
): HostFunctionHandler => {
  const decode = decodeRequest(schema)
  return (payload, call = noCall) =>
    decode(payload).pipe(
      Effect.flatMap((request) => handler(request, call)),
      Effect.map(encode),
      Effect.catchAll((error) => Effect.succeed(encodeError(error.message))),
      Effect.catchAllDefect((defect) =>
        Effect.logError(`host function ${name} failed unexpectedly`, defect).pipe(
          Effect.as(encodeError(`host function ${name} failed unexpectedly`))
        )
      )
    )
}

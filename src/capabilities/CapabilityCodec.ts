/**
 * Decoding of capability outputs: plugin output bytes → JSON → Schema. Empty output is the zero
 * value (a miss); anything that is not JSON, or not the contract's shape, is a typed output error.
 */
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { PluginOutputError } from "../runtime/PluginError.js"

const decoder = new TextDecoder("utf-8", { fatal: true })

/** A field a Go plugin may omit or send as `null`. */
export const nullable = <S extends Schema.Schema.Any>(schema: S) => Schema.optional(Schema.NullOr(schema))

/** Parses the output as JSON; `undefined` when the output is empty (the zero value). */
export const parseOutput = (
  pluginId: string,
  exportName: string,
  output: Uint8Array | null
): Effect.Effect<unknown, PluginOutputError> =>
  output === null || output.byteLength === 0
    ? Effect.void
    : Effect.try({
        try: () => {
          const text = decoder.decode(output).trim()
          // A Go plugin returning a nil response writes `null`: the zero value, like empty output.
          return text === "" ? undefined : ((JSON.parse(text) as unknown) ?? undefined)
        },
        catch: (error) =>
          new PluginOutputError({
            pluginId,
            export: exportName,
            reason: "InvalidJson",
            message: `plugin ${pluginId} returned output from ${exportName} that is not UTF-8 JSON (${error instanceof Error ? error.message : String(error)}); the plugin is broken`
          })
      })

/** Parses and decodes the output with `schema`; `undefined` for empty output. */
export const decodeOutput =
  <A, I>(schema: Schema.Schema<A, I>) =>
  (
    pluginId: string,
    exportName: string,
    output: Uint8Array | null
  ): Effect.Effect<A | undefined, PluginOutputError> =>
    parseOutput(pluginId, exportName, output).pipe(
      Effect.flatMap((json) =>
        json === undefined
          ? Effect.succeed(undefined)
          : Schema.decodeUnknown(schema)(json).pipe(
              Effect.mapError(
                (error) =>
                  new PluginOutputError({
                    pluginId,
                    export: exportName,
                    reason: "InvalidShape",
                    message: `plugin ${pluginId} returned output from ${exportName} that does not match the contract: ${ParseResult.TreeFormatter.formatErrorSync(error)}`
                  })
              )
            )
      )
    )

/**
 * `decodeOutput`, refusing first an output over `maxBytes` as `TooLarge` (`what` names the answers
 * in the message, e.g. "lyrics answers"): a client whose answers a plugin may make arbitrarily big.
 */
export const decodeBoundedOutput =
  <A, I>(schema: Schema.Schema<A, I>, what: string, maxBytes: number) =>
  (
    pluginId: string,
    exportName: string,
    output: Uint8Array | null
  ): Effect.Effect<A | undefined, PluginOutputError> =>
    output !== null && output.byteLength > maxBytes
      ? Effect.fail(
          new PluginOutputError({
            pluginId,
            export: exportName,
            reason: "TooLarge",
            message: `plugin ${pluginId} answered ${exportName} with ${output.byteLength} bytes; ${what} are limited to ${maxBytes} bytes`
          })
        )
      : decodeOutput(schema)(pluginId, exportName, output)

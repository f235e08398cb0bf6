/**
 * Host functions the execution worker answers itself, without a round trip to the main thread:
 * those whose answer depends only on what the worker already holds (the plugin's flattened
 * configuration, immutable per loaded version). Why and which: docs/decisions/0035-host-calls-in-the-worker.md.
 *
 * Only well-formed requests are answered here. A request the host codec would refuse (not UTF-8
 * JSON, a field of the wrong type) goes to the main thread as before, so its in-band error is the
 * codec's, word for word.
 */
import { configGet, configGetInt, configKeys } from "../../host/config/ConfigLookup.js"

/** Answers a request, or returns undefined to send it to the main thread. */
export type LocalHandler = (payload: Uint8Array) => Uint8Array | undefined

const decoder = new TextDecoder("utf-8", { fatal: true })
const encoder = new TextEncoder()

/** The request as the codec sees it before its schema (empty means `{}`), or undefined if it is not an object. */
const requestOf = (payload: Uint8Array): Record<string, unknown> | undefined => {
  if (payload.byteLength === 0) return {}
  let json: unknown
  try {
    json = JSON.parse(decoder.decode(payload))
  } catch {
    return undefined
  }
  return json !== null && typeof json === "object" && !Array.isArray(json)
    ? (json as Record<string, unknown>)
    : undefined
}

const encode = (response: object): Uint8Array => encoder.encode(JSON.stringify(response))

/** The worker-side handler of `fn` over `config`, or undefined when only the main thread can answer it. */
export const localHandler = (
  fn: string,
  config: Readonly<Record<string, string>>
): LocalHandler | undefined => {
  switch (fn) {
    case "config_get":
    case "config_getint": {
      const answer = fn === "config_get" ? configGet : configGetInt
      return (payload) => {
        const key = requestOf(payload)?.key
        return typeof key === "string" ? encode(answer(config, key)) : undefined
      }
    }
    case "config_keys":
      return (payload) => {
        const request = requestOf(payload)
        if (request === undefined) return undefined
        const prefix = request.prefix ?? ""
        return typeof prefix === "string" ? encode(configKeys(config, prefix)) : undefined
      }
    default:
      return undefined
  }
}

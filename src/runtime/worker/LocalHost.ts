/**
 * Host functions the execution worker answers itself, without a round trip to the main thread:
 * those whose answer depends only on what the worker already holds (the plugin's flattened
 * configuration, immutable per loaded version) or can read itself (KV store reads, over its own
 * read-only connection; cache gets, from copies the shared index says are current). Why and which: docs/decisions/0035-host-calls-in-the-worker.md.
 *
 * Only well-formed requests are answered here. A request the host codec would refuse (not UTF-8
 * JSON, a field of the wrong type) or the store would refuse (an invalid key) goes to the main
 * thread as before, so its in-band error is the main thread's, word for word.
 */
import { getAnswer, getters, hasAnswer } from "../../host/cache/CacheAnswers.js"
import { configGet, configGetInt, configKeys } from "../../host/config/ConfigLookup.js"
import { keyProblem, maxKeyBytes } from "../../host/kvstore/KvKey.js"
import { encodeResponse } from "../../host/WireJson.js"
import type { CacheCopies } from "./CacheCopies.js"
import type { KvReader } from "./KvReader.js"

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

/** A key the store accepts; any other goes to the main thread for the store's own error. */
const validKey = (key: unknown): key is string =>
  typeof key === "string" && key.length <= maxKeyBytes && "bytes" in keyProblem(key)

/**
 * The value of `key` when the worker can judge it alone: absent rows and rows without a TTL. A row
 * with a TTL crosses, because whether it expired is judged by the main thread's clock (the
 * engine's `Clock`, which tests replace), not the worker's.
 */
const kvLookup = (kv: KvReader, payload: Uint8Array): { readonly value: Uint8Array | null } | undefined => {
  const key = requestOf(payload)?.key
  if (!validKey(key)) return undefined
  const row = kv.row(key)
  if (row === undefined) return undefined
  if (row === null) return { value: null }
  return row.expiresAt === null && row.value instanceof Uint8Array ? { value: row.value } : undefined
}

/** What the worker holds for the plugin that may answer its host calls. */
export interface LocalSources {
  readonly config: Readonly<Record<string, string>>
  /** The plugin's KV store file, readable here; absent when its reads must cross. */
  readonly kv?: KvReader | undefined
  /** This worker's copies of the plugin's cache entries; absent when its gets must cross. */
  readonly cache?: CacheCopies | undefined
}

/** A cache key the service accepts (a non-empty string); any other crosses for the service's own error. */
const cacheKey = (payload: Uint8Array): string | undefined => {
  const key = requestOf(payload)?.key
  return typeof key === "string" && key.length > 0 ? key : undefined
}

/** The worker-side handler of `fn`, or undefined when only the main thread can answer it. */
export const localHandler = (fn: string, sources: LocalSources): LocalHandler | undefined => {
  const { cache, config, kv } = sources
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
    // The same bytes as the main thread's `kvstore_get`/`kvstore_has` after `omitZero`.
    case "kvstore_get":
      return kv === undefined
        ? undefined
        : (payload) => {
            const found = kvLookup(kv, payload)
            if (found === undefined) return undefined
            if (found.value === null) return encode({})
            return found.value.byteLength === 0
              ? encode({ exists: true })
              : encode({
                  value: Buffer.from(
                    found.value.buffer,
                    found.value.byteOffset,
                    found.value.byteLength
                  ).toString("base64"),
                  exists: true
                })
          }
    case "kvstore_has":
      return kv === undefined
        ? undefined
        : (payload) => {
            const found = kvLookup(kv, payload)
            return found === undefined ? undefined : encode(found.value === null ? {} : { exists: true })
          }
    // The same bytes as the main thread's handlers: both write `getAnswer`/`hasAnswer` with `omitZero`.
    case "cache_getstring":
    case "cache_getint":
    case "cache_getfloat":
    case "cache_getbytes": {
      const kind = getters[fn]
      return cache === undefined
        ? undefined
        : (payload) => {
            const key = cacheKey(payload)
            const entry = key === undefined ? undefined : cache.entry(key, payload)
            return entry === undefined ? undefined : encodeResponse(getAnswer(kind, entry ?? undefined))
          }
    }
    case "cache_has":
      return cache === undefined
        ? undefined
        : (payload) => {
            const key = cacheKey(payload)
            const entry = key === undefined ? undefined : cache.entry(key, payload)
            return entry === undefined ? undefined : encodeResponse(hasAnswer(entry ?? undefined))
          }
    default:
      return undefined
  }
}

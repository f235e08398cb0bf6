/**
 * The Cache host service (`cache`): an in-memory, per-plugin key/value cache with typed values
 * (string, int, float, bytes) and per-key TTL. Each plugin has a budget of entries and bytes; the
 * least recently used entries go first, so one plugin cannot eat the server's memory. The cache
 * lives in the plugin's scope and is cleared when the plugin unloads.
 *
 * It is a small map of our own rather than Effect's `Cache`: that one memoises a lookup function,
 * while plugins set arbitrary keys with their own TTLs.
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { Bytes, type HostFunctionHandler, hostFunction, toBase64 } from "../HostCodec.js"
import { define, type HostServiceProvider } from "../HostProvider.js"
import { CacheError } from "./CacheError.js"

/** The functions of the Cache service and the permission they need. */
export const definition = define({
  grant: "cache",
  functions: [
    "cache_setstring",
    "cache_getstring",
    "cache_setint",
    "cache_getint",
    "cache_setfloat",
    "cache_getfloat",
    "cache_setbytes",
    "cache_getbytes",
    "cache_has",
    "cache_remove"
  ]
})

/** Per-plugin limits of the cache. */
export interface CacheOptions {
  readonly maxEntries: number
  readonly maxBytes: number
}

/** 10,000 entries and 16 MiB per plugin. */
export const defaultCacheOptions: CacheOptions = { maxEntries: 10_000, maxBytes: 16 * 1024 * 1024 }

const DAY_MS = 24 * 60 * 60 * 1000

type Kind = "string" | "int" | "float" | "bytes"

interface Entry {
  readonly kind: Kind
  readonly value: string | number | Uint8Array
  readonly bytes: number
  readonly expiresAt: number
}

const encoder = new TextEncoder()

/** One plugin's cache: a map in recency order (oldest first) with a byte count. */
export class PluginCache {
  private readonly entries = new Map<string, Entry>()
  private bytes = 0

  constructor(private readonly options: CacheOptions) {}

  get size(): number {
    return this.entries.size
  }

  get usedBytes(): number {
    return this.bytes
  }

  set(key: string, kind: Kind, value: Entry["value"], ttlSeconds: number, now: number): string | undefined {
    const size =
      encoder.encode(key).byteLength +
      (typeof value === "string"
        ? encoder.encode(value).byteLength
        : typeof value === "number"
          ? 8
          : value.byteLength)
    if (size > this.options.maxBytes) {
      return `value of ${size} bytes is larger than the plugin's whole cache (${this.options.maxBytes} bytes)`
    }
    this.delete(key)
    const ttlMs = ttlSeconds > 0 ? ttlSeconds * 1000 : DAY_MS
    this.entries.set(key, { kind, value, bytes: size, expiresAt: now + ttlMs })
    this.bytes += size
    for (const [oldest] of this.entries) {
      if (this.entries.size <= this.options.maxEntries && this.bytes <= this.options.maxBytes) break
      this.delete(oldest)
    }
    return undefined
  }

  /** The live entry under `key`, refreshed as most recently used; expired entries are dropped. */
  get(key: string, now: number): Entry | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt <= now) {
      this.delete(key)
      return undefined
    }
    this.entries.delete(key)
    this.entries.set(key, entry)
    return entry
  }

  delete(key: string): void {
    const entry = this.entries.get(key)
    if (entry === undefined) return
    this.entries.delete(key)
    this.bytes -= entry.bytes
  }

  clear(): void {
    this.entries.clear()
    this.bytes = 0
  }
}

const Key = Schema.String.pipe(Schema.minLength(1, { message: () => "key must not be empty" }))
const KeyRequest = Schema.Struct({ key: Key })
const Ttl = Schema.optionalWith(Schema.Number, { default: () => 0 })
const SetString = Schema.Struct({ key: Key, value: Schema.String, ttlSeconds: Ttl })
const SetInt = Schema.Struct({ key: Key, value: Schema.Int, ttlSeconds: Ttl })
const SetFloat = Schema.Struct({ key: Key, value: Schema.Number, ttlSeconds: Ttl })
const SetBytes = Schema.Struct({ key: Key, value: Bytes, ttlSeconds: Ttl })

/** The cache functions over one plugin's cache. */
export const functions = (
  cache: PluginCache
): Record<(typeof definition.functions)[number], HostFunctionHandler> => {
  const set =
    (kind: Kind) =>
    ({ key, ttlSeconds, value }: { key: string; ttlSeconds: number; value: Entry["value"] }) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const refused = cache.set(key, kind, value, ttlSeconds, now)
        return refused === undefined
          ? Effect.succeed({})
          : Effect.fail(new CacheError({ reason: "TooLarge", message: refused }))
      })
  // A getter of the wrong type reports not-exists, as the contract says.
  const get =
    (kind: Kind, wire: (value: Entry["value"]) => unknown = (v) => v) =>
    ({ key }: { key: string }) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const entry = cache.get(key, now)
        return entry === undefined || entry.kind !== kind ? {} : { value: wire(entry.value), exists: true }
      })
  return {
    cache_setstring: hostFunction("cache_setstring", SetString, set("string")),
    cache_setint: hostFunction("cache_setint", SetInt, set("int")),
    cache_setfloat: hostFunction("cache_setfloat", SetFloat, set("float")),
    cache_setbytes: hostFunction("cache_setbytes", SetBytes, set("bytes")),
    cache_getstring: hostFunction("cache_getstring", KeyRequest, get("string")),
    cache_getint: hostFunction("cache_getint", KeyRequest, get("int")),
    cache_getfloat: hostFunction("cache_getfloat", KeyRequest, get("float")),
    cache_getbytes: hostFunction(
      "cache_getbytes",
      KeyRequest,
      get("bytes", (v) => toBase64(v as Uint8Array))
    ),
    cache_has: hostFunction("cache_has", KeyRequest, ({ key }) =>
      Effect.map(Clock.currentTimeMillis, (now) =>
        cache.get(key, now) === undefined ? {} : { exists: true }
      )
    ),
    cache_remove: hostFunction("cache_remove", KeyRequest, ({ key }) =>
      Effect.sync(() => {
        cache.delete(key)
        return {}
      })
    )
  }
}

/** The Cache host service: a cache per plugin, made in the plugin's scope and cleared when it closes. */
export class CacheService extends Context.Tag("ndp-engine/host/CacheService")<
  CacheService,
  HostServiceProvider
>() {}

/** The Cache service with these limits (missing ones take `defaultCacheOptions`). */
export const make = Effect.fn("CacheService.make")((
  options: Partial<CacheOptions> = {}
): Effect.Effect<HostServiceProvider> => {
  const limits: CacheOptions = { ...defaultCacheOptions, ...options }
  return Effect.succeed({
    ...definition,
    make: () =>
      Effect.acquireRelease(
        Effect.sync(() => new PluginCache(limits)),
        (cache) => Effect.sync(() => cache.clear())
      ).pipe(Effect.map(functions))
  })
})

/** The Cache service as a layer. */
export const layer = (options: Partial<CacheOptions> = {}): Layer.Layer<CacheService> =>
  Layer.effect(CacheService, make(options))

/** The Cache service with its limits read from `Config`. */
export const layerConfig = (
  config: Config.Config.Wrap<Partial<CacheOptions>>
): Layer.Layer<CacheService, ConfigError.ConfigError> =>
  Layer.effect(CacheService, Effect.flatMap(Config.unwrap(config), make))

/**
 * The Cache host service (`cache`): an in-memory, per-plugin key/value cache with typed values
 * (string, int, float, bytes) and per-key TTL. Each plugin has a budget of entries and bytes; the
 * least recently used entries go first, so one plugin cannot eat the server's memory. The cache
 * lives in the plugin's scope and is cleared when the plugin unloads.
 *
 * It is a small map of our own rather than Effect's `Cache`: that one memoises a lookup function,
 * while plugins set arbitrary keys with their own TTLs.
 *
 * The map stays on the main thread, its only writer. Gets may be answered in the execution worker
 * from a copy of the entry, valid while the entry's slot in the shared `CacheIndex` keeps its stamp
 * (docs/decisions/0035-host-calls-in-the-worker.md).
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { Bytes, encodeResponseAsIs, type HostFunctionHandler, hostFunction, toBase64 } from "../HostCodec.js"
import { define, type HostServiceProvider } from "../HostProvider.js"
import { type CacheLookup, getAnswer, getters, hasAnswer, type Kind, lookupFunction } from "./CacheAnswers.js"
import { CacheError } from "./CacheError.js"
import { CacheIndex } from "./CacheIndex.js"

const wireValue = (value: Entry["value"]): string | number =>
  value instanceof Uint8Array ? toBase64(value) : value

const wire = (entry: Entry | undefined) =>
  entry === undefined ? undefined : { kind: entry.kind, value: wireValue(entry.value) }

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

interface Entry {
  readonly kind: Kind
  readonly value: string | number | Uint8Array
  readonly bytes: number
  readonly expiresAt: number
  /** Its slot in the shared index (-1: none, and gets of it always cross). */
  readonly slot: number
}

const encoder = new TextEncoder()

/** One plugin's cache: a map in recency order (oldest first) with a byte count. */
export class PluginCache {
  private readonly entries = new Map<string, Entry>()
  private bytes = 0

  constructor(
    private readonly options: CacheOptions,
    /** The slots workers check their copies against; absent: gets are answered here only. */
    readonly index?: CacheIndex
  ) {}

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
    const slot = this.index?.assign() ?? -1
    this.entries.set(key, { kind, value, bytes: size, expiresAt: now + ttlMs, slot })
    this.bytes += size
    // Oldest first; an entry a worker read since the last pass gets a second chance at the end
    // of the order (the map visits it once more there, untouched, so the loop ends).
    for (const [oldest, entry] of this.entries) {
      if (this.entries.size <= this.options.maxEntries && this.bytes <= this.options.maxBytes) break
      // The new entry fits alone (checked above): whatever must go is another one.
      if (oldest === key) continue
      if (this.index?.takeTouched(entry.slot) === true) {
        this.entries.delete(oldest)
        this.entries.set(oldest, entry)
        continue
      }
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
    this.index?.release(entry.slot)
  }

  clear(): void {
    for (const entry of this.entries.values()) this.index?.release(entry.slot)
    this.entries.clear()
    this.bytes = 0
  }

  /** A get for a worker: the live entry with what the worker needs to keep a copy of it. */
  lookup(key: string, now: number): CacheLookup | undefined {
    const entry = this.get(key, now)
    if (entry === undefined) return undefined
    return {
      kind: entry.kind,
      value: wireValue(entry.value),
      slot: entry.slot,
      stamp: entry.slot < 0 || this.index === undefined ? 0 : this.index.stamp(entry.slot),
      expiresAt: entry.expiresAt
    }
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
  const get =
    (kind: Kind) =>
    ({ key }: { key: string }) =>
      Effect.map(Clock.currentTimeMillis, (now) => getAnswer(kind, wire(cache.get(key, now))))
  return {
    cache_setstring: hostFunction("cache_setstring", SetString, set("string")),
    cache_setint: hostFunction("cache_setint", SetInt, set("int")),
    cache_setfloat: hostFunction("cache_setfloat", SetFloat, set("float")),
    cache_setbytes: hostFunction("cache_setbytes", SetBytes, set("bytes")),
    cache_getstring: hostFunction("cache_getstring", KeyRequest, get(getters.cache_getstring)),
    cache_getint: hostFunction("cache_getint", KeyRequest, get(getters.cache_getint)),
    cache_getfloat: hostFunction("cache_getfloat", KeyRequest, get(getters.cache_getfloat)),
    cache_getbytes: hostFunction("cache_getbytes", KeyRequest, get(getters.cache_getbytes)),
    cache_has: hostFunction("cache_has", KeyRequest, ({ key }) =>
      Effect.map(Clock.currentTimeMillis, (now) => hasAnswer(cache.get(key, now)))
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
        Effect.sync(() => new PluginCache(limits, new CacheIndex(limits.maxEntries))),
        (cache) => Effect.sync(() => cache.clear())
      ).pipe(Effect.map(stockFunctions))
  })
})

/** Handlers this service made, with their cache: only those may be answered in a worker. */
const stockHandlers = new WeakMap<HostFunctionHandler, PluginCache>()

const stockFunctions = (cache: PluginCache) => {
  const handlers = functions(cache)
  for (const handler of Object.values(handlers)) stockHandlers.set(handler, cache)
  return handlers
}

/** The reads a worker may answer from its copies (`workerReads` in LocalHost). */
const workerReads = [...Object.keys(getters), "cache_has"] as const

/**
 * Of the plugin's `handlers`, the cache reads its workers may answer from copies, the shared index
 * they check copies against, and the lookup handler that fills their copies: all empty unless this
 * service made those handlers (an embedder's own provider of a cache name keeps its calls on the
 * main thread).
 */
export const servedInWorker = (
  handlers: Readonly<Record<string, HostFunctionHandler>>
): {
  readonly functions: ReadonlyArray<string>
  readonly index: SharedArrayBuffer | undefined
  readonly lookup: HostFunctionHandler | undefined
} => {
  const cache = workerReads.map((name) => handlers[name]).find((h) => h !== undefined && stockHandlers.has(h))
  const owner = cache === undefined ? undefined : stockHandlers.get(cache)
  if (owner?.index === undefined) return { functions: [], index: undefined, lookup: undefined }
  const functions = workerReads.filter((name) => {
    const handler = handlers[name]
    return handler !== undefined && stockHandlers.get(handler) === owner
  })
  return { functions, index: owner.index.buffer, lookup: lookupHandler(owner) }
}

/** The main thread's answer to a worker without a current copy of a key (`CacheAnswers.lookupFunction`). */
const lookupHandler = (cache: PluginCache): HostFunctionHandler =>
  hostFunction(
    lookupFunction,
    KeyRequest,
    ({ key }) => Effect.map(Clock.currentTimeMillis, (now) => cache.lookup(key, now) ?? {}),
    // As is: a value of 0 or "" must reach the worker.
    encodeResponseAsIs
  )

/** The Cache service as a layer. */
export const layer = (options: Partial<CacheOptions> = {}): Layer.Layer<CacheService> =>
  Layer.effect(CacheService, make(options))

/** The Cache service with its limits read from `Config`. */
export const layerConfig = (
  config: Config.Config.Wrap<Partial<CacheOptions>>
): Layer.Layer<CacheService, ConfigError.ConfigError> =>
  Layer.effect(CacheService, Effect.flatMap(Config.unwrap(config), make))

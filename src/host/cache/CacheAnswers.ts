/**
 * What the cache's getters answer, written once for the main thread's handlers and for the
 * execution workers that answer gets from their copies (`CacheIndex.ts`), so both give the same
 * bytes. Free of Effect: both threads import it.
 */
import { INTERNAL_PREFIX } from "../../runtime/abi/Imports.js"

/** The type a value was set with; a getter of another type reports not-exists, as the contract says. */
export type Kind = "string" | "int" | "float" | "bytes"

/** The getters and the type each one reads. */
export const getters = {
  cache_getstring: "string",
  cache_getint: "int",
  cache_getfloat: "float",
  cache_getbytes: "bytes"
} as const satisfies Record<string, Kind>

/** An entry as the guest sees it: the value in its wire form (bytes as base64). */
export interface WireEntry {
  readonly kind: Kind
  readonly value: string | number
}

/** A getter's answer before `omitZero`. */
export const getAnswer = (kind: Kind, entry: WireEntry | undefined): object =>
  entry === undefined || entry.kind !== kind ? {} : { value: entry.value, exists: true }

/** `cache_has`'s answer before `omitZero`. */
export const hasAnswer = (entry: object | undefined): object => (entry === undefined ? {} : { exists: true })

/**
 * The host function a worker calls when it has no current copy of a key: the main thread's
 * cache looks the key up as a get does (refreshing its recency, dropping it if expired) and answers
 * the entry with its slot, stamp and expiry. Not in any catalogue, so no plugin can import it.
 */
export const lookupFunction = `${INTERNAL_PREFIX}cache_lookup`

/** A lookup's answer for a live entry; `{}` when there is none. `slot` is -1 when the entry has none. */
export interface CacheLookup extends WireEntry {
  readonly slot: number
  readonly stamp: number
  /** Engine-clock milliseconds. */
  readonly expiresAt: number
}

const kinds: ReadonlySet<unknown> = new Set<Kind>(["string", "int", "float", "bytes"])

/** Reads a lookup's answer: the entry, null for none, undefined for anything else. */
export const readLookup = (json: unknown): CacheLookup | null | undefined => {
  if (json === null || typeof json !== "object" || Array.isArray(json)) return undefined
  const reply = json as Record<string, unknown>
  if (Object.keys(reply).length === 0) return null
  const { expiresAt, kind, slot, stamp, value } = reply
  return kinds.has(kind) &&
    typeof slot === "number" &&
    typeof stamp === "number" &&
    typeof expiresAt === "number" &&
    (typeof value === "string" || typeof value === "number")
    ? { kind: kind as Kind, value, slot, stamp, expiresAt }
    : undefined
}

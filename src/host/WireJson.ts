/**
 * How host functions write their JSON answers, as Navidrome's Go host does (`omitempty`). Free of
 * Effect so the execution worker, which answers some host calls itself, writes the same bytes.
 */
const encoder = new TextEncoder()

const isZero = (value: unknown): boolean =>
  value === undefined ||
  value === null ||
  value === false ||
  value === 0 ||
  value === "" ||
  (Array.isArray(value) && value.length === 0) ||
  (typeof value === "object" && !Array.isArray(value) && Object.keys(value as object).length === 0)

/** Drops zero-valued members of objects, recursively, as Go's `omitempty` does. Arrays keep their items. */
export const omitZero = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(omitZero)
  if (value === null || typeof value !== "object" || value instanceof Uint8Array) return value
  const out: Record<string, unknown> = {}
  for (const [key, member] of Object.entries(value)) {
    const cleaned = omitZero(member)
    if (!isZero(cleaned)) out[key] = cleaned
  }
  return out
}

/** Encodes a response object as the guest expects it. */
export const encodeResponse = (value: unknown): Uint8Array =>
  encoder.encode(JSON.stringify(omitZero(value) ?? {}))

/**
 * Encodes a response exactly as given, for handlers whose responses hold maps (HTTP headers):
 * `omitZero` would drop a header whose value is empty. Such handlers omit zero fields themselves.
 */
export const encodeResponseAsIs = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value ?? {}))

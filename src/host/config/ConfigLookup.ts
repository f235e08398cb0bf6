/**
 * The Config service's answers as plain functions of the flattened configuration, free of Effect:
 * the main-thread service (`ConfigService.ts`) and the execution worker, which answers these calls
 * without crossing threads (docs/decisions/0035-host-calls-in-the-worker.md), share them, so both
 * paths give the same bytes. Responses already omit zero values, as `omitZero` would.
 */

// Base-10 integers, as Go's strconv.ParseInt(s, 10, 64) accepts them; anything else reads as "not exists".
const INTEGER = /^[+-]?\d+$/
const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

/** The host functions answered here, all granted to every plugin. */
export const configFunctionNames = ["config_get", "config_getint", "config_keys"] as const

const lookup = (config: Readonly<Record<string, string>>, key: string): string | undefined =>
  Object.prototype.hasOwnProperty.call(config, key) ? config[key] : undefined

export const configGet = (
  config: Readonly<Record<string, string>>,
  key: string
): { readonly value?: string; readonly exists?: true } => {
  const value = lookup(config, key)
  if (value === undefined) return {}
  return value === "" ? { exists: true } : { value, exists: true }
}

export const configGetInt = (
  config: Readonly<Record<string, string>>,
  key: string
): { readonly value?: number; readonly exists?: true } => {
  const value = lookup(config, key)
  if (value === undefined || !INTEGER.test(value)) return {}
  const parsed = BigInt(value)
  // JSON numbers beyond 2^53 lose precision in JavaScript readers; Go reads them exactly.
  if (parsed < INT64_MIN || parsed > INT64_MAX) return {}
  return parsed === 0n ? { exists: true } : { value: Number(parsed), exists: true }
}

export const configKeys = (
  config: Readonly<Record<string, string>>,
  prefix: string
): { readonly keys?: ReadonlyArray<string> } => {
  const keys = Object.keys(config)
    .filter((key) => key.startsWith(prefix))
    // Code-point order, as Go sorts strings.
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  return keys.length === 0 ? {} : { keys }
}

/**
 * Go's duration text (`time.ParseDuration`'s units): `90s`, `1h30m`, `250ms`, `1.5s`. Navidrome's
 * settings and its scheduler's `@every` are written this way, so the manager's settings and the
 * Scheduler service read them with this one parser.
 */

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  "\u00b5s": 1e-3, // micro sign
  "\u03bcs": 1e-3, // Greek mu, which Go accepts too
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000
}

const PART = /(\d+(?:\.\d+)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/g
const WHOLE = /^(?:\d+(?:\.\d+)?(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+$/

/** Milliseconds of a Go duration such as `1h30m`; `undefined` when `text` is not one. No sign, no bare `0`. */
export const parseGoDuration = (text: string): number | undefined => {
  if (!WHOLE.test(text)) return undefined
  let total = 0
  for (const [, amount, unit] of text.matchAll(PART)) total += Number(amount) * (UNIT_MS[unit ?? ""] ?? 0)
  return total
}

/** Milliseconds as a Go duration for messages: `1s`, `1.5s`, `250ms`. */
export const formatGoDuration = (ms: number): string => (ms >= 1000 ? `${ms / 1000}s` : `${ms}ms`)

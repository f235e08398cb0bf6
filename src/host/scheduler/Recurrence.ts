/**
 * The schedule syntax plugins use (5 cron fields, `@every <Go duration>`, the `@hourly` family,
 * an optional `CRON_TZ=`/`TZ=` prefix) and a next-run computation whose cost is bounded.
 *
 * `Cron.next` walks up to 10,000 steps and then throws; with a time zone each step costs tens of
 * microseconds, so an expression that never fires (`0 0 31 2 *`) blocks the main thread for about
 * half a second before failing. `nextRun` first finds the next matching calendar day with a plain
 * loop over at most the horizon's days (no time-zone work), and only then lets `Cron.next` settle
 * the time of day from just before that day, a walk of a few steps.
 */
import * as Cron from "effect/Cron"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import { formatGoDuration, parseGoDuration } from "../../internal/GoDuration.js"

/** A recurring schedule's timing: a cron expression, or a fixed interval (`@every`). */
export type Recurrence =
  | {
      readonly _tag: "Cron"
      readonly cron: Cron.Cron
      /** Both day fields must match (a `*`-led one among them), as `Cron.match` decides it. */
      readonly bothDays: boolean
    }
  | { readonly _tag: "Every"; readonly interval: Duration.Duration }

const MACROS: Readonly<Record<string, string>> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *"
}

export { parseGoDuration } from "../../internal/GoDuration.js"

/** Why an expression was refused: malformed, or an `@every` interval under the minimum. */
export interface RecurrenceProblem {
  readonly reason: "InvalidSchedule" | "TooFrequent"
  readonly message: string
}

/**
 * Whether a cron field starts with `*` (alone, with a step, or before a comma): Effect's rule for
 * when day of month and weekday must both match instead of either.
 */
const startsWithWildcard = (field: string): boolean => field.split(",")[0]!.split("/")[0] === "*"

/**
 * Parses the schedule syntax plugins use: 5 cron fields, `@every <duration>` of at least
 * `minIntervalMs`, the `@hourly` family, with an optional `CRON_TZ=<zone>` or `TZ=<zone>` prefix.
 */
export const parseRecurrence = (
  expression: string,
  minIntervalMs = 1000
): Either.Either<Recurrence, RecurrenceProblem> => {
  const invalid = (message: string) => Either.left<RecurrenceProblem>({ reason: "InvalidSchedule", message })
  let text = expression.trim()
  let zone: string | undefined
  const prefix = /^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$/.exec(text)
  if (prefix !== null) {
    zone = prefix[1]
    text = prefix[2]!.trim()
  }
  if (text.startsWith("@every")) {
    const duration = text.slice("@every".length).trim()
    const ms = parseGoDuration(duration)
    if (ms === undefined) {
      return invalid(
        `invalid @every interval "${duration}": use a Go duration such as "@every 90s" or "@every 1h30m"`
      )
    }
    if (!(ms >= minIntervalMs)) {
      return Either.left({
        reason: "TooFrequent",
        message:
          `@every interval "${duration}" is shorter than the minimum of ${formatGoDuration(minIntervalMs)}: ` +
          `use a longer interval, e.g. "@every ${formatGoDuration(Math.max(minIntervalMs, 1000))}"`
      })
    }
    return Either.right({ _tag: "Every", interval: Duration.millis(ms) })
  }
  const fields = MACROS[text] ?? text
  if (fields.startsWith("@")) return invalid(`unknown schedule "${text}"`)
  const parts = fields.split(/\s+/)
  if (parts.length !== 5) {
    return invalid(`cron expression "${text}" must have 5 fields (minute hour day month weekday)`)
  }
  return Cron.parse(fields, zone).pipe(
    Either.map((cron): Recurrence => ({
      _tag: "Cron",
      cron,
      bothDays:
        (startsWithWildcard(parts[2]!) || startsWithWildcard(parts[4]!)) &&
        cron.days.size !== 0 &&
        cron.weekdays.size !== 0
    })),
    Either.mapLeft((error): RecurrenceProblem => ({
      reason: "InvalidSchedule",
      message: `invalid cron expression "${expression}": ${error.message}`
    }))
  )
}

const DAY_MS = 86_400_000
const HOUR_MS = 3_600_000

const daysInMonth = (year: number, month: number): number => new Date(Date.UTC(year, month, 0)).getUTCDate()

/** Whether a calendar day matches the cron's day, month and weekday fields, as `Cron.match` decides. */
const dayMatches = (
  cron: Cron.Cron,
  bothDays: boolean,
  month: number,
  day: number,
  weekday: number
): boolean => {
  if (cron.months.size !== 0 && !cron.months.has(month)) return false
  if (cron.days.size === 0 && cron.weekdays.size === 0) return true
  if (bothDays) {
    return (
      (cron.days.size === 0 || cron.days.has(day)) && (cron.weekdays.size === 0 || cron.weekdays.has(weekday))
    )
  }
  if (cron.weekdays.size === 0) return cron.days.has(day)
  if (cron.days.size === 0) return cron.weekdays.has(weekday)
  return cron.days.has(day) || cron.weekdays.has(weekday)
}

const maxOf = (values: ReadonlySet<number>, otherwise: number): number =>
  values.size === 0 ? otherwise : Math.max(...values)

/**
 * The latest instant of a wall-clock time in the cron's zone (without a zone: the fixed offset
 * `Cron.next` itself uses, that of `reference`).
 */
const wallToEpoch = (cron: Cron.Cron, wallAsUtc: number, reference: number): number =>
  Option.match(cron.tz, {
    onNone: () => wallAsUtc + new Date(reference).getTimezoneOffset() * 60_000,
    onSome: (zone) =>
      // "later": of a wall time that occurs twice, the second; of one skipped, the time after the gap.
      DateTime.toEpochMillis(
        DateTime.unsafeMakeZoned(wallAsUtc, {
          timeZone: zone,
          adjustForTimeZone: true,
          disambiguation: "later"
        })
      )
  })

/**
 * The first time after `after` that `cron` fires, if it fires within `horizonMs`. At most one
 * step per calendar day of the horizon, then a `Cron.next` that starts two days before the first
 * matching day (any zone is less than a day from UTC, so no run is skipped).
 */
export const nextCronRun = (
  cron: Cron.Cron,
  bothDays: boolean,
  after: number,
  horizonMs: number
): Option.Option<number> => {
  const limit = after + horizonMs
  const start = new Date(after - DAY_MS)
  let year = start.getUTCFullYear()
  let month = start.getUTCMonth() + 1
  let day = start.getUTCDate()
  let weekday = start.getUTCDay()
  let monthLength = daysInMonth(year, month)
  const lastHour = maxOf(cron.hours, 23)
  const lastMinute = maxOf(cron.minutes, 59)
  try {
    for (let midnight = Date.UTC(year, month - 1, day); midnight <= limit + DAY_MS; midnight += DAY_MS) {
      if (dayMatches(cron, bothDays, month, day, weekday)) {
        // Skip a matching day whose last run is already past, or `Cron.next` would walk to the next one.
        const from = Math.max(after, midnight - 2 * DAY_MS)
        const lastRun = wallToEpoch(cron, midnight + lastHour * HOUR_MS + lastMinute * 60_000, from)
        if (lastRun > after) {
          const next = Cron.next(cron, from).getTime()
          return next > after && next <= limit ? Option.some(next) : Option.none()
        }
      }
      weekday = (weekday + 1) % 7
      if (++day > monthLength) {
        day = 1
        if (++month > 12) {
          month = 1
          year++
        }
        monthLength = daysInMonth(year, month)
      }
    }
  } catch {
    // `Cron.next` gave up, or a date left the range `DateTime` accepts: no run we can plan.
  }
  return Option.none()
}

/**
 * The next time a recurrence fires after `now`, given when it last fired (for `@every`), if that
 * is within `horizonMs`. `@every` skips the ticks it missed rather than firing them back to back.
 */
export const nextRun = (
  recurrence: Recurrence,
  now: number,
  previous: number,
  horizonMs: number
): Option.Option<number> => {
  if (recurrence._tag === "Cron") return nextCronRun(recurrence.cron, recurrence.bothDays, now, horizonMs)
  const step = Duration.toMillis(recurrence.interval)
  const ticks = now < previous ? 1 : Math.floor((now - previous) / step) + 1
  const next = previous + ticks * step
  return Number.isFinite(next) && next > now && next <= now + horizonMs ? Option.some(next) : Option.none()
}

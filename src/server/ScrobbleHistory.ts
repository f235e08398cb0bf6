/**
 * The server's scrobble history: which track each user played when. The embedding server provides
 * its own as a layer; `embedded/EmbeddedScrobbleHistory` keeps one in `ndp.db` that `Scrobblers`
 * can fill. `getScrobbles` pages over it with the plugin ABI's cursor (`next` options carrying a
 * moved bound and an offset into the scrobbles sharing that bound's timestamp), so paging visits
 * every scrobble exactly once even when many share a timestamp.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

/** One scrobble: its ID (ties are ordered by it), the track and Unix seconds. */
export interface ScrobbleRef {
  readonly id: number
  readonly mediaFileId: string
  readonly submissionTime: number
}

/** Inclusive bounds in Unix seconds; absent = unbounded. */
export interface Range {
  readonly fromTimestamp?: number | undefined
  readonly toTimestamp?: number | undefined
}

/** One ordered slice of a user's scrobbles. */
export interface Slice extends Range {
  readonly descending: boolean
  readonly limit: number
  readonly offset: number
}

export class ScrobbleHistory extends Context.Tag("ndp-engine/ScrobbleHistory")<
  ScrobbleHistory,
  {
    /** Whether the server knows this user (to answer unknown and not-allowed users alike). */
    readonly hasUser: (username: string) => Effect.Effect<boolean>
    readonly firstTimestamp: (username: string) => Effect.Effect<Option.Option<number>>
    readonly lastTimestamp: (username: string) => Effect.Effect<Option.Option<number>>
    /** Scrobbles in range ordered by (submissionTime, id), reversed when descending. */
    readonly slice: (username: string, slice: Slice) => Effect.Effect<ReadonlyArray<ScrobbleRef>>
    readonly count: (username: string, range: Range) => Effect.Effect<number>
    /** Adds a scrobble (what `Scrobblers` calls for each scrobble it is given). */
    readonly record: (username: string, mediaFileId: string, submissionTime: number) => Effect.Effect<void>
  }
>() {}

/** `getScrobbles` options as the plugin sends them (already decoded and clamped). */
export interface PageOptions extends Range {
  readonly descending: boolean
  readonly maxItems: number
  readonly offset?: number | undefined
}

/** One page and the options for the next one (`None` once nothing remains). */
export interface Page {
  readonly scrobbles: ReadonlyArray<ScrobbleRef>
  readonly next: Option.Option<PageOptions>
}

/**
 * One page of `username`'s scrobbles. The next page's bound moves to the last timestamp returned
 * and `offset` counts the scrobbles at that timestamp already returned, so ties are neither
 * repeated nor skipped. One extra row is read to know whether anything remains.
 */
export const getScrobbles = (
  history: ScrobbleHistory["Type"],
  username: string,
  options: PageOptions
): Effect.Effect<Page> =>
  Effect.gen(function* () {
    const offset = Math.max(0, options.offset ?? 0)
    const rows = yield* history.slice(username, {
      fromTimestamp: options.fromTimestamp,
      toTimestamp: options.toTimestamp,
      descending: options.descending,
      limit: options.maxItems + 1,
      offset
    })
    const scrobbles = rows.slice(0, options.maxItems)
    if (rows.length <= options.maxItems || scrobbles.length === 0) return { scrobbles, next: Option.none() }
    const boundary = scrobbles[scrobbles.length - 1]!.submissionTime
    const atBoundary = scrobbles.filter((s) => s.submissionTime === boundary).length
    const bound = options.descending ? options.toTimestamp : options.fromTimestamp
    // Still inside the same run of tied timestamps: the offset grows instead of restarting.
    const nextOffset = bound === boundary ? offset + atBoundary : atBoundary
    return {
      scrobbles,
      next: Option.some({
        ...options,
        ...(options.descending ? { toTimestamp: boundary } : { fromTimestamp: boundary }),
        offset: nextOffset
      })
    }
  })

/**
 * Scrobbling through every loaded Scrobbler plugin, with a durable retry queue.
 *
 * `nowPlaying` and `scrobble` go to each loaded plugin with the Scrobbler capability for which the
 * user is allowed (`plugin.allowsUser`) and authorized (`isAuthorized`, asked on every send). What a
 * failure does depends on its kind:
 *
 * - `retry_later`: the scrobble is stored in the engine's storage (table `scrobble_queue`, with the
 *   plugin ID, the username and the full request) and retried with exponential backoff until it is
 *   accepted or ages out. Now-playing updates are never queued: they are stale by then.
 * - `unrecoverable`: dropped and logged.
 * - `not_authorized`: the user is marked unauthorized for the plugin (table `scrobble_unauthorized`)
 *   and skipped while `isAuthorized` says false; the mark is cleared once it says true again.
 *
 * A fiber in the service's scope processes the queue: on start, then every `tick`. Per plugin and
 * user, rows are sent oldest first; a row is deleted right after the plugin accepts it, so a row is
 * sent once — a crash between acceptance and the delete sends it again after restart. Processes
 * sharing the queue (a cluster's nodes, on `SharedStorage`) take turns per plugin with a lease.
 * Rows of a plugin that is no longer registered (its file was removed) are discarded.
 *
 * With a `ScrobbleHistory` in the context, every scrobble given to `scrobble` is also recorded there
 * (what the ScrobbleRetriever host service reads), whatever the plugins answer.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import * as Scrobbler from "../capabilities/Scrobbler.js"
import type { LoadedPlugin } from "../loader/PluginLoader.js"
import { ScrobbleHistory } from "../server/ScrobbleHistory.js"
import type { Storage } from "../storage/Storage.js"
import { PluginManager } from "./PluginManager.js"
import * as ScrobbleQueue from "./ScrobbleQueue.js"

/** The scrobble store could not be read or written. */
export class ScrobblersError extends Schema.TaggedError<ScrobblersError>()("ScrobblersError", {
  reason: Schema.Literal("Storage"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

export interface ScrobblersOptions {
  /** How often the queue is processed (default 10 s). */
  readonly tick?: Duration.DurationInput
  /** The first retry delay; it doubles with each failed attempt (default 30 s). */
  readonly retryInitial?: Duration.DurationInput
  /** The longest retry delay (default 1 h). */
  readonly retryMax?: Duration.DurationInput
  /** Queued scrobbles older than this are dropped (default 24 h). */
  readonly maxAge?: Duration.DurationInput
  /** Rows read per plugin and pass (default 500). */
  readonly batchSize?: number
  /**
   * How long a process's claim to drain a plugin's queue lasts without renewal (default 60 s): it
   * is renewed before each row, and bounds how long the rows of a process that died wait.
   */
  readonly drainLease?: Duration.DurationInput
}

/** What happened to a send for one plugin. */
export type Outcome = "sent" | "queued" | "dropped" | "not_allowed" | "not_authorized"

export interface Delivery {
  readonly pluginId: string
  readonly outcome: Outcome
}

export type QueuedScrobble = ScrobbleQueue.QueuedScrobble
export type UnauthorizedUser = ScrobbleQueue.UnauthorizedUser

export class Scrobblers extends Context.Tag("ndp-engine/Scrobblers")<
  Scrobblers,
  {
    /** Sends a now-playing update to every scrobbler; failures are logged, never queued. */
    readonly nowPlaying: (
      username: string,
      track: Scrobbler.TrackInfo,
      position: number
    ) => Effect.Effect<ReadonlyArray<Delivery>, ScrobblersError>
    /** Sends a scrobble (`timestamp`: Unix seconds) to every scrobbler, queueing it where asked to retry. */
    readonly scrobble: (
      username: string,
      track: Scrobbler.TrackInfo,
      timestamp: number
    ) => Effect.Effect<ReadonlyArray<Delivery>, ScrobblersError>
    /**
     * Sends a playback state report to every scrobbler that allows and authorizes the user. Never
     * queued or retried: a report is stale by then. A plugin without the export succeeds.
     */
    readonly playbackReport: (
      report: Scrobbler.PlaybackReport
    ) => Effect.Effect<ReadonlyArray<Delivery>, ScrobblersError>
    /** Processes the queue now (what the background fiber does every tick). */
    readonly flush: Effect.Effect<void, ScrobblersError>
    /** Queued scrobbles, oldest first. */
    readonly pending: Effect.Effect<ReadonlyArray<QueuedScrobble>, ScrobblersError>
    /** Users marked not authorized, by plugin. */
    readonly unauthorized: Effect.Effect<ReadonlyArray<UnauthorizedUser>, ScrobblersError>
  }
>() {}

const ArtistCredit = Schema.Struct({
  id: Schema.optionalWith(Schema.String, { exact: true }),
  name: Schema.String,
  mbid: Schema.optionalWith(Schema.String, { exact: true })
})

const TrackInfo = Schema.Struct({
  id: Schema.String,
  title: Schema.String,
  album: Schema.String,
  artist: Schema.String,
  albumArtist: Schema.String,
  artists: Schema.Array(ArtistCredit),
  albumArtists: Schema.Array(ArtistCredit),
  duration: Schema.Number,
  trackNumber: Schema.Number,
  discNumber: Schema.Number,
  mbzRecordingId: Schema.optionalWith(Schema.String, { exact: true }),
  mbzAlbumId: Schema.optionalWith(Schema.String, { exact: true }),
  mbzReleaseGroupId: Schema.optionalWith(Schema.String, { exact: true }),
  mbzReleaseTrackId: Schema.optionalWith(Schema.String, { exact: true })
})

const StoredRequest: Schema.Schema<Scrobbler.ScrobbleRequest, string> = Schema.parseJson(
  Schema.Struct({ username: Schema.String, track: TrackInfo, timestamp: Schema.Number })
)

// Fields the server added beyond the contract are sent again on retry, as they were the first time.
const decodeStored = Schema.decodeUnknownOption(StoredRequest, { onExcessProperty: "preserve" })

/** The result of one send, before the caller decides what it means (queue, drop, report). */
type Sent =
  | { readonly _tag: "Sent" }
  | { readonly _tag: "Skipped"; readonly outcome: "not_allowed" | "not_authorized" }
  | { readonly _tag: "Failed"; readonly retry: boolean; readonly error: Scrobbler.ScrobblerError }

const sent: Sent = { _tag: "Sent" }

const isScrobbler = (plugin: LoadedPlugin) => plugin.capabilities.includes("Scrobbler")

const make = (options: ScrobblersOptions = {}) =>
  Effect.gen(function* () {
    const manager = yield* PluginManager
    const rawStore = yield* ScrobbleQueue.make
    // When a history is in the context (Engine.layer embeds one), every scrobble is recorded there.
    const history = yield* Effect.serviceOption(ScrobbleHistory)
    const tick = options.tick ?? "10 seconds"
    const retryInitialMs = Duration.toMillis(options.retryInitial ?? "30 seconds")
    const retryMaxMs = Duration.toMillis(options.retryMax ?? "1 hour")
    const maxAgeMs = Duration.toMillis(options.maxAge ?? "24 hours")
    const batchSize = options.batchSize ?? 500
    const drainLeaseMs = Duration.toMillis(options.drainLease ?? "60 seconds")
    // Names this process among those sharing the queue (the nodes of a cluster).
    const holder = randomUUID()

    const storage = <A, E>(what: string, effect: Effect.Effect<A, E>) =>
      Effect.mapError(
        effect,
        (cause) =>
          new ScrobblersError({ reason: "Storage", message: `scrobble queue: could not ${what}`, cause })
      )

    const store = {
      enqueue: (row: Omit<QueuedScrobble, "id">) => storage("store a scrobble", rawStore.enqueue(row)),
      hasBacklog: (pluginId: string, username: string) =>
        storage("read the queue", rawStore.hasBacklog(pluginId, username)),
      isMarked: (pluginId: string, username: string) =>
        storage("read authorization marks", rawStore.isMarked(pluginId, username))
    }

    /** The delay before attempt `attempts + 1`. */
    const retryDelay = (attempts: number) =>
      Math.min(retryInitialMs * 2 ** Math.max(0, attempts - 1), retryMaxMs)

    /** Sends one request to one plugin, handling authorization and its marks. */
    const deliver = (
      plugin: LoadedPlugin,
      username: string,
      send: (client: Scrobbler.Scrobbler) => Effect.Effect<void, Scrobbler.ScrobblerError>
    ): Effect.Effect<Sent, ScrobblersError> =>
      Effect.gen(function* () {
        if (!plugin.allowsUser(username)) return { _tag: "Skipped", outcome: "not_allowed" } as const
        const client = Scrobbler.fromPlugin(plugin)
        const failed = (error: Scrobbler.ScrobblerError) =>
          Effect.gen(function* () {
            if (error.kind === "not_authorized") {
              if (!(yield* store.isMarked(plugin.id, username))) {
                const now = yield* Clock.currentTimeMillis
                yield* storage("mark a user", rawStore.mark(plugin.id, username, now))
                yield* Effect.logWarning(
                  `scrobbler ${plugin.id} says user ${username} is not authorized; skipping them until it says they are: ${error.message}`
                )
              }
              return { _tag: "Skipped", outcome: "not_authorized" } as const
            }
            // An unloaded plugin, a stopping engine or workers that cannot start are not the plugin's
            // refusal: try again later. An input over the size limit is never retried (unrecoverable).
            const retry =
              error.kind === "retry_later" ||
              error.callError === "PluginUnavailableError" ||
              error.callError === "WorkerStartError"
            return { _tag: "Failed", retry, error } as const
          })
        const authorized = yield* Effect.either(client.isAuthorized(username))
        if (authorized._tag === "Left") return yield* failed(authorized.left)
        if (!authorized.right) return { _tag: "Skipped", outcome: "not_authorized" } as const
        if (yield* store.isMarked(plugin.id, username)) {
          yield* storage("clear a mark", rawStore.unmark(plugin.id, username))
          yield* Effect.logInfo(`scrobbler ${plugin.id} authorizes user ${username} again`)
        }
        const result = yield* Effect.either(send(client))
        return result._tag === "Right" ? sent : yield* failed(result.left)
      })

    /**
     * The version of each plugin the queue knows: a new one (reloaded, enabled again) gets its rows
     * retried at the next pass whatever their backoff.
     */
    const seen = new Map<string, LoadedPlugin>()

    /** Runs `f` on each loaded scrobbler plugin, concurrently. */
    const eachScrobbler = (
      f: (plugin: LoadedPlugin) => Effect.Effect<Outcome, ScrobblersError>
    ): Effect.Effect<ReadonlyArray<Delivery>, ScrobblersError> =>
      Effect.flatMap(manager.loadedIds, (ids) =>
        Effect.forEach(
          ids,
          (id) =>
            manager
              .use(id, (plugin) =>
                Effect.suspend(() => {
                  if (!isScrobbler(plugin)) return Effect.succeedNone
                  // First contact: what is queued now was refused by this very version, so no wake-up.
                  if (!seen.has(id)) seen.set(id, plugin)
                  return Effect.map(f(plugin), (outcome) => Option.some<Delivery>({ pluginId: id, outcome }))
                })
              )
              .pipe(
                // Unloaded since `loadedIds` was read: nothing to send to.
                Effect.catchTag("ManagerError", () => Effect.succeedNone),
                Effect.annotateLogs("plugin", id)
              ),
          { concurrency: "unbounded" }
        ).pipe(Effect.map((found) => found.flatMap(Option.toArray)))
      )

    const nowPlaying = Effect.fn("Scrobblers.nowPlaying")(function* (
      username: string,
      track: Scrobbler.TrackInfo,
      position: number
    ) {
      return yield* eachScrobbler((plugin) =>
        Effect.gen(function* () {
          const result = yield* deliver(plugin, username, (c) => c.nowPlaying({ username, track, position }))
          if (result._tag === "Sent") return "sent"
          if (result._tag === "Skipped") return result.outcome
          yield* Effect.logWarning(
            `scrobbler ${plugin.id} failed now playing for ${username} (${result.error.kind}; not retried): ${result.error.message}`
          )
          return "dropped"
        })
      ).pipe(Effect.annotateLogs("user", username))
    })

    const playbackReport = Effect.fn("Scrobblers.playbackReport")(function* (
      report: Scrobbler.PlaybackReport
    ) {
      return yield* eachScrobbler((plugin) =>
        Effect.flatMap(
          deliver(plugin, report.username, (c) => c.playbackReport(report)),
          (result): Effect.Effect<Outcome> =>
            result._tag === "Sent"
              ? Effect.succeed("sent")
              : result._tag === "Skipped"
                ? Effect.succeed(result.outcome)
                : Effect.as(
                    Effect.logWarning(
                      `scrobbler ${plugin.id} failed a playback report for ${report.username} (${result.error.kind}; not retried): ${result.error.message}`
                    ),
                    "dropped"
                  )
        )
      ).pipe(Effect.annotateLogs("user", report.username))
    })

    const scrobble = Effect.fn("Scrobblers.scrobble")(function* (
      username: string,
      track: Scrobbler.TrackInfo,
      timestamp: number
    ) {
      const request: Scrobbler.ScrobbleRequest = { username, track, timestamp }
      if (Option.isSome(history)) yield* history.value.record(username, track.id, timestamp)
      const json = JSON.stringify(request)
      const enqueue = (pluginId: string, attempts: number, lastError: string | null) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          yield* store.enqueue({
            pluginId,
            username,
            request: json,
            attempts,
            nextAttemptAt: now + (attempts === 0 ? 0 : retryDelay(attempts)),
            createdAt: now,
            lastError
          })
        })
      return yield* eachScrobbler((plugin) =>
        Effect.gen(function* () {
          if (!plugin.allowsUser(username)) return "not_allowed"
          // Keeps the user's scrobbles in order: a new one waits behind those already queued.
          if (yield* store.hasBacklog(plugin.id, username)) {
            yield* enqueue(plugin.id, 0, null)
            return "queued"
          }
          const result = yield* deliver(plugin, username, (c) => c.scrobble(request))
          if (result._tag === "Sent") return "sent"
          if (result._tag === "Skipped") return result.outcome
          if (result.retry) {
            yield* enqueue(plugin.id, 1, result.error.message)
            yield* Effect.logInfo(
              `scrobbler ${plugin.id} asked to retry a scrobble for ${username}; queued: ${result.error.message}`
            )
            return "queued"
          }
          yield* Effect.logWarning(
            `scrobbler ${plugin.id} refused a scrobble for ${username} (${result.error.kind}); dropped: ${result.error.message}`
          )
          return "dropped"
        })
      ).pipe(Effect.annotateLogs("user", username))
    })

    /** Takes or renews this process's right to drain the plugin's queue. */
    const claim = (pluginId: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        storage("claim the queue", rawStore.claimDrain(pluginId, holder, now, now + drainLeaseMs))
      )

    /**
     * Sends a plugin's due rows, oldest first per user; stops for a user at their first row not sent.
     * Only the process holding the plugin's drain lease sends: on a cluster, a row is never sent by
     * two nodes at once, and a dead node's rows are sent by another once its lease has run out.
     */
    const drain = (pluginId: string) =>
      Effect.gen(function* () {
        if (!(yield* claim(pluginId))) return
        yield* drainClaimed(pluginId).pipe(
          Effect.ensuring(Effect.ignore(rawStore.releaseDrain(pluginId, holder)))
        )
      })

    const drainClaimed = (pluginId: string) =>
      Effect.gen(function* () {
        const rows = yield* storage("read the queue", rawStore.rowsOf(pluginId, batchSize))
        const blocked = new Set<string>()
        for (const row of rows) {
          if (blocked.has(row.username)) continue
          // Lost if this process stalled past its lease and another took the queue over.
          if (!(yield* claim(pluginId))) return
          const now = yield* Clock.currentTimeMillis
          if (row.nextAttemptAt > now) {
            blocked.add(row.username)
            continue
          }
          const drop = (why: string) =>
            Effect.zipRight(
              storage("delete a scrobble", rawStore.remove(row.id)),
              Effect.logWarning(`queued scrobble ${row.id} for ${row.username} dropped: ${why}`)
            )
          const request = decodeStored(row.request)
          if (Option.isNone(request)) {
            yield* drop("its stored request is unreadable")
            continue
          }
          const result = yield* manager
            .use(pluginId, (plugin) =>
              isScrobbler(plugin)
                ? deliver(plugin, row.username, (c) => c.scrobble(request.value))
                : Effect.succeed<Sent>({
                    _tag: "Failed",
                    retry: false,
                    error: new Scrobbler.ScrobblerError({
                      pluginId,
                      kind: "unrecoverable",
                      message: `plugin ${pluginId} is no longer a scrobbler`
                    })
                  })
            )
            .pipe(
              Effect.map(Option.some),
              Effect.catchTag("ManagerError", () => Effect.succeedNone)
            )
          // Unloaded meanwhile: its rows wait for it to come back.
          if (Option.isNone(result)) return
          const outcome = result.value
          if (outcome._tag === "Sent") {
            yield* storage("delete a sent scrobble", rawStore.remove(row.id))
            yield* Effect.logInfo(
              `queued scrobble ${row.id} for ${row.username} delivered (attempt ${row.attempts + 1})`
            )
          } else if (outcome._tag === "Skipped") {
            yield* drop(
              outcome.outcome === "not_allowed" ? "the user is no longer allowed" : "not authorized"
            )
          } else if (outcome.retry) {
            const attempts = row.attempts + 1
            const delay = retryDelay(attempts)
            yield* storage(
              "reschedule a scrobble",
              rawStore.reschedule(
                row.id,
                attempts,
                (yield* Clock.currentTimeMillis) + delay,
                outcome.error.message
              )
            )
            yield* Effect.logInfo(
              `queued scrobble ${row.id} for ${row.username} still refused (attempt ${attempts}); next try in ${Duration.format(delay)}: ${outcome.error.message}`
            )
            blocked.add(row.username)
          } else {
            yield* drop(`${outcome.error.kind}: ${outcome.error.message}`)
          }
        }
      }).pipe(Effect.annotateLogs("plugin", pluginId))

    const lock = yield* Effect.makeSemaphore(1)

    const pass = lock.withPermits(1)(
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const counts = yield* storage("count the queue", rawStore.counts)
        // Without the list (registry unreadable) nothing is discarded this pass.
        const listed = yield* Effect.option(manager.list)
        const registered = new Set(
          Option.match(listed, { onNone: () => [], onSome: (l) => l.map((s) => s.id) })
        )
        for (const pluginId of Option.isSome(listed)
          ? yield* storage("list queued plugins", rawStore.plugins)
          : []) {
          if (registered.has(pluginId)) continue
          yield* storage("discard a removed plugin's scrobbles", rawStore.dropPlugin(pluginId))
          seen.delete(pluginId)
          const count = counts.find((c) => c.pluginId === pluginId)?.count ?? 0
          yield* Effect.logInfo(`plugin ${pluginId} was removed; discarded its ${count} queued scrobbles`)
        }
        for (const { count, pluginId } of yield* storage(
          "drop old scrobbles",
          rawStore.dropOlderThan(now - maxAgeMs)
        )) {
          yield* Effect.logWarning(
            `dropped ${count} queued scrobbles for plugin ${pluginId}: not accepted within ${Duration.format(maxAgeMs)}`
          )
        }
        const queued = new Set(counts.map((c) => c.pluginId))
        for (const id of yield* manager.loadedIds) {
          const version = yield* Effect.option(manager.use(id, Effect.succeed))
          if (Option.isNone(version)) continue
          if (seen.get(id) !== version.value) {
            seen.set(id, version.value)
            if (queued.has(id)) yield* storage("wake the queue", rawStore.wake(id, now))
          }
          if (queued.has(id)) yield* drain(id)
        }
      })
    )

    yield* Effect.forkScoped(
      pass.pipe(
        Effect.catchAll((error) => Effect.logWarning(`scrobble queue pass failed: ${error.message}`)),
        // A bug in one pass must not stop the queue for the rest of the process.
        Effect.catchAllDefect((defect) => Effect.logError("scrobble queue pass crashed", defect)),
        Effect.repeat(Schedule.spaced(tick))
      )
    )

    return Scrobblers.of({
      nowPlaying,
      scrobble,
      playbackReport,
      flush: pass.pipe(Effect.withSpan("Scrobblers.flush")),
      pending: storage("read the queue", rawStore.all),
      unauthorized: storage("read authorization marks", rawStore.marks)
    })
  })

/** Scrobbling over the manager's plugins, with its queue in the engine's storage. */
export const layer = (
  options: ScrobblersOptions = {}
): Layer.Layer<Scrobblers, never, PluginManager | Storage> => Layer.scoped(Scrobblers, make(options))

/** The one error of the Scheduler service: a refused request, reported in-band to the guest. */
import * as Schema from "effect/Schema"

/** Why the scheduler refused a request or ended a schedule. */
export const SchedulerErrorReason = Schema.Literal(
  /** The request is malformed: a bad cron expression or `@every` duration, an over-long ID or payload. */
  "InvalidSchedule",
  /** The schedule would not fire within the horizon (5 years): a day that never exists, a huge delay. */
  "NeverFires",
  /** A recurring interval shorter than the minimum (1 s by default). */
  "TooFrequent",
  /** The plugin already has as many live schedules as it may (200 by default). */
  "TooManySchedules",
  /** The requested ID belongs to a live schedule of the plugin. */
  "DuplicateId",
  /** No live schedule has that ID. */
  "NotFound",
  /** The plugin is being unloaded; no schedule can start any more. */
  "ShuttingDown"
)
export type SchedulerErrorReason = typeof SchedulerErrorReason.Type

/** A Scheduler request was refused; `message` is what the guest sees as `{"error": message}`. */
export class SchedulerError extends Schema.TaggedError<SchedulerError>()("SchedulerError", {
  reason: SchedulerErrorReason,
  message: Schema.String
}) {}

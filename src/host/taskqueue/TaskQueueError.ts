/** The one error of the TaskQueue service: a refused request or a storage failure, reported in-band. */
import * as Schema from "effect/Schema"

/** Why the task queue refused a request. */
export const TaskQueueErrorReason = Schema.Literal(
  /** A malformed request: an empty or over-long queue name, an over-long payload. */
  "InvalidRequest",
  /** The queue is already defined in this load of the plugin. */
  "QueueExists",
  /** No queue of that name was created in this load of the plugin. */
  "QueueNotFound",
  /** No task has that ID (or it was cleaned up after its retention). */
  "TaskNotFound",
  /** The task is no longer pending: it cannot be cancelled. */
  "NotCancellable",
  /** The plugin's `taskqueue.maxConcurrency` is used up by its other queues. */
  "ConcurrencyExhausted",
  /** A bound against flooding: queues per plugin, pending tasks per queue, pending payload bytes. */
  "LimitReached",
  /** The plugin is being unloaded. */
  "ShuttingDown",
  /** SQLite failed (I/O, corruption, a closed database). */
  "Storage"
)
export type TaskQueueErrorReason = typeof TaskQueueErrorReason.Type

/** A TaskQueue request failed; `message` is what the guest sees as `{"error": message}`. */
export class TaskQueueError extends Schema.TaggedError<TaskQueueError>()("TaskQueueError", {
  reason: TaskQueueErrorReason,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/**
 * Typed failures of loading and calling a plugin. Call failures are separate classes because the
 * embedding server branches on them (a timeout is retried differently from a plugin's own error);
 * every message says what happened and what the user can do about it.
 */
import * as Schema from "effect/Schema"

const callFields = {
  pluginId: Schema.String,
  export: Schema.String,
  message: Schema.String
}

/** The plugin could not be loaded: bad package, manifest, config, module, imports or start. */
export class PluginLoadError extends Schema.TaggedError<PluginLoadError>()("PluginLoadError", {
  pluginId: Schema.String,
  reason: Schema.Literal("Package", "Manifest", "Config", "Compile", "Link", "Memory", "Start"),
  message: Schema.String,
  /** For `Link`: the import that cannot be satisfied. */
  missingImport: Schema.optional(Schema.Struct({ module: Schema.String, name: Schema.String })),
  /** For `Link`: the manifest permission that would provide the import. */
  permission: Schema.optional(Schema.String)
}) {}

/**
 * The call did not finish within its timeout. `Running` (the default when absent): it ran that long,
 * and the worker running it was stopped and replaced. `Queued`: it waited that long for a free
 * worker and never started (the pool is saturated); no worker was stopped.
 */
export class PluginTimeoutError extends Schema.TaggedError<PluginTimeoutError>()("PluginTimeoutError", {
  ...callFields,
  timeoutMs: Schema.Number,
  phase: Schema.optional(Schema.Literal("Running", "Queued"))
}) {}

/** The plugin trapped (unreachable, out-of-bounds access, stack overflow, proc_exit…). */
export class PluginTrapError extends Schema.TaggedError<PluginTrapError>()("PluginTrapError", callFields) {}

/** The plugin exceeded a memory limit (linear memory, host memory or vars). */
export class PluginMemoryError extends Schema.TaggedError<PluginMemoryError>()(
  "PluginMemoryError",
  callFields
) {}

/** The plugin reported a failure itself: an Extism error, or a non-zero return code. */
export class PluginFailedError extends Schema.TaggedError<PluginFailedError>()("PluginFailedError", {
  ...callFields,
  exitCode: Schema.optional(Schema.Number)
}) {}

/** The export returned -2, or does not exist: the plugin does not implement it. */
export class PluginNotImplementedError extends Schema.TaggedError<PluginNotImplementedError>()(
  "PluginNotImplementedError",
  callFields
) {}

/** The plugin's output is too large or not what the contract says it must be. */
export class PluginOutputError extends Schema.TaggedError<PluginOutputError>()("PluginOutputError", {
  ...callFields,
  reason: Schema.Literal("TooLarge", "InvalidJson", "InvalidShape")
}) {}

/** The call could not run: the plugin is unloaded or the engine is shutting down. */
export class PluginUnavailableError extends Schema.TaggedError<PluginUnavailableError>()(
  "PluginUnavailableError",
  callFields
) {}

/** The call's input is larger than the runtime's `maxInputBytes`; retrying the same input never helps. */
export class PluginInputTooLargeError extends Schema.TaggedError<PluginInputTooLargeError>()(
  "PluginInputTooLargeError",
  {
    ...callFields,
    inputBytes: Schema.Number,
    limitBytes: Schema.Number
  }
) {}

/**
 * The call could not run because the engine cannot start worker threads (each start attempt died
 * before it was ready); the pool keeps retrying with back-off. An engine problem, not the plugin's.
 */
export class WorkerStartError extends Schema.TaggedError<WorkerStartError>()("WorkerStartError", {
  ...callFields,
  /** Start attempts that failed in a row so far. */
  attempts: Schema.Number
}) {}

export type PluginCallError =
  | PluginTimeoutError
  | PluginTrapError
  | PluginMemoryError
  | PluginFailedError
  | PluginNotImplementedError
  | PluginOutputError
  | PluginUnavailableError
  | PluginInputTooLargeError
  | WorkerStartError

/** The plugin manager's error, in a module of its own so every part of the manager can raise it. */
import * as Schema from "effect/Schema"

/** A manager operation failed; `reason` says why, `message` says what to do. */
export class ManagerError extends Schema.TaggedError<ManagerError>()("ManagerError", {
  reason: Schema.Literal(
    "NotFound",
    "NotLoaded",
    "PermissionGate",
    "InvalidConfig",
    "InvalidNetwork",
    "LoadFailed",
    "Registry",
    "Watch"
  ),
  pluginId: Schema.String,
  message: Schema.String
}) {}

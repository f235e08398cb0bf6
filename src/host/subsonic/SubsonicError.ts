/** The one error of the Subsonic API service: a refused request, reported in-band to the guest. */
import * as Schema from "effect/Schema"

/** Why the Subsonic API service refused a request. */
export const SubsonicErrorReason = Schema.Literal(
  /** The URI cannot be parsed or lacks the user (`u`). */
  "BadRequest",
  /** The user is unknown or not allowed for the plugin. */
  "Forbidden",
  /** `subsonicapi_call` got a binary answer; `subsonicapi_callraw` is for those. */
  "NotJson"
)
export type SubsonicErrorReason = typeof SubsonicErrorReason.Type

/** A Subsonic API request was refused; `message` is what the guest sees as `{"error": message}`. */
export class SubsonicError extends Schema.TaggedError<SubsonicError>()("SubsonicError", {
  reason: SubsonicErrorReason,
  message: Schema.String
}) {}

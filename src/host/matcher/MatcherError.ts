/** The one error of the Matcher host service, reported in-band to the guest. */
import * as Schema from "effect/Schema"

/** A refused request; `message` is what the guest sees as `{"error": message}`. */
export class MatcherError extends Schema.TaggedError<MatcherError>()("MatcherError", {
  reason: Schema.Literal("TooManySongs", "UserNotAvailable"),
  message: Schema.String
}) {}

/** The one error of the Cache service: a refused write, reported in-band to the guest. */
import * as Schema from "effect/Schema"

/** Why the cache refused a request. */
export const CacheErrorReason = Schema.Literal(
  /** The entry alone is larger than the plugin's whole cache (`maxBytes`). */
  "TooLarge"
)

/** A cache request was refused; `message` is what the guest sees as `{"error": message}`. */
export class CacheError extends Schema.TaggedError<CacheError>()("CacheError", {
  reason: CacheErrorReason,
  message: Schema.String
}) {}

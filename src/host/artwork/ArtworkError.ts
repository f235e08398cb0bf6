/** The one error of the Artwork service: a refused request, reported in-band to the guest. */
import * as Schema from "effect/Schema"

/** Why the Artwork service refused a request. */
export const ArtworkErrorReason = Schema.Literal(
  /** A required field is missing (an empty `id`). */
  "BadRequest"
)
export type ArtworkErrorReason = typeof ArtworkErrorReason.Type

/** An Artwork request was refused; `message` is what the guest sees as `{"error": message}`. */
export class ArtworkError extends Schema.TaggedError<ArtworkError>()("ArtworkError", {
  reason: ArtworkErrorReason,
  message: Schema.String
}) {}

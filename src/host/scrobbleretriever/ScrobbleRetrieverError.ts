/** The one error of the ScrobbleRetriever host service, reported in-band to the guest. */
import * as Schema from "effect/Schema"

/** A refused request; `message` is what the guest sees as `{"error": message}`. */
export class ScrobbleRetrieverError extends Schema.TaggedError<ScrobbleRetrieverError>()(
  "ScrobbleRetrieverError",
  {
    reason: Schema.Literal("UserNotAvailable", "InvalidArgument"),
    message: Schema.String
  }
) {}

/** The one error of the Library service: a refused request, reported in-band to the guest. */
import * as Schema from "effect/Schema"

/** Why the Library service refused a request. */
export const LibraryErrorReason = Schema.Literal(
  /** No library with that ID, or one the administrator did not allow for the plugin (they read alike). */
  "NotFound"
)
export type LibraryErrorReason = typeof LibraryErrorReason.Type

/** A Library request was refused; `message` is what the guest sees as `{"error": message}`. */
export class LibraryError extends Schema.TaggedError<LibraryError>()("LibraryError", {
  reason: LibraryErrorReason,
  message: Schema.String
}) {}

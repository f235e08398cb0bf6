/** The error of the embedded library catalogue. */
import * as Schema from "effect/Schema"

/** Why registering a library or reading the catalogue failed. */
export class EmbeddedLibraryError extends Schema.TaggedError<EmbeddedLibraryError>()("EmbeddedLibraryError", {
  reason: Schema.Literal("InvalidId", "IdTaken", "NotADirectory", "Scan", "Database"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

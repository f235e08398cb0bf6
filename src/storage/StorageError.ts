/** The one error of the storage service: the database could not be opened or migrated. */
import * as Schema from "effect/Schema"

/** Opening or migrating the engine's database failed; `message` says where and what to check. */
export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  reason: Schema.Literal("Open", "Migrate"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

import * as Schema from "effect/Schema"

/** Why a plugin package could not be read. */
export const PackageErrorReason = Schema.Literal(
  "NotFound",
  "ReadFailed",
  "InvalidId",
  "InvalidZip",
  "MissingEntry",
  "TooLarge",
  "TooManyEntries",
  "CompressionRatio",
  "Unsupported",
  "InvalidManifestEncoding"
)

/** The reason literal of a {@link PackageError}. */
export type PackageErrorReason = typeof PackageErrorReason.Type

/** A `.ndp` package (or its file name) was rejected; `message` says what to fix. */
export class PackageError extends Schema.TaggedError<PackageError>()("PackageError", {
  reason: PackageErrorReason,
  message: Schema.String
}) {}

/** The one error of the KV store: a refused request or a storage failure, reported in-band to the guest. */
import * as Schema from "effect/Schema"

/** Why a KV store operation failed. */
export const KvStoreErrorReason = Schema.Literal(
  /** The key breaks a key rule (empty, longer than 256 bytes, not valid UTF-8). */
  "InvalidKey",
  /** Another request field is out of range (a TTL ≤ 0, an empty prefix to delete). */
  "InvalidArgument",
  /** The write would take the store over its `maxSize` (key and value bytes both count). */
  "StorageLimitExceeded",
  /** The write would add a key to a store that holds its maximum number of keys. */
  "TooManyKeys",
  /** SQLite failed (I/O, corruption, a closed store). */
  "Storage"
)

/** A KV store operation failed; `message` is what the guest sees as `{"error": message}`. */
export class KvStoreError extends Schema.TaggedError<KvStoreError>()("KvStoreError", {
  reason: KvStoreErrorReason,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

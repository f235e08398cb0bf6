/**
 * The key rules of the KV store as plain functions, free of Effect: the store (`KvStore.checkKey`)
 * and the execution worker, which answers reads itself (docs/decisions/0035-host-calls-in-the-worker.md),
 * share them, so both accept exactly the same keys.
 */

/** The longest key, in bytes of UTF-8. */
export const maxKeyBytes = 256

// Node 20 has `String.prototype.isWellFormed`; the ES2023 lib of this project does not declare it.
export const isWellFormed = (text: string): boolean =>
  (text as string & { isWellFormed(): boolean }).isWellFormed()

/** Why the store refuses `key`, or its length in bytes of UTF-8 when it passes. */
export const keyProblem = (key: string): { readonly problem: string } | { readonly bytes: number } => {
  if (key.length === 0) return { problem: "key must not be empty" }
  if (!isWellFormed(key)) return { problem: "key is not valid UTF-8 (it holds a lone surrogate)" }
  // Exact: the byte count is also what the key costs against the store's size limit.
  const bytes = Buffer.byteLength(key, "utf8")
  return bytes > maxKeyBytes
    ? { problem: `key is ${bytes} bytes long; the limit is ${maxKeyBytes} bytes` }
    : { bytes }
}

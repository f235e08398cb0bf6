/**
 * Random IDs the host hands to plugins (schedule IDs, WebSocket connection IDs): base62 text drawn
 * from the operating system's CSPRNG without modulo bias.
 */
import { randomFillSync } from "node:crypto"

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/** 248 = 4 × 62: bytes at or above it are rejected, so `byte % 62` gives every character 4 of 248. */
const ACCEPT_BELOW = 248

/** The default length: 22 characters of base62 hold about 131 bits. */
export const defaultIdLength = 22

/**
 * A random base62 ID of `length` characters, every character equally likely (rejection sampling:
 * `byte % 62` over all 256 byte values would make `0`–`7` a quarter more likely than the rest).
 */
export const randomBase62 = (length: number = defaultIdLength): string => {
  // 3% of bytes are rejected; a few spare bytes make a second draw rare.
  const bytes = new Uint8Array(length + 8)
  let id = ""
  while (id.length < length) {
    randomFillSync(bytes)
    for (let i = 0; i < bytes.length && id.length < length; i++) {
      const byte = bytes[i]!
      if (byte < ACCEPT_BELOW) id += BASE62[byte % 62]
    }
  }
  return id
}

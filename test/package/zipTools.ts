// Hand-made zip archives for tests that need headers a real zip tool would never write.
import { deflateSync } from "fflate"
import * as Zlib from "node:zlib"
import { crc32 } from "../../src/package/Zip.js"

export interface RawEntry {
  readonly name: string
  /** The bytes as stored in the archive (already deflated when `method` is 8). */
  readonly data: Uint8Array
  readonly method?: number
  readonly crc?: number
  readonly uncompressedSize?: number
  readonly flags?: number
}

/** A stored (uncompressed) entry with correct sizes and CRC. */
export const stored = (name: string, content: Uint8Array | string): RawEntry => {
  const data = typeof content === "string" ? new TextEncoder().encode(content) : content
  return { name, data, method: 0, crc: crc32(data), uncompressedSize: data.length }
}

/** A deflated entry with correct sizes and CRC. */
export const deflated = (name: string, content: Uint8Array | string): RawEntry => {
  const raw = typeof content === "string" ? new TextEncoder().encode(content) : content
  return { name, data: deflateSync(raw), method: 8, crc: crc32(raw), uncompressedSize: raw.length }
}

/** Writes a zip archive with exactly the given headers. */
export const buildZip = (entries: ReadonlyArray<RawEntry>): Uint8Array => {
  const encoder = new TextEncoder()
  const locals: Array<Uint8Array> = []
  const centrals: Array<Uint8Array> = []
  let offset = 0
  for (const entry of entries) {
    const name = encoder.encode(entry.name)
    const method = entry.method ?? 0
    const crc = entry.crc ?? crc32(entry.data)
    const size = entry.uncompressedSize ?? entry.data.length
    const flags = entry.flags ?? 0x800
    const local = new Uint8Array(30 + name.length)
    const lv = new DataView(local.buffer)
    lv.setUint32(0, 0x04034b50, true)
    lv.setUint16(4, 20, true)
    lv.setUint16(6, flags, true)
    lv.setUint16(8, method, true)
    lv.setUint32(14, crc, true)
    lv.setUint32(18, entry.data.length, true)
    lv.setUint32(22, size, true)
    lv.setUint16(26, name.length, true)
    local.set(name, 30)
    const central = new Uint8Array(46 + name.length)
    const cv = new DataView(central.buffer)
    cv.setUint32(0, 0x02014b50, true)
    cv.setUint16(4, 20, true)
    cv.setUint16(6, 20, true)
    cv.setUint16(8, flags, true)
    cv.setUint16(10, method, true)
    cv.setUint32(16, crc, true)
    cv.setUint32(20, entry.data.length, true)
    cv.setUint32(24, size, true)
    cv.setUint16(28, name.length, true)
    cv.setUint32(42, offset, true)
    central.set(name, 46)
    locals.push(local, entry.data)
    centrals.push(central)
    offset += local.length + entry.data.length
  }
  const centralSize = centrals.reduce((n, c) => n + c.length, 0)
  const eocd = new Uint8Array(22)
  const ev = new DataView(eocd.buffer)
  ev.setUint32(0, 0x06054b50, true)
  ev.setUint16(8, entries.length, true)
  ev.setUint16(10, entries.length, true)
  ev.setUint32(12, centralSize, true)
  ev.setUint32(16, offset, true)
  const parts = [...locals, ...centrals, eocd]
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}

/**
 * A raw deflate stream of `mebibytes` MiB of zeros, built without ever holding the zeros: one
 * sync-flushed MiB repeated (each copy is a complete, byte-aligned run of non-final blocks) and a
 * final empty block. About 1 KiB per MiB.
 */
export const zerosDeflate = (mebibytes: number): Uint8Array => {
  const chunk = Zlib.deflateRawSync(Buffer.alloc(1024 * 1024), {
    level: 9,
    finishFlush: Zlib.constants.Z_SYNC_FLUSH
  })
  // BFINAL=1, fixed Huffman, end-of-block: a final block that adds nothing.
  const finalBlock = Uint8Array.of(0x03, 0x00)
  const out = new Uint8Array(chunk.length * mebibytes + finalBlock.length)
  for (let i = 0; i < mebibytes; i++) out.set(chunk, i * chunk.length)
  out.set(finalBlock, chunk.length * mebibytes)
  return out
}

/** The CRC-32 of `mebibytes` MiB of zeros, computed a MiB at a time. */
export const zerosCrc = (mebibytes: number): number => {
  const mib = new Uint8Array(1024 * 1024)
  let crc = 0
  for (let i = 0; i < mebibytes; i++) crc = crc32(mib, crc)
  return crc
}

/** The smallest valid WebAssembly module: magic and version. */
export const emptyWasm = Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00)

export const minimalManifest = JSON.stringify({ name: "Test", author: "Tester", version: "1.0.0" })

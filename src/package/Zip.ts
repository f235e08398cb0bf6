/**
 * A deliberately small zip reader for `.ndp` packages. It trusts nothing in the archive: counts and
 * declared sizes are checked before anything is inflated, and inflation stops at the declared size
 * so a lying header cannot make us allocate more than the caller's limit.
 */
import * as Effect from "effect/Effect"
import * as Zlib from "node:zlib"
import { PackageError } from "./PackageError.js"

/** One central-directory record, as the archive declares it (sizes not yet verified). */
export interface ZipEntry {
  readonly name: string
  readonly flags: number
  readonly method: number
  readonly crc32: number
  readonly compressedSize: number
  readonly uncompressedSize: number
  readonly localHeaderOffset: number
}

/** Bounds applied while extracting one entry. */
export interface ExtractLimits {
  /** Largest uncompressed size accepted for this entry. */
  readonly maxBytes: number
  /** Largest uncompressed/compressed ratio accepted for this entry. */
  readonly maxCompressionRatio: number
}

const EOCD_SIGNATURE = 0x06054b50
const EOCD_SIZE = 22
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50
const ZIP64_LOCATOR_SIZE = 20
const CENTRAL_SIGNATURE = 0x02014b50
const CENTRAL_SIZE = 46
const LOCAL_SIGNATURE = 0x04034b50
const LOCAL_SIZE = 30
const MAX_COMMENT = 0xffff
const FLAG_ENCRYPTED = 0x1
const FLAG_UTF8 = 0x800
const METHOD_STORED = 0
const METHOD_DEFLATE = 8

const invalid = (message: string) => new PackageError({ reason: "InvalidZip", message })

const view = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)

const utf8 = new TextDecoder("utf-8")
// Names without the UTF-8 flag are CP437; only ASCII names matter to us, and latin1 keeps them intact.
const latin1 = new TextDecoder("latin1")

const findEndOfCentralDirectory = (bytes: Uint8Array, dv: DataView): number => {
  const lowest = Math.max(0, bytes.length - EOCD_SIZE - MAX_COMMENT)
  for (let i = bytes.length - EOCD_SIZE; i >= lowest; i--) {
    if (
      dv.getUint32(i, true) === EOCD_SIGNATURE &&
      i + EOCD_SIZE + dv.getUint16(i + 20, true) <= bytes.length
    ) {
      return i
    }
  }
  return -1
}

/**
 * Parses the end-of-central-directory record and the central directory. Fails with "TooManyEntries"
 * before reading any record when the archive declares more than `maxEntries`.
 */
export const readCentralDirectory = (
  bytes: Uint8Array,
  maxEntries: number
): Effect.Effect<ReadonlyArray<ZipEntry>, PackageError> =>
  Effect.suspend(() => {
    if (bytes.length < EOCD_SIZE) {
      return Effect.fail(
        invalid(`package is not a zip archive (only ${bytes.length} bytes); rebuild the .ndp`)
      )
    }
    const dv = view(bytes)
    const eocd = findEndOfCentralDirectory(bytes, dv)
    if (eocd < 0) {
      return Effect.fail(
        invalid("package is not a zip archive (no end-of-central-directory record found); rebuild the .ndp")
      )
    }
    const diskNumber = dv.getUint16(eocd + 4, true)
    const centralDisk = dv.getUint16(eocd + 6, true)
    const entriesOnDisk = dv.getUint16(eocd + 8, true)
    const totalEntries = dv.getUint16(eocd + 10, true)
    const centralSize = dv.getUint32(eocd + 12, true)
    const centralOffset = dv.getUint32(eocd + 16, true)
    const zip64Locator =
      eocd >= ZIP64_LOCATOR_SIZE && dv.getUint32(eocd - ZIP64_LOCATOR_SIZE, true) === ZIP64_LOCATOR_SIGNATURE
    if (
      zip64Locator ||
      totalEntries === 0xffff ||
      entriesOnDisk === 0xffff ||
      centralSize === 0xffffffff ||
      centralOffset === 0xffffffff
    ) {
      return Effect.fail(
        new PackageError({
          reason: "Unsupported",
          message: "package is a ZIP64 archive, which is not supported; repack it as a regular zip"
        })
      )
    }
    if (diskNumber !== 0 || centralDisk !== 0 || entriesOnDisk !== totalEntries) {
      return Effect.fail(
        new PackageError({
          reason: "Unsupported",
          message:
            "package is a split (multi-volume) zip archive, which is not supported; repack it as one file"
        })
      )
    }
    if (totalEntries > maxEntries) {
      return Effect.fail(
        new PackageError({
          reason: "TooManyEntries",
          message: `package has ${totalEntries} entries, more than the limit of ${maxEntries}; remove unneeded files from the .ndp`
        })
      )
    }
    const centralEnd = centralOffset + centralSize
    if (centralEnd > eocd || totalEntries * CENTRAL_SIZE > centralSize) {
      return Effect.fail(invalid("package zip is corrupt: its central directory does not fit in the file"))
    }
    const entries: Array<ZipEntry> = []
    let pos = centralOffset
    for (let i = 0; i < totalEntries; i++) {
      if (pos + CENTRAL_SIZE > centralEnd || dv.getUint32(pos, true) !== CENTRAL_SIGNATURE) {
        return Effect.fail(invalid(`package zip is corrupt: central directory record ${i + 1} is malformed`))
      }
      const nameLength = dv.getUint16(pos + 28, true)
      const recordEnd =
        pos + CENTRAL_SIZE + nameLength + dv.getUint16(pos + 30, true) + dv.getUint16(pos + 32, true)
      if (recordEnd > centralEnd) {
        return Effect.fail(invalid(`package zip is corrupt: central directory record ${i + 1} is truncated`))
      }
      const flags = dv.getUint16(pos + 8, true)
      const rawName = bytes.subarray(pos + CENTRAL_SIZE, pos + CENTRAL_SIZE + nameLength)
      entries.push({
        name: (flags & FLAG_UTF8 ? utf8 : latin1).decode(rawName),
        flags,
        method: dv.getUint16(pos + 10, true),
        crc32: dv.getUint32(pos + 16, true),
        compressedSize: dv.getUint32(pos + 20, true),
        uncompressedSize: dv.getUint32(pos + 24, true),
        localHeaderOffset: dv.getUint32(pos + 42, true)
      })
      pos = recordEnd
    }
    return Effect.succeed(entries)
  })

// The output of one entry, as its own ArrayBuffer: zlib may hand back a slice of a shared pool.
const ownBytes = (buffer: Uint8Array): Uint8Array =>
  buffer.byteOffset === 0 && buffer.byteLength === buffer.buffer.byteLength
    ? new Uint8Array(buffer.buffer, 0, buffer.byteLength)
    : new Uint8Array(buffer)

/**
 * Inflates raw deflate data, never holding more than `declaredSize` bytes of output: zlib stops the
 * moment its output passes `maxOutputLength`, so a lying header costs at most the size it declared,
 * which the caller has already bounded. It runs on the libuv pool, so a large module does not block
 * the event loop.
 */
const inflateBounded = (
  name: string,
  compressed: Uint8Array,
  declaredSize: number
): Effect.Effect<Uint8Array, PackageError> =>
  Effect.async<Uint8Array, PackageError>((resume) => {
    Zlib.inflateRaw(compressed, { maxOutputLength: Math.max(1, declaredSize) }, (error, result) => {
      if (error === null) {
        resume(
          result.length === declaredSize
            ? Effect.succeed(ownBytes(result))
            : Effect.fail(
                invalid(
                  `package zip is corrupt: ${name} inflates to ${result.length} bytes but its zip header declares ${declaredSize}`
                )
              )
        )
      } else if ("code" in error && error.code === "ERR_BUFFER_TOO_LARGE") {
        resume(
          Effect.fail(
            new PackageError({
              reason: "TooLarge",
              message: `${name} inflates to more than the ${declaredSize} bytes its zip header declares; the package is corrupt or a zip bomb`
            })
          )
        )
      } else {
        resume(
          Effect.fail(invalid(`package zip is corrupt: ${name} is not valid deflate data (${error.message})`))
        )
      }
    })
  })

/**
 * Extracts one entry, enforcing `limits` on the declared sizes first and on the real output while
 * inflating, then verifies its CRC-32.
 */
export const extractEntry = (
  bytes: Uint8Array,
  entry: ZipEntry,
  limits: ExtractLimits
): Effect.Effect<Uint8Array, PackageError> =>
  Effect.gen(function* () {
    const name = entry.name
    if (entry.flags & FLAG_ENCRYPTED) {
      return yield* new PackageError({
        reason: "Unsupported",
        message: `${name} is encrypted, which is not supported; repack the .ndp without a password`
      })
    }
    if (entry.method !== METHOD_STORED && entry.method !== METHOD_DEFLATE) {
      return yield* new PackageError({
        reason: "Unsupported",
        message: `${name} uses zip compression method ${entry.method}; only stored (0) and deflate (8) are supported, repack the .ndp with a standard zip tool`
      })
    }
    if (
      entry.compressedSize === 0xffffffff ||
      entry.uncompressedSize === 0xffffffff ||
      entry.localHeaderOffset === 0xffffffff
    ) {
      return yield* new PackageError({
        reason: "Unsupported",
        message: `${name} is a ZIP64 entry, which is not supported; repack the .ndp as a regular zip`
      })
    }
    if (entry.uncompressedSize > limits.maxBytes) {
      return yield* new PackageError({
        reason: "TooLarge",
        message: `${name} is ${entry.uncompressedSize} bytes uncompressed, more than the limit of ${limits.maxBytes} bytes`
      })
    }
    if (entry.uncompressedSize > entry.compressedSize * limits.maxCompressionRatio) {
      return yield* new PackageError({
        reason: "CompressionRatio",
        message: `${name} expands from ${entry.compressedSize} to ${entry.uncompressedSize} bytes, more than the allowed ratio of ${limits.maxCompressionRatio}:1; the package looks like a zip bomb`
      })
    }
    const dv = view(bytes)
    const local = entry.localHeaderOffset
    if (local + LOCAL_SIZE > bytes.length || dv.getUint32(local, true) !== LOCAL_SIGNATURE) {
      return yield* invalid(`package zip is corrupt: the local header of ${name} is missing`)
    }
    const localNameLength = dv.getUint16(local + 26, true)
    const dataStart = local + LOCAL_SIZE + localNameLength + dv.getUint16(local + 28, true)
    const dataEnd = dataStart + entry.compressedSize
    if (dataEnd > bytes.length) {
      return yield* invalid(`package zip is corrupt: the data of ${name} runs past the end of the file`)
    }
    const localName = bytes.subarray(local + LOCAL_SIZE, local + LOCAL_SIZE + localNameLength)
    if ((entry.flags & FLAG_UTF8 ? utf8 : latin1).decode(localName) !== name) {
      return yield* invalid(`package zip is corrupt: the local header of ${name} names a different file`)
    }
    const raw = bytes.subarray(dataStart, dataEnd)
    let data: Uint8Array
    if (entry.method === METHOD_STORED) {
      if (entry.compressedSize !== entry.uncompressedSize) {
        return yield* invalid(`package zip is corrupt: ${name} is stored but its two declared sizes differ`)
      }
      data = raw.slice()
    } else {
      data = yield* inflateBounded(name, raw, entry.uncompressedSize)
    }
    const actual = crc32(data)
    if (actual !== entry.crc32) {
      return yield* invalid(
        `package zip is corrupt: ${name} fails its CRC-32 check (expected ${hex32(entry.crc32)}, got ${hex32(actual)}); download or build the .ndp again`
      )
    }
    return data
  })

const hex32 = (n: number) => n.toString(16).padStart(8, "0")

/**
 * The zip (IEEE) CRC-32 of `data`: Node's own (`zlib.crc32`, Node ≥ 20.15, hence `engines`). Pass
 * the previous result as `previous` to continue over a further chunk.
 */
export const crc32 = (data: Uint8Array, previous = 0): number => Zlib.crc32(data, previous)

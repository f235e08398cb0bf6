/**
 * Reading `.ndp` plugin packages: the plugin ID from the file name, and the two entries the engine
 * needs (`manifest.json`, `plugin.wasm`) from the zip, with every size bounded.
 */
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import * as NodePath from "node:path"
import { PackageError } from "./PackageError.js"
import type { ZipEntry } from "./Zip.js"
import { extractEntry, readCentralDirectory } from "./Zip.js"

export { PackageError, PackageErrorReason } from "./PackageError.js"

const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/

/**
 * A plugin ID: the package file name without `.ndp`. It names the plugin's data directory, so it
 * must be a single, portable path segment.
 */
export const PluginId = Schema.String.pipe(
  Schema.filter((id) => {
    if (id.length === 0) return "a plugin ID must not be empty"
    if (id === "." || id === "..") return `a plugin ID must not be "${id}"`
    if (id.includes("/") || id.includes("\\")) return "a plugin ID must not contain '/' or '\\'"
    if (id.endsWith(".") || id.endsWith(" ")) return "a plugin ID must not end with a dot or a space"
    if (CONTROL_CHARACTERS.test(id)) return "a plugin ID must not contain control characters"
    return true
  }),
  Schema.brand("PluginId")
)

/** A validated plugin ID. */
export type PluginId = typeof PluginId.Type

const decodePluginId = Schema.decodeUnknown(PluginId)

/** Derives the plugin ID from a package file name (a base name such as `my-plugin.ndp`, not a path). */
export const pluginIdFromFileName = (fileName: string): Effect.Effect<PluginId, PackageError> => {
  const candidate = fileName.endsWith(".ndp") ? fileName.slice(0, -".ndp".length) : fileName
  return decodePluginId(candidate).pipe(
    Effect.mapError((error) => {
      const problem = ParseResult.ArrayFormatter.formatErrorSync(error)[0]?.message ?? "it is not valid"
      return new PackageError({
        reason: "InvalidId",
        message: `invalid plugin ID ${JSON.stringify(candidate)} (from file name ${JSON.stringify(fileName)}): ${problem}; rename the package file`
      })
    })
  )
}

/** Bounds on what is read from a package, so a hostile package fails fast instead of exhausting memory. */
export interface PackageLimits {
  /** Largest package file accepted, in bytes. */
  readonly maxFileBytes: number
  /** Largest number of zip entries (all of them, not only the two that are read). */
  readonly maxEntries: number
  /** Largest uncompressed `manifest.json`, in bytes. */
  readonly maxManifestBytes: number
  /** Largest uncompressed `plugin.wasm`, in bytes. */
  readonly maxWasmBytes: number
  /** Largest uncompressed/compressed size ratio of `manifest.json` and `plugin.wasm`. */
  readonly maxCompressionRatio: number
}

/** Limits generous enough for any real plugin. */
export const defaultPackageLimits: PackageLimits = {
  maxFileBytes: 128 * 1024 * 1024,
  maxEntries: 1000,
  maxManifestBytes: 256 * 1024,
  maxWasmBytes: 64 * 1024 * 1024,
  maxCompressionRatio: 200
}

/** What the engine needs from a package. */
export interface PackageContents {
  readonly manifestJson: string
  readonly wasm: Uint8Array
  /** Lower-case hex SHA-256 of the whole package file: its content identity. */
  readonly sha256: string
}

/** A package read from disk. */
export interface PackageFile extends PackageContents {
  readonly id: PluginId
  readonly path: string
}

const MANIFEST = "manifest.json"
const WASM = "plugin.wasm"

const findEntry = (entries: ReadonlyArray<ZipEntry>, name: string): Effect.Effect<ZipEntry, PackageError> => {
  const matches = entries.filter((entry) => entry.name === name)
  const [first] = matches
  if (first === undefined) {
    return Effect.fail(new PackageError({ reason: "MissingEntry", message: `package missing ${name}` }))
  }
  // Different zip tools pick different duplicates; refusing them keeps what we check what runs.
  if (matches.length > 1) {
    return Effect.fail(
      new PackageError({
        reason: "InvalidZip",
        message: `package has ${matches.length} ${name} entries at its root; keep exactly one`
      })
    )
  }
  return Effect.succeed(first)
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

/** Reads `manifest.json` and `plugin.wasm` from the bytes of a `.ndp` package. */
export const readPackageBytes: (
  bytes: Uint8Array,
  limits?: PackageLimits
) => Effect.Effect<PackageContents, PackageError> = Effect.fn("PluginPackage.readPackageBytes")(function* (
  bytes: Uint8Array,
  limits: PackageLimits = defaultPackageLimits
) {
  if (bytes.length > limits.maxFileBytes) {
    return yield* new PackageError({
      reason: "TooLarge",
      message: `package is ${bytes.length} bytes, more than the limit of ${limits.maxFileBytes} bytes`
    })
  }
  const entries = yield* readCentralDirectory(bytes, limits.maxEntries)
  const manifestEntry = yield* findEntry(entries, MANIFEST)
  const wasmEntry = yield* findEntry(entries, WASM)
  const manifestBytes = yield* extractEntry(bytes, manifestEntry, {
    maxBytes: limits.maxManifestBytes,
    maxCompressionRatio: limits.maxCompressionRatio
  })
  let manifestJson: string
  try {
    manifestJson = strictUtf8.decode(manifestBytes)
  } catch {
    return yield* new PackageError({
      reason: "InvalidManifestEncoding",
      message: "manifest.json is not valid UTF-8; save it as UTF-8"
    })
  }
  const wasm = yield* extractEntry(bytes, wasmEntry, {
    maxBytes: limits.maxWasmBytes,
    maxCompressionRatio: limits.maxCompressionRatio
  })
  const sha256 = createHash("sha256").update(bytes).digest("hex")
  return { manifestJson, wasm, sha256 }
})

/**
 * Reads a `.ndp` package file. The size is checked before the file is read, and the plugin ID comes
 * from the file name.
 */
export const readPackageFile: (
  path: string,
  limits?: PackageLimits
) => Effect.Effect<PackageFile, PackageError, FileSystem.FileSystem> = Effect.fn(
  "PluginPackage.readPackageFile"
)(function* (path: string, limits: PackageLimits = defaultPackageLimits) {
  const id = yield* pluginIdFromFileName(NodePath.basename(path))
  const fs = yield* FileSystem.FileSystem
  const ioError = (error: PlatformError) =>
    error._tag === "SystemError" && error.reason === "NotFound"
      ? new PackageError({ reason: "NotFound", message: `plugin package not found: ${path}` })
      : new PackageError({
          reason: "ReadFailed",
          message: `cannot read plugin package ${path}: ${error.message}`
        })
  const info = yield* fs.stat(path).pipe(Effect.mapError(ioError))
  if (info.type !== "File") {
    return yield* new PackageError({
      reason: "ReadFailed",
      message: `plugin package ${path} is not a regular file`
    })
  }
  if (Number(info.size) > limits.maxFileBytes) {
    return yield* new PackageError({
      reason: "TooLarge",
      message: `plugin package ${path} is ${info.size} bytes, more than the limit of ${limits.maxFileBytes} bytes`
    })
  }
  const bytes = yield* fs.readFile(path).pipe(Effect.mapError(ioError))
  const contents = yield* readPackageBytes(bytes, limits)
  return { ...contents, id, path }
})

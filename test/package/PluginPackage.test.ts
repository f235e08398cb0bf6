import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as FileSystem from "@effect/platform/FileSystem"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import { strToU8, zipSync } from "fflate"
import { createHash } from "node:crypto"
import * as NodePath from "node:path"
import type { PackageErrorReason, PackageLimits } from "../../src/package/PluginPackage.js"
import {
  defaultPackageLimits,
  PackageError,
  pluginIdFromFileName,
  readPackageBytes,
  readPackageFile
} from "../../src/package/PluginPackage.js"
import { crc32 } from "../../src/package/Zip.js"
import { buildZip, deflated, emptyWasm, minimalManifest, stored, zerosCrc, zerosDeflate } from "./zipTools.js"

const wasm = new Uint8Array(4096).map((_, i) => (i * 7) & 0xff)
wasm.set(emptyWasm)

const validPackage = (level: 0 | 6 = 6) =>
  zipSync({ "manifest.json": strToU8(minimalManifest), "plugin.wasm": wasm }, { level })

const expectReason = <R>(
  effect: Effect.Effect<unknown, PackageError, R>,
  reason: PackageErrorReason,
  messagePart?: string
) =>
  Effect.gen(function* () {
    const result = yield* Effect.either(effect)
    // Never hand a success value to expect: a package holds megabytes that vitest would try to print.
    if (Either.isRight(result))
      return expect.fail(`expected a PackageError with reason ${reason}, but it succeeded`)
    const error = result.left
    expect(error.reason).toBe(reason)
    if (messagePart !== undefined) expect(error.message).toContain(messagePart)
    return error
  })

/** Runs `effect` and returns how much the resident set grew meanwhile. */
const rssGrowth = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const before = process.memoryUsage().rss
    const result = yield* Effect.either(effect)
    return { result, growth: process.memoryUsage().rss - before }
  })

const MiB = 1024 * 1024

describe("readPackageBytes", () => {
  it.effect("reads manifest.json and plugin.wasm from deflated and stored packages", () =>
    Effect.gen(function* () {
      for (const level of [0, 6] as const) {
        const bytes = validPackage(level)
        const contents = yield* readPackageBytes(bytes)
        expect(contents.manifestJson).toBe(minimalManifest)
        expect(contents.wasm).toEqual(wasm)
        expect(contents.sha256).toBe(createHash("sha256").update(bytes).digest("hex"))
      }
    })
  )

  it.effect("identifies the content by the SHA-256 of the whole file", () =>
    Effect.gen(function* () {
      const a = yield* readPackageBytes(validPackage(0))
      const b = yield* readPackageBytes(validPackage(6))
      expect(a.sha256).toMatch(/^[0-9a-f]{64}$/)
      // Same entries, different bytes on disk: a different package.
      expect(a.sha256).not.toBe(b.sha256)
    })
  )

  it.effect("ignores other entries, including the same names below the root", () =>
    Effect.gen(function* () {
      const bytes = zipSync({
        "README.md": strToU8("hello"),
        "sub/manifest.json": strToU8("{}"),
        "sub/plugin.wasm": new Uint8Array(3),
        "manifest.json": strToU8(minimalManifest),
        "plugin.wasm": wasm,
        "assets/logo.png": new Uint8Array(100)
      })
      const contents = yield* readPackageBytes(bytes)
      expect(contents.manifestJson).toBe(minimalManifest)
      expect(contents.wasm).toEqual(wasm)
    })
  )

  it.effect("names the missing entry; nested or differently cased copies do not count", () =>
    Effect.gen(function* () {
      const noManifest = zipSync({
        "sub/manifest.json": strToU8(minimalManifest),
        "Manifest.json": strToU8(minimalManifest),
        "./manifest.json": strToU8(minimalManifest),
        "plugin.wasm": wasm
      })
      const a = yield* expectReason(readPackageBytes(noManifest), "MissingEntry")
      expect(a.message).toBe("package missing manifest.json")
      const noWasm = zipSync({ "manifest.json": strToU8(minimalManifest), "dist/plugin.wasm": wasm })
      const b = yield* expectReason(readPackageBytes(noWasm), "MissingEntry")
      expect(b.message).toBe("package missing plugin.wasm")
      const empty = zipSync({})
      yield* expectReason(readPackageBytes(empty), "MissingEntry", "package missing manifest.json")
    })
  )

  it.effect("rejects bytes that are not a zip", () =>
    Effect.gen(function* () {
      yield* expectReason(readPackageBytes(new Uint8Array(0)), "InvalidZip", "not a zip")
      yield* expectReason(readPackageBytes(strToU8("just some text, long enough to search")), "InvalidZip")
      yield* expectReason(readPackageBytes(emptyWasm), "InvalidZip")
    })
  )

  it.effect("rejects truncated packages", () =>
    Effect.gen(function* () {
      const bytes = validPackage()
      yield* expectReason(readPackageBytes(bytes.subarray(0, bytes.length - 10)), "InvalidZip")
      yield* expectReason(readPackageBytes(bytes.subarray(0, bytes.length / 2)), "InvalidZip")
    })
  )

  it.effect("rejects an entry whose CRC-32 does not match", () =>
    Effect.gen(function* () {
      const good = deflated("plugin.wasm", wasm)
      const bytes = buildZip([
        stored("manifest.json", minimalManifest),
        { ...good, crc: (good.crc ?? 0) ^ 1 }
      ])
      yield* expectReason(readPackageBytes(bytes), "InvalidZip", "CRC-32")
      const badManifest = stored("manifest.json", minimalManifest)
      const bytes2 = buildZip([{ ...badManifest, crc: 1234 }, stored("plugin.wasm", wasm)])
      yield* expectReason(readPackageBytes(bytes2), "InvalidZip", "manifest.json fails its CRC-32 check")
    })
  )

  it.effect("detects corrupted data even when the headers are intact", () =>
    Effect.gen(function* () {
      const bytes = buildZip([stored("manifest.json", minimalManifest), stored("plugin.wasm", wasm)])
      const at = bytes.indexOf(0x61, 30 + "manifest.json".length + minimalManifest.length + 40)
      const corrupted = bytes.slice()
      corrupted[at] = corrupted[at]! ^ 0xff
      yield* expectReason(readPackageBytes(corrupted), "InvalidZip", "CRC-32")
    })
  )

  it.effect("rejects more entries than the limit before reading them", () =>
    Effect.gen(function* () {
      const files: Record<string, Uint8Array> = {
        "manifest.json": strToU8(minimalManifest),
        "plugin.wasm": wasm
      }
      for (let i = 0; i < 999; i++) files[`f${i}.txt`] = new Uint8Array(0)
      const bytes = zipSync(files, { level: 0 })
      yield* expectReason(
        readPackageBytes(bytes),
        "TooManyEntries",
        "1001 entries, more than the limit of 1000"
      )
      delete files["f0.txt"]
      yield* readPackageBytes(zipSync(files, { level: 0 }))
      const limits: PackageLimits = { ...defaultPackageLimits, maxEntries: 1 }
      yield* expectReason(readPackageBytes(validPackage(), limits), "TooManyEntries")
    })
  )

  it.effect("rejects entries compressed beyond the allowed ratio", () =>
    Effect.gen(function* () {
      const bomb: ReturnType<typeof deflated> = {
        name: "plugin.wasm",
        data: zerosDeflate(10),
        method: 8,
        crc: zerosCrc(10),
        uncompressedSize: 10 * MiB
      }
      const bytes = buildZip([stored("manifest.json", minimalManifest), bomb])
      const error = yield* expectReason(readPackageBytes(bytes), "CompressionRatio", "plugin.wasm")
      expect(error.message).toContain("zip bomb")
      // The same entry is acceptable once the ratio limit allows it: the stream itself is valid.
      const contents = yield* readPackageBytes(bytes, { ...defaultPackageLimits, maxCompressionRatio: 5000 })
      expect(contents.wasm.length).toBe(10 * MiB)
    })
  )

  it.effect("rejects a manifest over its size limit", () =>
    Effect.gen(function* () {
      const big = JSON.stringify({ name: "x", author: "y", version: "1", padding: "z".repeat(300 * 1024) })
      const bytes = zipSync({ "manifest.json": strToU8(big), "plugin.wasm": wasm }, { level: 0 })
      yield* expectReason(readPackageBytes(bytes), "TooLarge", "manifest.json")
    })
  )

  it.effect("rejects a package file over its size limit", () =>
    Effect.gen(function* () {
      const bytes = validPackage()
      const limits = { ...defaultPackageLimits, maxFileBytes: bytes.length - 1 }
      yield* expectReason(readPackageBytes(bytes, limits), "TooLarge", "limit")
    })
  )

  it.effect("fails fast and small on a 2 GiB entry of zeros declared honestly", () =>
    Effect.gen(function* () {
      const data = zerosDeflate(2048)
      const bomb = { name: "plugin.wasm", data, method: 8, crc: 0, uncompressedSize: 2048 * MiB }
      const bytes = buildZip([stored("manifest.json", minimalManifest), bomb])
      const { result, growth } = yield* rssGrowth(readPackageBytes(bytes))
      expect(Either.isLeft(result) && result.left.reason).toBe("TooLarge")
      expect(growth).toBeLessThan(100 * MiB)
    })
  )

  it.effect("fails fast and small when the headers understate a 2 GiB entry", () =>
    Effect.gen(function* () {
      const data = zerosDeflate(2048)
      for (const [name, declared] of [
        ["plugin.wasm", 1000],
        ["plugin.wasm", 30 * MiB],
        ["manifest.json", 100]
      ] as const) {
        const bomb = { name, data, method: 8, crc: 0, uncompressedSize: declared }
        const other =
          name === "plugin.wasm" ? stored("manifest.json", minimalManifest) : stored("plugin.wasm", wasm)
        const bytes = buildZip([other, bomb])
        const { result, growth } = yield* rssGrowth(readPackageBytes(bytes))
        expect(Either.isLeft(result) && result.left.reason).toBe("TooLarge")
        expect(Either.isLeft(result) && result.left.message).toContain(`more than the ${declared} bytes`)
        expect(growth).toBeLessThan(100 * MiB)
      }
    })
  )

  it.effect("rejects entries that inflate to less than declared", () =>
    Effect.gen(function* () {
      const short = { ...deflated("plugin.wasm", wasm), uncompressedSize: wasm.length + 10 }
      const bytes = buildZip([stored("manifest.json", minimalManifest), short])
      yield* expectReason(readPackageBytes(bytes), "InvalidZip", "declares")
    })
  )

  it.effect("rejects unsupported methods, encryption and ZIP64", () =>
    Effect.gen(function* () {
      const manifest = stored("manifest.json", minimalManifest)
      const bzip2 = { ...stored("plugin.wasm", wasm), method: 12 }
      yield* expectReason(readPackageBytes(buildZip([manifest, bzip2])), "Unsupported", "method 12")
      const encrypted = { ...stored("plugin.wasm", wasm), flags: 0x801 }
      yield* expectReason(readPackageBytes(buildZip([manifest, encrypted])), "Unsupported", "encrypted")
      const zip64 = { ...stored("plugin.wasm", wasm), uncompressedSize: 0xffffffff }
      yield* expectReason(readPackageBytes(buildZip([manifest, zip64])), "Unsupported", "ZIP64")
    })
  )

  it.effect("rejects two root entries with the same name", () =>
    Effect.gen(function* () {
      const bytes = buildZip([
        stored("manifest.json", minimalManifest),
        stored("plugin.wasm", wasm),
        stored("manifest.json", "{}")
      ])
      yield* expectReason(readPackageBytes(bytes), "InvalidZip", "2 manifest.json entries")
    })
  )

  it.effect("requires manifest.json to be UTF-8", () =>
    Effect.gen(function* () {
      const latin1 = Uint8Array.of(0x7b, 0x22, 0xe9, 0x22, 0x7d)
      const bytes = buildZip([stored("manifest.json", latin1), stored("plugin.wasm", wasm)])
      yield* expectReason(readPackageBytes(bytes), "InvalidManifestEncoding", "UTF-8")
    })
  )

  it.effect("accepts archives with a comment and with entries in any order", () =>
    Effect.gen(function* () {
      const bytes = buildZip([deflated("plugin.wasm", wasm), deflated("manifest.json", minimalManifest)])
      const comment = strToU8("built by hand")
      const withComment = new Uint8Array(bytes.length + comment.length)
      withComment.set(bytes)
      withComment.set(comment, bytes.length)
      new DataView(withComment.buffer).setUint16(bytes.length - 2, comment.length, true)
      const contents = yield* readPackageBytes(withComment)
      expect(contents.wasm).toEqual(wasm)
    })
  )

  it.effect.prop(
    "never throws on arbitrary bytes",
    [FastCheck.uint8Array({ maxLength: 2048 })],
    ([bytes]) =>
      Effect.gen(function* () {
        const result = yield* Effect.either(readPackageBytes(bytes))
        if (Either.isLeft(result)) expect(result.left).toBeInstanceOf(PackageError)
      }),
    { fastCheck: { numRuns: 300 } }
  )

  it.effect.prop(
    "never throws on random mutations of a valid package",
    [
      FastCheck.array(FastCheck.tuple(FastCheck.nat(), FastCheck.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 8
      }),
      FastCheck.option(FastCheck.nat(), { nil: undefined })
    ],
    ([mutations, cut]) =>
      Effect.gen(function* () {
        const bytes = validPackage().slice()
        for (const [position, value] of mutations) bytes[position % bytes.length] = value
        const input = cut === undefined ? bytes : bytes.subarray(0, cut % (bytes.length + 1))
        const result = yield* Effect.either(readPackageBytes(input))
        if (Either.isLeft(result)) expect(result.left).toBeInstanceOf(PackageError)
        else expect(result.right.wasm.length).toBeGreaterThan(0)
      }),
    { fastCheck: { numRuns: 300 } }
  )
})

describe("crc32", () => {
  it("matches the standard check value", () => {
    expect(crc32(strToU8("123456789"))).toBe(0xcbf43926)
    expect(crc32(new Uint8Array(0))).toBe(0)
    expect(crc32(strToU8("6789"), crc32(strToU8("12345")))).toBe(0xcbf43926)
  })
})

describe("pluginIdFromFileName", () => {
  it.effect("strips .ndp and keeps the rest", () =>
    Effect.gen(function* () {
      expect(yield* pluginIdFromFileName("my-plugin.ndp")).toBe("my-plugin")
      expect(yield* pluginIdFromFileName("discord.rich.presence.ndp")).toBe("discord.rich.presence")
      expect(yield* pluginIdFromFileName("Ünïcode plugin.ndp")).toBe("Ünïcode plugin")
      expect(yield* pluginIdFromFileName("no-extension")).toBe("no-extension")
      expect(yield* pluginIdFromFileName("twice.ndp.ndp")).toBe("twice.ndp")
    })
  )

  it.effect("rejects IDs that are not a single safe path segment, saying why", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["", "must not be empty"],
        [".ndp", "must not be empty"],
        [".", 'must not be "."'],
        ["..ndp", 'must not be "."'],
        ["...ndp", 'must not be ".."'],
        ["a/b.ndp", "must not contain '/' or '\\'"],
        ["a\\b.ndp", "must not contain '/' or '\\'"],
        ["trailing..ndp", "must not end with a dot or a space"],
        ["trailing .ndp", "must not end with a dot or a space"],
        ["nul\u0000byte.ndp", "control characters"],
        ["new\nline.ndp", "control characters"],
        ["del\u007f.ndp", "control characters"]
      ]
      for (const [fileName, why] of cases) {
        const error = yield* expectReason(pluginIdFromFileName(fileName), "InvalidId")
        expect(error.message).toContain(why)
        expect(error.message).toContain(JSON.stringify(fileName))
      }
    })
  )
})

describe("readPackageFile", () => {
  const writePackage = (name: string, bytes: Uint8Array) =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped()
      const path = NodePath.join(dir, name)
      yield* fs.writeFile(path, bytes)
      return path
    })

  it.scoped("reads a package and derives its ID from the file name", () =>
    Effect.gen(function* () {
      const bytes = validPackage()
      const path = yield* writePackage("lastfm-agent.ndp", bytes)
      const pkg = yield* readPackageFile(path)
      expect(pkg.id).toBe("lastfm-agent")
      expect(pkg.path).toBe(path)
      expect(pkg.manifestJson).toBe(minimalManifest)
      expect(pkg.wasm).toEqual(wasm)
      expect(pkg.sha256).toBe(createHash("sha256").update(bytes).digest("hex"))
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )

  it.scoped("reports a missing file with its path", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped()
      const path = NodePath.join(dir, "absent.ndp")
      const error = yield* expectReason(readPackageFile(path), "NotFound")
      expect(error.message).toContain(path)
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )

  it.scoped("checks the file size before reading the file", () =>
    Effect.gen(function* () {
      const path = yield* writePackage("big.ndp", new Uint8Array(4096))
      // Not a zip at all: only the size check can produce TooLarge.
      yield* expectReason(
        readPackageFile(path, { ...defaultPackageLimits, maxFileBytes: 1024 }),
        "TooLarge",
        path
      )
      yield* expectReason(readPackageFile(path), "InvalidZip")
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )

  it.scoped("rejects a bad file name and a directory", () =>
    Effect.gen(function* () {
      const path = yield* writePackage("bad..ndp", validPackage())
      yield* expectReason(readPackageFile(path), "InvalidId")
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped()
      const folder = NodePath.join(dir, "folder.ndp")
      yield* fs.makeDirectory(folder)
      yield* expectReason(readPackageFile(folder), "ReadFailed", "not a regular file")
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
})

/**
 * The WASI filesystem from inside Wasm: the `wasi-escape` fixture proxies raw WASI calls, and every
 * read works inside the mount while every way out, and every write, fails with the documented errno
 * (docs/host-services/filesystem.md) and leaves the disk as it was.
 */
import { afterAll, beforeAll, describe, expect, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { unzipSync } from "fflate"
import { randomBytes } from "node:crypto"
import {
  cpSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { layer as runtimeLayer, type RunningPlugin, WasmRuntime } from "../../src/runtime/WasmRuntime.js"
import type { Mount } from "../../src/runtime/abi/protocol.js"
import { Errno } from "../../src/runtime/worker/Wasi.js"
import { errnoOf, GuestMemory } from "../../src/runtime/worker/WasiAbi.js"
import { WasiFs } from "../../src/runtime/worker/WasiFs.js"
import { demoLibraryFolder } from "../../src/server/embedded/EmbeddedLibrary.js"
import { HostFunctions } from "../../src/host/HostFunctions.js"
import { storageFolder } from "../../src/host/storage/StorageService.js"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { repackage } from "../support/repackage.js"

const R = {
  fdRead: 1n << 1n,
  fdSeek: 1n << 2n,
  fdTell: 1n << 5n,
  fdWrite: 1n << 6n,
  fdReaddir: 1n << 14n,
  fdFilestatGet: 1n << 21n
}
/** What wasi-libc asks for on `open(path, O_RDONLY)` under our preopen's inheriting rights. */
const READ = R.fdRead | R.fdSeek | R.fdTell | R.fdReaddir | R.fdFilestatGet
/** Go's wasip1 `O_RDONLY` request: all file rights but DATASYNC, WRITE, ALLOCATE, PATH_FILESTAT_SET_SIZE. */
const GO_READ =
  0x1fffffffn & ~((1n << 0n) | (1n << 6n) | (1n << 8n) | (1n << 19n)) & ~((1n << 28n) | (1n << 29n))
/** Every bit that lets something change. */
const WRITE_BITS =
  (1n << 0n) |
  (1n << 6n) |
  (1n << 8n) |
  (1n << 9n) |
  (1n << 10n) |
  (1n << 11n) |
  (1n << 12n) |
  (1n << 16n) |
  (1n << 17n) |
  (1n << 19n) |
  (1n << 20n) |
  (1n << 22n) |
  (1n << 23n) |
  (1n << 24n) |
  (1n << 25n) |
  (1n << 26n)
const O = { creat: 1, directory: 2, excl: 4, trunc: 8 }
const FOLLOW = 1
const NOFOLLOW = 0
const T = { directory: 3, regularFile: 4, symbolicLink: 7 }

// ---- the library on disk -------------------------------------------------------------------------

let base = ""
let library = ""
const song = randomBytes(100_000)
const notes = "hello library\n"
const secret = "top secret\n"

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), "ndp-wasifs-"))
  library = join(base, "library")
  mkdirSync(join(library, "Album"), { recursive: true })
  mkdirSync(join(library, "Empty"))
  writeFileSync(join(base, "secret.txt"), secret)
  writeFileSync(join(library, "song.flac"), song)
  writeFileSync(join(library, "notes.txt"), notes)
  writeFileSync(join(library, "Album", "track01.mp3"), "track one")
  writeFileSync(join(library, "Album", "cover.jpg"), "jpeg")
  symlinkSync("Album", join(library, "inside-link"))
  symlinkSync("notes.txt", join(library, "notes-link"))
  symlinkSync("../secret.txt", join(library, "escape-link"))
  symlinkSync(join(base, "secret.txt"), join(library, "escape-abs"))
  symlinkSync("..", join(library, "escape-dir"))
  symlinkSync("library", join(base, "library-alias"))
})

afterAll(() => rmSync(base, { recursive: true, force: true }))

/** Every path under `dir` with its type, size, mode and mtime (and a file's bytes). */
const snapshot = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (path: string, rel: string): void => {
    for (const name of readdirSync(path).sort()) {
      const full = join(path, name)
      const stats = lstatSync(full)
      out[rel + name] =
        `${stats.mode}:${stats.size}:${stats.mtimeMs}:${stats.isFile() ? readFileSync(full, "base64") : ""}`
      if (stats.isDirectory()) walk(full, `${rel}${name}/`)
    }
  }
  walk(dir, "")
  return out
}

// ---- talking to the fixture ----------------------------------------------------------------------

const encoder = new TextEncoder()

/** Input fields: number = u32, bigint = u64, string = UTF-8, bytes as they are. */
const pack = (...fields: ReadonlyArray<number | bigint | string | Uint8Array>): Uint8Array => {
  const parts = fields.map((field) => {
    if (typeof field === "string") return encoder.encode(field)
    if (field instanceof Uint8Array) return field
    const bytes = new Uint8Array(typeof field === "bigint" ? 8 : 4)
    const view = new DataView(bytes.buffer)
    if (typeof field === "bigint") view.setBigUint64(0, BigInt.asUintN(64, field), true)
    else view.setUint32(0, field, true)
    return bytes
  })
  return Buffer.concat(parts)
}

const load = (mounts: ReadonlyArray<Mount>, timeoutMs?: number) =>
  Effect.gen(function* () {
    const runtime = yield* WasmRuntime
    const wasm = unzipSync(readFileSync(fixture("wasi-escape")))["plugin.wasm"]!
    const compiled = yield* runtime.compile("wasi-escape", "wasi-escape-test", wasm)
    const plugin = yield* runtime.instantiate({
      pluginId: "wasi-escape",
      compiled,
      config: {},
      userFunctions: [],
      envHttp: false,
      host: () => Effect.succeed(new Uint8Array(0)),
      mounts,
      timeoutMs
    })
    return client(plugin)
  })

interface Stat {
  readonly errno: number
  readonly ino: bigint
  readonly filetype: number
  readonly nlink: bigint
  readonly size: bigint
  readonly mtim: bigint
}

interface Dirent {
  readonly next: bigint
  readonly ino: bigint
  readonly type: number
  readonly name: string
}

const parseDirents = (raw: Uint8Array): { entries: Array<Dirent>; partial: boolean } => {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength)
  const entries: Array<Dirent> = []
  let at = 0
  while (at + 24 <= raw.byteLength) {
    const length = view.getUint32(at + 16, true)
    if (at + 24 + length > raw.byteLength) break
    entries.push({
      next: view.getBigUint64(at, true),
      ino: view.getBigUint64(at + 8, true),
      type: view.getUint8(at + 20),
      name: Buffer.from(raw.subarray(at + 24, at + 24 + length)).toString("utf8")
    })
    at += 24 + length
  }
  return { entries, partial: at < raw.byteLength }
}

const client = (plugin: Pick<RunningPlugin, "call">) => {
  const call = (fn: string, input: Uint8Array) =>
    Effect.map(plugin.call(fn, input), (out) => {
      const bytes = out ?? new Uint8Array(0)
      return { bytes, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) }
    })
  const errno = (fn: string, ...fields: ReadonlyArray<number | bigint | string | Uint8Array>) =>
    Effect.map(call(fn, pack(...fields)), ({ view }) => view.getUint32(0, true))

  const open = (
    path: string | Uint8Array,
    options: {
      dirfd?: number
      lookup?: number
      oflags?: number
      fdflags?: number
      rights?: bigint
    } = {}
  ) =>
    Effect.map(
      call(
        "path_open",
        pack(
          options.dirfd ?? 3,
          options.lookup ?? FOLLOW,
          options.oflags ?? 0,
          options.fdflags ?? 0,
          options.rights ?? READ,
          READ,
          path
        )
      ),
      ({ view }) => ({ errno: view.getUint32(0, true), fd: view.getUint32(4, true) })
    )
  const openOk = (path: string, options: Parameters<typeof open>[1] = {}) =>
    Effect.map(open(path, options), ({ errno, fd }) => {
      expect(errno, `open ${path}`).toBe(Errno.success)
      return fd
    })
  const readAt = (fn: "fd_read" | "fd_pread", ...fields: ReadonlyArray<number | bigint>) =>
    Effect.map(call(fn, pack(...fields)), ({ bytes, view }) => ({
      errno: view.getUint32(0, true),
      data: Buffer.from(bytes.subarray(8, 8 + view.getUint32(4, true)))
    }))
  const read = (fd: number, length: number) => readAt("fd_read", fd, length)
  const pread = (fd: number, length: number, offset: bigint) => readAt("fd_pread", fd, length, offset)
  const offsetOf = (fn: string, input: Uint8Array) =>
    Effect.map(call(fn, input), ({ view }) => ({
      errno: view.getUint32(0, true),
      offset: view.getBigUint64(4, true)
    }))
  const seek = (fd: number, whence: number, delta: bigint) => offsetOf("fd_seek", pack(fd, whence, delta))
  const tell = (fd: number) => offsetOf("fd_tell", pack(fd))
  const close = (fd: number) => errno("fd_close", fd)
  const readAll = (path: string, options: Parameters<typeof open>[1] = {}) =>
    Effect.gen(function* () {
      const fd = yield* openOk(path, options)
      const chunks: Array<Buffer> = []
      for (;;) {
        const { errno, data } = yield* read(fd, 16_384)
        expect(errno).toBe(Errno.success)
        if (data.byteLength === 0) break
        chunks.push(data)
      }
      expect(yield* close(fd)).toBe(Errno.success)
      return Buffer.concat(chunks)
    })
  const readdir = (fd: number, length: number, cookie: bigint) =>
    Effect.map(call("fd_readdir", pack(fd, length, cookie)), ({ bytes, view }) => ({
      errno: view.getUint32(0, true),
      used: view.getUint32(4, true),
      raw: bytes.subarray(8)
    }))
  /** Lists a directory fd the way wasi-libc does: pages of `length` bytes, resuming at the last cookie. */
  const list = (fd: number, length = 4096) =>
    Effect.gen(function* () {
      const all: Array<Dirent> = []
      let cookie = 0n
      for (;;) {
        const page = yield* readdir(fd, length, cookie)
        expect(page.errno).toBe(Errno.success)
        const { entries } = parseDirents(page.raw)
        all.push(...entries)
        if (page.used < length) return all
        expect(entries.length, "buffer too small for one entry").toBeGreaterThan(0)
        cookie = entries[entries.length - 1]!.next
      }
    })
  const toStat = (view: DataView): Stat => ({
    errno: view.getUint32(0, true),
    ino: view.getBigUint64(16, true),
    filetype: view.getUint8(24),
    nlink: view.getBigUint64(32, true),
    size: view.getBigUint64(40, true),
    mtim: view.getBigUint64(56, true)
  })
  const stat = (path: string | Uint8Array, lookup = FOLLOW, dirfd = 3) =>
    Effect.map(call("path_filestat_get", pack(dirfd, lookup, path)), ({ view }) => toStat(view))
  const fstat = (fd: number) => Effect.map(call("fd_filestat_get", pack(fd)), ({ view }) => toStat(view))
  const fdstat = (fd: number) =>
    Effect.map(call("fd_fdstat_get", pack(fd)), ({ view }) => ({
      errno: view.getUint32(0, true),
      filetype: view.getUint8(8),
      base: view.getBigUint64(16, true),
      inheriting: view.getBigUint64(24, true)
    }))
  const prestat = (fd: number) =>
    Effect.map(call("prestat_get", pack(fd)), ({ view }) => ({
      errno: view.getUint32(0, true),
      tag: view.getUint8(4),
      length: view.getUint32(8, true)
    }))
  const prestatName = (fd: number, length: number) =>
    Effect.map(call("prestat_dir_name", pack(fd, length)), ({ bytes, view }) => ({
      errno: view.getUint32(0, true),
      name: Buffer.from(bytes.subarray(4)).toString("utf8")
    }))
  const readlink = (path: string) =>
    Effect.map(call("path_readlink", pack(3, 256, path)), ({ bytes, view }) => ({
      errno: view.getUint32(0, true),
      target: Buffer.from(bytes.subarray(8, 8 + view.getUint32(4, true))).toString("utf8")
    }))
  const words = (fn: string, ...fields: ReadonlyArray<number | bigint | string | Uint8Array>) =>
    Effect.map(call(fn, pack(...fields)), ({ bytes, view }) =>
      Array.from({ length: bytes.byteLength / 4 }, (_, i) => view.getUint32(i * 4, true))
    )
  return {
    raw: (fn: string, ...fields: ReadonlyArray<number | bigint | string | Uint8Array>) =>
      plugin.call(fn, pack(...fields)),
    errno,
    open,
    openOk,
    read,
    pread,
    seek,
    tell,
    close,
    readAll,
    readdir,
    list,
    stat,
    fstat,
    fdstat,
    prestat,
    prestatName,
    readlink,
    words
  }
}

const libraryMount = (): Array<Mount> => [{ guestPath: "/libraries/1", hostPath: library }]

/** Paths that would leave the mount, lexically or through a symlink. */
const escapes = (): ReadonlyArray<string> => [
  "..",
  "../",
  "../secret.txt",
  "../library/notes.txt",
  "Album/../../secret.txt",
  "a/../../secret.txt",
  "Album/./../../secret.txt",
  "inside-link/../../secret.txt",
  "/etc/passwd",
  join(base, "secret.txt"),
  "/libraries/1/notes.txt",
  "escape-link",
  "escape-abs",
  "escape-dir",
  "escape-dir/secret.txt",
  "inside-link/../escape-dir/secret.txt"
]

layer(runtimeLayer({ poolSize: 1, defaultTimeoutMs: 10_000 }))("WASI filesystem", (it) => {
  it.scoped("each mount is a preopened directory named by its guest path", () =>
    Effect.gen(function* () {
      const fs = yield* load([
        ...libraryMount(),
        { guestPath: "/libraries/22", hostPath: join(base, "library-alias") }
      ])
      expect(yield* fs.prestat(3)).toEqual({ errno: Errno.success, tag: 0, length: 12 })
      expect(yield* fs.prestatName(3, 12)).toEqual({ errno: Errno.success, name: "/libraries/1" })
      expect((yield* fs.prestatName(3, 5)).errno).toBe(Errno.nametoolong)
      expect(yield* fs.prestatName(4, 13)).toEqual({ errno: Errno.success, name: "/libraries/22" })
      // wasi-libc stops scanning for preopens at the first EBADF.
      expect((yield* fs.prestat(5)).errno).toBe(Errno.badf)
      expect((yield* fs.prestat(0)).errno).toBe(Errno.badf)
      // A mount whose host path is itself a symlink works through its real path.
      expect((yield* fs.readAll("notes.txt", { dirfd: 4 })).toString()).toBe(notes)
      // An opened file is not a preopen.
      const fd = yield* fs.openOk("notes.txt")
      expect(fd).toBe(5)
      expect((yield* fs.prestat(fd)).errno).toBe(Errno.badf)
    })
  )

  it.scoped("a plugin without mounts sees no preopens and no files", () =>
    Effect.gen(function* () {
      const fs = yield* load([])
      expect((yield* fs.prestat(3)).errno).toBe(Errno.badf)
      expect((yield* fs.open("notes.txt")).errno).toBe(Errno.badf)
      expect((yield* fs.open(library)).errno).toBe(Errno.badf)
      expect((yield* fs.stat("notes.txt")).errno).toBe(Errno.badf)
      expect((yield* fs.readdir(3, 256, 0n)).errno).toBe(Errno.badf)
      expect(yield* fs.errno("path_create_directory", 3, "x")).toBe(Errno.badf)
      // stdio is still there.
      expect((yield* fs.fdstat(1)).errno).toBe(Errno.success)
    })
  )

  it.scoped("files inside the mount read back byte for byte, through inside symlinks too", () =>
    Effect.gen(function* () {
      const fs = yield* load(libraryMount())
      expect((yield* fs.readAll("notes.txt")).toString()).toBe(notes)
      expect((yield* fs.readAll("song.flac")).equals(song)).toBe(true)
      expect((yield* fs.readAll("Album/track01.mp3")).toString()).toBe("track one")
      expect((yield* fs.readAll("./Album/../notes.txt")).toString()).toBe(notes)
      expect((yield* fs.readAll("Album//./cover.jpg")).toString()).toBe("jpeg")
      expect((yield* fs.readAll("inside-link/track01.mp3")).toString()).toBe("track one")
      expect((yield* fs.readAll("notes-link")).toString()).toBe(notes)
      // Relative to an opened subdirectory, `..` may climb back up to the mount root, not further.
      const album = yield* fs.openOk("Album", { oflags: O.directory })
      expect((yield* fs.readAll("track01.mp3", { dirfd: album })).toString()).toBe("track one")
      expect((yield* fs.readAll("../notes.txt", { dirfd: album })).toString()).toBe(notes)
      expect((yield* fs.open("../../secret.txt", { dirfd: album })).errno).toBe(Errno.notcapable)
      // Not found, not a directory, bad names.
      expect((yield* fs.open("missing.txt")).errno).toBe(Errno.noent)
      expect((yield* fs.open("Album/missing/x")).errno).toBe(Errno.noent)
      expect((yield* fs.open("notes.txt/")).errno).toBe(Errno.notdir)
      expect((yield* fs.open("notes.txt", { oflags: O.directory })).errno).toBe(Errno.notdir)
      expect((yield* fs.open("notes.txt/x")).errno).toBe(Errno.notdir)
      expect((yield* fs.open("")).errno).toBe(Errno.noent)
      expect((yield* fs.open("notes.txt\0.jpg")).errno).toBe(Errno.inval)
      expect((yield* fs.open(Uint8Array.from([0xff, 0xfe]))).errno).toBe(Errno.ilseq)
      expect((yield* fs.open("x".repeat(5000))).errno).toBe(Errno.nametoolong)
      // A file fd is not a directory to open from; an unknown fd is EBADF.
      const file = yield* fs.openOk("notes.txt")
      expect((yield* fs.open("x", { dirfd: file })).errno).toBe(Errno.notdir)
      expect((yield* fs.open("notes.txt", { dirfd: 77 })).errno).toBe(Errno.badf)
      expect(yield* fs.close(file)).toBe(Errno.success)
      expect(yield* fs.close(file)).toBe(Errno.badf)
      expect((yield* fs.read(file, 10)).errno).toBe(Errno.badf)
    })
  )

  it.scoped("listing shows exactly the mount's entries, sorted, without . and .., across cookies", () =>
    Effect.gen(function* () {
      const fs = yield* load(libraryMount())
      const expected = readdirSync(library).sort()
      const root = yield* fs.list(3)
      expect(root.map((e) => e.name)).toEqual(expected)
      expect(root.map((e) => e.next)).toEqual(expected.map((_, i) => BigInt(i + 1)))
      const byName = Object.fromEntries(root.map((e) => [e.name, e]))
      expect(byName["Album"]?.type).toBe(T.directory)
      expect(byName["song.flac"]?.type).toBe(T.regularFile)
      // The escaping links are entries of the library; only following them is refused.
      expect(byName["escape-link"]?.type).toBe(T.symbolicLink)
      expect(byName["song.flac"]?.ino).toBe(lstatSync(join(library, "song.flac"), { bigint: true }).ino)
      // Small buffers page through the same list (a cut-off record means "call again").
      expect((yield* fs.list(3, 40)).map((e) => e.name)).toEqual(expected)
      const cut = yield* fs.readdir(3, 20, 0n)
      expect(cut.used).toBe(20)
      expect(parseDirents(cut.raw)).toMatchObject({ entries: [], partial: true })
      // Paging through one directory while another is listed in between keeps its cookies valid.
      const first = parseDirents((yield* fs.readdir(3, 64, 0n)).raw).entries
      expect((yield* fs.list(yield* fs.openOk("Album"))).length).toBe(2)
      const rest = yield* fs.readdir(3, 4096, first[first.length - 1]!.next)
      expect([...first, ...parseDirents(rest.raw).entries].map((e) => e.name)).toEqual(expected)
      // Past the end: nothing.
      expect((yield* fs.readdir(3, 256, 1000n)).used).toBe(0)
      expect((yield* fs.readdir(3, 256, -1n)).used).toBe(0)
      // Subdirectories, through an inside link too; `.` opens the mount root itself.
      const album = yield* fs.openOk("Album", { oflags: O.directory })
      expect((yield* fs.list(album)).map((e) => e.name)).toEqual(["cover.jpg", "track01.mp3"])
      const viaLink = yield* fs.openOk("inside-link")
      expect((yield* fs.list(viaLink)).map((e) => e.name)).toEqual(["cover.jpg", "track01.mp3"])
      const dot = yield* fs.openOk(".", { oflags: O.directory })
      expect((yield* fs.list(dot)).map((e) => e.name)).toEqual(expected)
      const empty = yield* fs.openOk("Empty/")
      expect(yield* fs.list(empty)).toEqual([])
      // A file is not a directory to list.
      const file = yield* fs.openOk("notes.txt")
      expect((yield* fs.readdir(file, 256, 0n)).errno).toBe(Errno.notdir)
    })
  )

  it.scoped("every way out of the mount fails with ENOTCAPABLE", () =>
    Effect.gen(function* () {
      const fs = yield* load(libraryMount())
      for (const path of escapes()) {
        expect([path, (yield* fs.open(path)).errno]).toEqual([path, Errno.notcapable])
        expect([path, (yield* fs.open(path, { oflags: O.directory })).errno]).toEqual([
          path,
          Errno.notcapable
        ])
        expect([path, (yield* fs.stat(path)).errno]).toEqual([path, Errno.notcapable])
      }
      // Without SYMLINK_FOLLOW an escaping link is only a link: opening it is ELOOP (O_NOFOLLOW),
      // stat describes the link itself, which lives inside the mount.
      expect((yield* fs.open("escape-link", { lookup: NOFOLLOW })).errno).toBe(Errno.loop)
      expect((yield* fs.open("escape-dir", { lookup: NOFOLLOW })).errno).toBe(Errno.loop)
      expect((yield* fs.stat("escape-link", NOFOLLOW)).filetype).toBe(T.symbolicLink)
      expect((yield* fs.stat("escape-dir/secret.txt", NOFOLLOW)).errno).toBe(Errno.notcapable)
      expect((yield* fs.stat("../secret.txt", NOFOLLOW)).errno).toBe(Errno.notcapable)
      // Links never reveal their target.
      expect((yield* fs.readlink("escape-link")).errno).toBe(Errno.notcapable)
      expect((yield* fs.readlink("notes-link")).errno).toBe(Errno.notcapable)
      expect((yield* fs.readlink("notes.txt")).errno).toBe(Errno.inval)
      expect((yield* fs.readlink("../secret.txt")).errno).toBe(Errno.notcapable)
      // Nothing outside ever showed up.
      expect(readFileSync(join(base, "secret.txt"), "utf8")).toBe(secret)
    })
  )

  it.scoped("symlinks are walked as their targets: inside ones work, absolute ones too, nothing else", () =>
    Effect.gen(function* () {
      const links = join(base, `links-${Date.now()}`)
      const alias = `${links}-alias`
      mkdirSync(join(links, "Sub"), { recursive: true })
      symlinkSync(links, alias)
      writeFileSync(join(links, "Sub", "real.txt"), "real")
      symlinkSync(join(links, "Sub", "real.txt"), join(links, "abs-real"))
      symlinkSync(join(alias, "Sub"), join(links, "abs-alias"))
      symlinkSync("../Sub/real.txt", join(links, "Sub", "up"))
      symlinkSync("Sub/up", join(links, "chain"))
      symlinkSync("abs-real", join(links, "chain-abs"))
      symlinkSync("loop", join(links, "loop"))
      symlinkSync("nowhere", join(links, "dangling-in"))
      symlinkSync("../nowhere", join(links, "dangling-out"))
      symlinkSync("Sub/../../secret.txt", join(links, "deep-escape"))
      symlinkSync(`${links}/../secret.txt`, join(links, "abs-dotdot"))
      symlinkSync(`${links}-other`, join(links, "abs-sibling"))
      // Mounted through the alias: targets may name the root by its real path or by the mount's.
      const fs = yield* load([{ guestPath: "/libraries/1", hostPath: alias }])
      for (const path of ["abs-real", "abs-alias/real.txt", "Sub/up", "chain", "chain-abs"]) {
        expect([path, (yield* fs.readAll(path)).toString()]).toEqual([path, "real"])
      }
      const sub = yield* fs.openOk("abs-alias")
      expect((yield* fs.list(sub)).map((e) => e.name)).toEqual(["real.txt", "up"])
      expect(yield* fs.stat("chain")).toMatchObject({
        errno: Errno.success,
        size: 4n,
        filetype: T.regularFile
      })
      expect(yield* fs.stat("chain", NOFOLLOW)).toMatchObject({
        errno: Errno.success,
        filetype: T.symbolicLink
      })
      expect((yield* fs.open("loop")).errno).toBe(Errno.loop)
      expect((yield* fs.stat("loop/x")).errno).toBe(Errno.loop)
      expect((yield* fs.open("dangling-in")).errno).toBe(Errno.noent)
      // Outside targets are refused without being looked at: existing or not, the answer is the same.
      for (const path of ["dangling-out", "deep-escape", "abs-dotdot", "abs-sibling", "abs-sibling/x"]) {
        expect([path, (yield* fs.open(path)).errno]).toEqual([path, Errno.notcapable])
        expect([path, (yield* fs.stat(path)).errno]).toEqual([path, Errno.notcapable])
      }
    })
  )

  it.scoped(
    "a mount root swapped for a symlink is refused; a folder re-created in its place is the mount",
    () =>
      Effect.gen(function* () {
        const root = join(base, `swapped-root-${Date.now()}`)
        mkdirSync(root)
        writeFileSync(join(root, "a.txt"), "first")
        const fs = yield* load([{ guestPath: "/libraries/1", hostPath: root }])
        expect((yield* fs.readAll("a.txt")).toString()).toBe("first")
        const dir = yield* fs.openOk(".")
        renameSync(root, `${root}-old`)
        symlinkSync(base, root)
        expect((yield* fs.open("secret.txt")).errno).toBe(Errno.notcapable)
        expect((yield* fs.stat(".")).errno).toBe(Errno.notcapable)
        expect((yield* fs.readdir(3, 4096, 0n)).errno).toBe(Errno.notcapable)
        expect((yield* fs.readdir(dir, 4096, 0n)).errno).toBe(Errno.notcapable)
        expect((yield* fs.fstat(dir)).errno).toBe(Errno.notcapable)
        rmSync(root)
        mkdirSync(root)
        writeFileSync(join(root, "a.txt"), "second")
        expect((yield* fs.readAll("a.txt")).toString()).toBe("second")
        expect((yield* fs.list(3)).map((e) => e.name)).toEqual(["a.txt"])
      })
  )

  it.scoped("every write fails (EROFS, or EBADF on a read-only fd) and the disk is unchanged", () =>
    Effect.gen(function* () {
      const fs = yield* load(libraryMount())
      const before = snapshot(base)
      expect((yield* fs.open("new.txt", { oflags: O.creat })).errno).toBe(Errno.rofs)
      expect((yield* fs.open("new.txt", { oflags: O.creat | O.excl })).errno).toBe(Errno.rofs)
      expect((yield* fs.open("notes.txt", { oflags: O.trunc })).errno).toBe(Errno.rofs)
      expect((yield* fs.open("notes.txt", { fdflags: 1 })).errno).toBe(Errno.rofs)
      expect((yield* fs.open("notes.txt", { rights: READ | R.fdWrite })).errno).toBe(Errno.rofs)
      expect((yield* fs.open("Album/new.txt", { oflags: O.creat })).errno).toBe(Errno.rofs)
      // Escapes are refused as escapes even when they also ask to write.
      expect((yield* fs.open("../new.txt", { oflags: O.creat })).errno).toBe(Errno.notcapable)
      expect((yield* fs.open("escape-link", { oflags: O.trunc })).errno).toBe(Errno.rofs)
      expect(yield* fs.errno("path_create_directory", 3, "NewDir")).toBe(Errno.rofs)
      expect(yield* fs.errno("path_create_directory", 3, "../NewDir")).toBe(Errno.rofs)
      expect(yield* fs.errno("path_remove_directory", 3, "Empty")).toBe(Errno.rofs)
      expect(yield* fs.errno("path_unlink_file", 3, "notes.txt")).toBe(Errno.rofs)
      expect(yield* fs.errno("path_unlink_file", 3, "escape-link")).toBe(Errno.rofs)
      expect(yield* fs.errno("path_rename", 3, 3, 9, "notes.txt", "moved.txt")).toBe(Errno.rofs)
      expect(yield* fs.errno("path_rename", 3, 3, 9, "notes.txt", "../moved.txt")).toBe(Errno.rofs)
      expect(yield* fs.errno("path_link", 3, 3, 9, "notes.txt", "hardlink")).toBe(Errno.rofs)
      expect(yield* fs.errno("path_symlink", 3, 13, "../secret.txt", "evil")).toBe(Errno.rofs)
      expect(yield* fs.errno("path_filestat_set_times", 3, FOLLOW, "notes.txt")).toBe(Errno.rofs)
      const fd = yield* fs.openOk("notes.txt")
      expect(yield* fs.errno("fd_write", fd, "overwritten")).toBe(Errno.badf)
      expect(yield* fs.errno("fd_pwrite", fd, 0, 0n, "overwritten")).toBe(Errno.badf)
      expect(yield* fs.errno("fd_filestat_set_size", fd, 0, 0n)).toBe(Errno.rofs)
      expect(yield* fs.errno("fd_filestat_set_times", fd)).toBe(Errno.rofs)
      expect(yield* fs.errno("fd_allocate", fd)).toBe(Errno.rofs)
      expect(yield* fs.errno("fd_filestat_set_size", 3, 0, 0n)).toBe(Errno.rofs)
      expect(yield* fs.errno("fd_write", 3, "x")).toBe(Errno.badf)
      // Preopens and stdio cannot be renumbered over or away.
      expect(yield* fs.errno("fd_renumber", fd, 3)).toBe(Errno.notcapable)
      expect(yield* fs.errno("fd_renumber", 3, fd)).toBe(Errno.notcapable)
      expect(yield* fs.errno("fd_renumber", fd, 1)).toBe(Errno.notcapable)
      // Rights only shrink: asking for FD_WRITE back is refused.
      expect(yield* fs.errno("fd_fdstat_set_rights", fd, 0, READ | R.fdWrite, 0n)).toBe(Errno.notcapable)
      expect(yield* fs.errno("fd_fdstat_set_rights", fd, 0, R.fdRead, 0n)).toBe(Errno.success)
      expect((yield* fs.fdstat(fd)).base).toBe(R.fdRead)
      // Mutations on fds that do not exist are EBADF, as usual.
      expect(yield* fs.errno("path_unlink_file", 42, "notes.txt")).toBe(Errno.badf)
      expect(yield* fs.errno("fd_allocate", 42)).toBe(Errno.badf)
      expect(snapshot(base)).toEqual(before)
    })
  )

  it.scoped("read-only opens as Go and wasi-libc make them succeed without any write right", () =>
    Effect.gen(function* () {
      const fs = yield* load(libraryMount())
      const goFile = yield* fs.openOk("notes.txt", { rights: GO_READ })
      const stat = yield* fs.fdstat(goFile)
      expect(stat.filetype).toBe(T.regularFile)
      expect(stat.base & WRITE_BITS).toBe(0n)
      expect(stat.base & R.fdRead).toBe(R.fdRead)
      const preopen = yield* fs.fdstat(3)
      expect(preopen.filetype).toBe(T.directory)
      expect((preopen.base | preopen.inheriting) & WRITE_BITS).toBe(0n)
      const dir = yield* fs.openOk("Album", { rights: GO_READ | R.fdReaddir })
      expect(((yield* fs.fdstat(dir)).base | (yield* fs.fdstat(dir)).inheriting) & WRITE_BITS).toBe(0n)
    })
  )

  it.scoped("stat reports sizes and types; seek, tell and pread move (or keep) the position", () =>
    Effect.gen(function* () {
      const fs = yield* load(libraryMount())
      const songStat = yield* fs.stat("song.flac")
      const host = statSync(join(library, "song.flac"), { bigint: true })
      expect(songStat).toMatchObject({
        errno: Errno.success,
        filetype: T.regularFile,
        size: 100_000n,
        ino: host.ino,
        nlink: 1n,
        mtim: host.mtimeNs
      })
      expect(yield* fs.stat("Album")).toMatchObject({ errno: Errno.success, filetype: T.directory })
      expect(yield* fs.stat("inside-link")).toMatchObject({ filetype: T.directory })
      expect(yield* fs.stat("inside-link", NOFOLLOW)).toMatchObject({ filetype: T.symbolicLink })
      expect(yield* fs.stat("notes.txt/")).toMatchObject({ errno: Errno.notdir })
      expect(yield* fs.stat(".")).toMatchObject({ errno: Errno.success, filetype: T.directory })
      expect(yield* fs.fstat(3)).toMatchObject({ errno: Errno.success, filetype: T.directory })

      const fd = yield* fs.openOk("song.flac")
      expect(yield* fs.fstat(fd)).toMatchObject({ errno: Errno.success, size: 100_000n, ino: host.ino })
      expect(yield* fs.seek(fd, 0, 1000n)).toEqual({ errno: Errno.success, offset: 1000n })
      expect((yield* fs.read(fd, 10)).data.equals(song.subarray(1000, 1010))).toBe(true)
      expect(yield* fs.tell(fd)).toEqual({ errno: Errno.success, offset: 1010n })
      expect(yield* fs.seek(fd, 1, -10n)).toEqual({ errno: Errno.success, offset: 1000n })
      expect(yield* fs.seek(fd, 2, -5n)).toEqual({ errno: Errno.success, offset: 99_995n })
      expect((yield* fs.read(fd, 100)).data.equals(song.subarray(99_995))).toBe(true)
      expect((yield* fs.read(fd, 100)).data.byteLength).toBe(0)
      expect((yield* fs.seek(fd, 0, -1n)).errno).toBe(Errno.inval)
      expect((yield* fs.seek(fd, 7, 0n)).errno).toBe(Errno.inval)
      expect((yield* fs.pread(fd, 4, 50n)).data.equals(song.subarray(50, 54))).toBe(true)
      expect((yield* fs.pread(fd, 4, 1n << 62n)).errno).toBe(Errno.inval)
      expect(yield* fs.tell(fd)).toEqual({ errno: Errno.success, offset: 100_000n })
      // Directories cannot be read or seeked like files.
      expect((yield* fs.read(3, 10)).errno).toBe(Errno.isdir)
      expect((yield* fs.seek(3, 0, 0n)).errno).toBe(Errno.badf)
    })
  )

  it.scoped("bad guest pointers are EFAULT, not a trap, and the plugin keeps working", () =>
    Effect.gen(function* () {
      const fs = yield* load(libraryMount())
      const { fault, nametoolong } = Errno
      expect(yield* fs.words("faults", 3)).toEqual([
        fault,
        fault,
        nametoolong,
        fault,
        fault,
        fault,
        fault,
        fault,
        fault,
        fault,
        fault,
        fault,
        fault,
        fault
      ])
      const fd = yield* fs.openOk("notes.txt")
      expect(yield* fs.errno("fd_read_bad_iovec", fd)).toBe(fault)
      expect((yield* fs.read(fd, 64)).data.toString()).toBe(notes)
    })
  )

  it.scoped(
    "WASI fds survive across calls without holding host fds; at most 128 are open; replaced files are stale",
    () =>
      Effect.gen(function* () {
        const copy = join(base, `copy-${Date.now()}`)
        cpSync(library, copy, { recursive: true, verbatimSymlinks: true })
        const fs = yield* load([{ guestPath: "/libraries/1", hostPath: copy }])
        const hostFds = () => readdirSync("/proc/self/fd").length
        const idle = hostFds()
        expect(yield* fs.words("open_many", 200, 3, "notes.txt")).toEqual([Errno.mfile, 128])
        // The 128 WASI fds are open, yet host descriptors live only inside single WASI calls.
        expect(hostFds()).toBeLessThan(idle + 10)
        expect((yield* fs.open("notes.txt")).errno).toBe(Errno.mfile)
        expect(yield* fs.close(4)).toBe(Errno.success)
        const fd = yield* fs.openOk("song.flac")
        expect(fd).toBe(4)
        expect((yield* fs.read(fd, 5)).data.equals(song.subarray(0, 5))).toBe(true)
        // Reopened on the next call at the same position.
        expect((yield* fs.read(fd, 5)).data.equals(song.subarray(5, 10))).toBe(true)
        // Renumbering moves an open file.
        expect(yield* fs.errno("fd_renumber", fd, 5)).toBe(Errno.success)
        expect((yield* fs.read(5, 5)).data.equals(song.subarray(10, 15))).toBe(true)
        expect((yield* fs.read(4, 5)).errno).toBe(Errno.badf)
        // A file replaced or removed on disk since the guest opened it: ESTALE, never the new content.
        writeFileSync(join(copy, "song.flac.new"), "different")
        rmSync(join(copy, "song.flac"))
        // Created after the delete, so it may even reuse the old inode number.
        cpSync(join(copy, "song.flac.new"), join(copy, "song.flac"))
        expect((yield* fs.read(5, 5)).errno).toBe(Errno.stale)
        const notesFd = yield* fs.openOk("notes.txt")
        rmSync(join(copy, "notes.txt"))
        expect((yield* fs.read(notesFd, 5)).errno).toBe(Errno.stale)
      })
  )

  it.scoped("a worker stopped mid-read on a timeout leaves no host descriptors behind", () =>
    Effect.gen(function* () {
      const hostFds = () => readdirSync("/proc/self/fd").length
      const idle = hostFds()
      const fs = yield* load(libraryMount(), 500)
      expect(yield* fs.words("open_many", 128, 3, "song.flac")).toEqual([0, 128])
      const result = yield* Effect.either(fs.raw("read_forever", 4, 128))
      expect(result._tag === "Left" && result.left._tag).toBe("PluginTimeoutError")
      // At most the one descriptor of the read that was cut short, never the 128 open WASI fds.
      expect(hostFds()).toBeLessThan(idle + 10)
    })
  )
})

layer(testEngine({ runtime: { poolSize: 1 } }))("WASI filesystem through the loader", (it) => {
  it.scoped("an allowed library with filesystem: true is mounted at /libraries/<id>, read-only", () =>
    Effect.gen(function* () {
      const { dataFolder } = yield* HostFunctions
      const loader = yield* PluginLoader
      const fs = client(yield* loader.loadFile(fixture("wasi-escape"), { libraries: [1] }))
      expect(yield* fs.prestatName(3, 12)).toEqual({ errno: Errno.success, name: "/libraries/1" })
      expect((yield* fs.prestat(4)).errno).toBe(Errno.badf)
      const folder = demoLibraryFolder(dataFolder)
      expect((yield* fs.list(3)).map((e) => e.name)).toEqual(readdirSync(folder).sort())
      const artist = readdirSync(folder).sort()[0]!
      const album = readdirSync(join(folder, artist)).sort()[0]!
      const song = `${artist}/${album}/${readdirSync(join(folder, artist, album)).sort()[0]!}`
      expect((yield* fs.readAll(song)).equals(readFileSync(join(folder, song)))).toBe(true)
      expect((yield* fs.open("../ndp.db")).errno).toBe(Errno.notcapable)
      expect(yield* fs.errno("path_unlink_file", 3, song)).toBe(Errno.rofs)
    })
  )

  it.scoped("without an allowed library the plugin has no preopens", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const fs = client(yield* loader.loadFile(fixture("wasi-escape")))
      expect((yield* fs.prestat(3)).errno).toBe(Errno.badf)
    })
  )
})

/** A fresh copy of the library (its escape links too) that a test may write to. */
const writableCopy = (): { root: string; copy: string } => {
  const root = mkdtempSync(join(tmpdir(), "ndp-wasifs-rw-"))
  const copy = join(root, "library")
  cpSync(library, copy, { recursive: true, verbatimSymlinks: true })
  writeFileSync(join(root, "secret.txt"), secret)
  return { root, copy }
}

const WRITE = READ | R.fdWrite

layer(runtimeLayer({ poolSize: 1, defaultTimeoutMs: 10_000 }))("WASI filesystem, writable mounts", (it) => {
  it.scoped("creates, writes, appends, truncates, renames and removes inside the mount", () =>
    Effect.gen(function* () {
      const { root, copy } = writableCopy()
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(root, { recursive: true, force: true })))
      const fs = yield* load([{ guestPath: "/storage", hostPath: copy, writable: true }])
      const preopen = yield* fs.fdstat(3)
      expect(preopen.base & R.fdWrite).toBe(0n)
      expect(preopen.inheriting & R.fdWrite).toBe(R.fdWrite)

      const fd = (yield* fs.open("new.txt", { oflags: O.creat | O.excl, rights: WRITE })).fd
      expect(yield* fs.errno("fd_write", fd, "hello ")).toBe(Errno.success)
      expect(yield* fs.errno("fd_write", fd, "world")).toBe(Errno.success)
      expect(yield* fs.errno("fd_pwrite", fd, 0, 0n, "J")).toBe(Errno.success)
      expect(yield* fs.close(fd)).toBe(Errno.success)
      expect(readFileSync(join(copy, "new.txt"), "utf8")).toBe("Jello world")
      expect(statSync(join(copy, "new.txt")).mode & 0o777).toBe(0o600)
      expect((yield* fs.open("new.txt", { oflags: O.creat | O.excl, rights: WRITE })).errno).toBe(Errno.exist)

      const appender = yield* fs.openOk("new.txt", { fdflags: 1, rights: WRITE })
      expect(yield* fs.errno("fd_write", appender, "!")).toBe(Errno.success)
      expect(readFileSync(join(copy, "new.txt"), "utf8")).toBe("Jello world!")
      expect(yield* fs.errno("fd_filestat_set_size", appender, 0, 5n)).toBe(Errno.success)
      expect(readFileSync(join(copy, "new.txt"), "utf8")).toBe("Jello")
      // A descriptor opened without FD_WRITE stays read-only on a writable mount.
      const reader = yield* fs.openOk("new.txt")
      expect(yield* fs.errno("fd_write", reader, "x")).toBe(Errno.badf)
      yield* fs.openOk("notes.txt", { oflags: O.trunc, rights: WRITE })
      expect(readFileSync(join(copy, "notes.txt"), "utf8")).toBe("")

      expect(yield* fs.errno("path_create_directory", 3, "Made/")).toBe(Errno.success)
      expect(yield* fs.errno("path_create_directory", 3, "Made")).toBe(Errno.exist)
      expect(yield* fs.openOk("Made/inner.txt", { oflags: O.creat, rights: WRITE })).toBeGreaterThan(3)
      expect(yield* fs.errno("path_rename", 3, 3, 7, "new.txt", "Made/moved.txt")).toBe(Errno.success)
      expect(readFileSync(join(copy, "Made", "moved.txt"), "utf8")).toBe("Jello")
      expect(yield* fs.errno("path_remove_directory", 3, "Made")).toBe(Errno.notempty)
      expect(yield* fs.errno("path_unlink_file", 3, "Made")).toBe(Errno.isdir)
      expect(yield* fs.errno("path_unlink_file", 3, "Made/moved.txt")).toBe(Errno.success)
      expect(yield* fs.errno("path_unlink_file", 3, "Made/inner.txt")).toBe(Errno.success)
      expect(yield* fs.errno("path_remove_directory", 3, "Made")).toBe(Errno.success)
      expect(yield* fs.errno("path_remove_directory", 3, ".")).toBe(Errno.busy)
      // Removing a link removes the link, never what it points to.
      expect(yield* fs.errno("path_unlink_file", 3, "escape-link")).toBe(Errno.success)
      expect(readFileSync(join(root, "secret.txt"), "utf8")).toBe(secret)
      expect(readdirSync(copy).sort()).toEqual(
        [
          "Album",
          "Empty",
          "escape-abs",
          "escape-dir",
          "inside-link",
          "notes-link",
          "notes.txt",
          "song.flac"
        ].sort()
      )
    })
  )

  it.scoped("stays jailed: no way out, no symlink or hard link, nothing outside changes", () =>
    Effect.gen(function* () {
      const { root, copy } = writableCopy()
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(root, { recursive: true, force: true })))
      const fs = yield* load([{ guestPath: "/storage", hostPath: copy, writable: true }])
      const outside = () => readdirSync(root).sort()
      const before = outside()
      for (const path of ["../new.txt", "/etc/new.txt", "Album/../../new.txt", "escape-dir/new.txt"]) {
        expect((yield* fs.open(path, { oflags: O.creat, rights: WRITE })).errno, path).toBe(Errno.notcapable)
        expect(yield* fs.errno("path_create_directory", 3, path), path).toBe(Errno.notcapable)
      }
      // Writing through a link that leads out is refused; so is truncating it.
      expect((yield* fs.open("escape-link", { rights: WRITE })).errno).toBe(Errno.notcapable)
      expect((yield* fs.open("escape-abs", { oflags: O.trunc, rights: WRITE })).errno).toBe(Errno.notcapable)
      expect(yield* fs.errno("path_rename", 3, 3, 9, "notes.txt", "../moved.txt")).toBe(Errno.notcapable)
      expect(yield* fs.errno("path_rename", 3, 3, 13, "../secret.txt", "stolen")).toBe(Errno.notcapable)
      expect(yield* fs.errno("path_unlink_file", 3, "../secret.txt")).toBe(Errno.notcapable)
      expect(yield* fs.errno("path_symlink", 3, 13, "../secret.txt", "evil")).toBe(Errno.perm)
      expect(yield* fs.errno("path_symlink", 3, 9, "notes.txt", "fine")).toBe(Errno.perm)
      expect(yield* fs.errno("path_link", 3, 3, 9, "notes.txt", "hardlink")).toBe(Errno.perm)
      expect(outside()).toEqual(before)
      expect(readFileSync(join(root, "secret.txt"), "utf8")).toBe(secret)
      expect(lstatSync(join(copy, "evil"), { throwIfNoEntry: false })).toBeUndefined()
    })
  )

  it.scoped("a quota refuses (EDQUOT) any write that would grow the folder past it, and keeps it", () =>
    Effect.gen(function* () {
      const root = mkdtempSync(join(tmpdir(), "ndp-wasifs-quota-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(root, { recursive: true, force: true })))
      const fs = yield* load([{ guestPath: "/storage", hostPath: root, writable: true, maxBytes: 1000 }])
      const a = yield* fs.openOk("a.bin", { oflags: O.creat, rights: WRITE })
      expect(yield* fs.errno("fd_write", a, "x".repeat(600))).toBe(Errno.success)
      const b = yield* fs.openOk("b.bin", { oflags: O.creat, rights: WRITE })
      expect(yield* fs.errno("fd_write", b, "y".repeat(401))).toBe(Errno.dquot)
      expect(yield* fs.errno("fd_pwrite", b, 0, 5000n, "y")).toBe(Errno.dquot)
      expect(yield* fs.errno("fd_filestat_set_size", b, 0, 401n)).toBe(Errno.dquot)
      expect(yield* fs.errno("fd_allocate", b)).toBe(Errno.dquot)
      expect(yield* fs.errno("fd_write", b, "y".repeat(400))).toBe(Errno.success)
      // Overwriting in place does not grow the folder, so it still works when full.
      expect(yield* fs.errno("fd_pwrite", a, 0, 0n, "z".repeat(600))).toBe(Errno.success)
      expect(yield* fs.errno("fd_write", b, "y")).toBe(Errno.dquot)
      expect(statSync(join(root, "a.bin")).size + statSync(join(root, "b.bin")).size).toBe(1000)
      // Freeing space makes room again.
      expect(yield* fs.errno("fd_filestat_set_size", a, 0, 100n)).toBe(Errno.success)
      expect(yield* fs.errno("fd_write", b, "y".repeat(500))).toBe(Errno.success)
    })
  )
})

layer(testEngine({ runtime: { poolSize: 1 } }))("WASI filesystem: storage and library write access", (it) => {
  it.scoped("storage: /storage is the plugin's own folder, writable within storage.maxSize", () =>
    Effect.gen(function* () {
      const { dataFolder } = yield* HostFunctions
      const loader = yield* PluginLoader
      const bytes = repackage("wasi-escape", (m) => ({
        ...m,
        permissions: { storage: { maxSize: "4KB" } }
      }))
      const fs = client(yield* loader.loadBytes("wasi-store", bytes))
      expect(yield* fs.prestatName(3, 8)).toEqual({ errno: Errno.success, name: "/storage" })
      const fd = yield* fs.openOk("cache.json", { oflags: O.creat, rights: WRITE })
      expect(yield* fs.errno("fd_write", fd, '{"a":1}')).toBe(Errno.success)
      expect(readFileSync(join(storageFolder(dataFolder, "wasi-store"), "cache.json"), "utf8")).toBe(
        '{"a":1}'
      )
      expect(yield* fs.errno("fd_write", fd, "x".repeat(4000))).toBe(Errno.dquot)
      expect((yield* fs.open("../kvstore.db", { oflags: O.creat, rights: WRITE })).errno).toBe(
        Errno.notcapable
      )
    })
  )

  it.scoped("storage_getstoragepath answers /storage from inside Wasm", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const plugin = yield* loader.loadFile(fixture("host-storage"))
      const out = yield* plugin.call("call_storage_getstoragepath", new TextEncoder().encode("{}"))
      expect(JSON.parse(new TextDecoder().decode(out ?? new Uint8Array()))).toEqual({ result: "/storage" })
      const refused = yield* Effect.flip(
        loader.loadBytes(
          "no-storage",
          repackage("host-storage", (m) => ({ ...m, permissions: {} }))
        )
      )
      expect(refused.message).toContain("storage_getstoragepath")
      expect(refused.message).toContain("storage")
    })
  )

  it.scoped("library folders are writable only when the administrator allows it", () =>
    Effect.gen(function* () {
      const { dataFolder } = yield* HostFunctions
      const loader = yield* PluginLoader
      const readOnly = client(yield* loader.loadFile(fixture("wasi-escape"), { libraries: [1] }))
      expect((yield* readOnly.open("written.txt", { oflags: O.creat, rights: WRITE })).errno).toBe(Errno.rofs)
      const writable = client(
        yield* loader.loadFile(fixture("wasi-escape"), { libraries: [1], allowLibraryWrite: true })
      )
      const fd = yield* writable.openOk("written.txt", { oflags: O.creat, rights: WRITE })
      expect(yield* writable.errno("fd_write", fd, "notes")).toBe(Errno.success)
      const written = join(demoLibraryFolder(dataFolder), "written.txt")
      expect(readFileSync(written, "utf8")).toBe("notes")
      expect((yield* writable.open("../ndp.db", { rights: WRITE })).errno).toBe(Errno.notcapable)
      expect(yield* writable.errno("path_unlink_file", 3, "written.txt")).toBe(Errno.success)
      expect(lstatSync(written, { throwIfNoEntry: false })).toBeUndefined()
    })
  )
})

describe("WASI filesystem without Linux /proc", () => {
  it("fails closed: the mounts are still preopens, every call that would look at the disk is ENOSYS", () => {
    const memory = new WebAssembly.Memory({ initial: 1 })
    new Uint8Array(memory.buffer).set(encoder.encode("notes.txt"), 100)
    const errno = (call: () => number): number => {
      try {
        return call()
      } catch (error) {
        return errnoOf(error) ?? -1
      }
    }
    const calls = (fs: WasiFs) => ({
      prestat: errno(() => fs.prestatGet(3, 0)),
      open: errno(() => fs.open(3, FOLLOW, 100, 9, 0, READ, READ, 0, 200)),
      stat: errno(() => fs.pathFilestatGet(3, FOLLOW, 100, 9, 200)),
      fstat: errno(() => fs.filestatGet(3, 200)),
      readdir: errno(() => fs.readdir(3, 300, 256, 0n, 200)),
      readlink: errno(() => fs.readlink(3, 100, 9, 300, 64, 200))
    })
    const guest = new GuestMemory(() => memory)
    const { nosys, success, inval } = Errno
    const closed = new WasiFs(libraryMount(), guest, false)
    expect(closed.unavailable).toMatch(/needs Linux with \/proc.*Run the engine on Linux/)
    expect(calls(closed)).toEqual({
      prestat: success,
      open: nosys,
      stat: nosys,
      fstat: nosys,
      readdir: nosys,
      readlink: nosys
    })
    // The same calls on this Linux host, where the jail is available.
    const open = new WasiFs(libraryMount(), guest)
    expect(open.unavailable).toBeUndefined()
    expect(calls(open)).toEqual({
      prestat: success,
      open: success,
      stat: success,
      fstat: success,
      readdir: success,
      readlink: inval
    })
  })
})

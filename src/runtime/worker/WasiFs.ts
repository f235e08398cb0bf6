/**
 * The read-only, jailed WASI filesystem of one plugin instance. Every mount is a preopened directory
 * (fd 3, 4, …); the guest reaches files only by paths relative to an open directory, resolved
 * lexically inside its mount, then checked against the mount's real root after symlinks are
 * followed. Nothing is ever created, changed or removed. See docs/host-services/filesystem.md.
 */
import {
  type BigIntStats,
  closeSync,
  constants,
  type Dirent,
  existsSync,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readSync,
  realpathSync,
  statSync
} from "node:fs"
import { basename, dirname, join, sep } from "node:path"
import {
  Errno,
  Fdflags,
  Filetype,
  type GuestMemory,
  LOOKUP_SYMLINK_FOLLOW,
  Oflags,
  Rights,
  WasiError
} from "./WasiAbi.js"

/** A host folder the guest sees read-only at `guestPath`. */
export interface FsMount {
  readonly guestPath: string
  readonly hostPath: string
}

/** WASI fds a guest may hold open at once, preopens not counted. */
export const MAX_OPEN_FDS = 128
/** Longest path a guest may pass (bytes), like Linux's PATH_MAX. */
export const MAX_PATH_BYTES = 4096

/** What a read-only file fd can do; write bits are never granted. */
export const FILE_RIGHTS =
  Rights.fdRead |
  Rights.fdSeek |
  Rights.fdFdstatSetFlags |
  Rights.fdSync |
  Rights.fdTell |
  Rights.fdAdvise |
  Rights.fdFilestatGet |
  Rights.pollFdReadwrite
/** What a read-only directory fd can do. */
export const DIR_RIGHTS =
  Rights.fdFdstatSetFlags |
  Rights.fdSync |
  Rights.pathOpen |
  Rights.fdReaddir |
  Rights.pathReadlink |
  Rights.pathFilestatGet |
  Rights.fdFilestatGet

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK
const DIRENT_HEADER_BYTES = 24
const MAX_U32 = 0xffff_ffff
// Linux only: lets us ask the kernel where an opened descriptor really is.
const procFd = existsSync("/proc/self/fd") ? "/proc/self/fd/" : undefined

/** One directory's entries, sorted by name, as seen by `fd_readdir` at cookie 0. */
interface Listing {
  readonly dir: DirEntry
  readonly realPath: string
  readonly entries: ReadonlyArray<{ readonly name: string; readonly type: number }>
}

interface DirEntry {
  readonly kind: "dir"
  readonly mount: number
  /** Path below the mount root, lexically normalised (no `.`/`..`, no empty parts). */
  readonly segments: ReadonlyArray<string>
  readonly preopen: boolean
  rightsBase: bigint
  rightsInheriting: bigint
}

interface FileEntry {
  readonly kind: "file"
  readonly realPath: string
  readonly identity: Identity
  position: number
  rightsBase: bigint
}

type Entry = DirEntry | FileEntry

/** Which file an fd means; the birth time tells a new file from an old one that had the same inode. */
interface Identity {
  readonly dev: bigint
  readonly ino: bigint
  readonly birthtimeNs: bigint
}

const sameFile = (stats: BigIntStats, identity: Identity): boolean =>
  stats.dev === identity.dev && stats.ino === identity.ino && stats.birthtimeNs === identity.birthtimeNs

const encoder = new TextEncoder()
const pathDecoder = new TextDecoder("utf-8", { fatal: true })

const closeQuietly = (fd: number): void => {
  try {
    closeSync(fd)
  } catch {
    // Already closed: nothing to release.
  }
}

const isInside = (root: string, real: string): boolean =>
  real === root || real.startsWith(root.endsWith(sep) ? root : root + sep)

const assertInside = (root: string, real: string): void => {
  if (!isInside(root, real)) throw new WasiError(Errno.notcapable)
}

const filetypeOf = (stats: BigIntStats | Dirent): number =>
  stats.isDirectory()
    ? Filetype.directory
    : stats.isFile()
      ? Filetype.regularFile
      : stats.isSymbolicLink()
        ? Filetype.symbolicLink
        : stats.isBlockDevice()
          ? Filetype.blockDevice
          : stats.isCharacterDevice()
            ? Filetype.characterDevice
            : stats.isSocket()
              ? Filetype.socketStream
              : Filetype.unknown

const toOffset = (value: bigint): number => {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) throw new WasiError(Errno.inval)
  return Number(value)
}

export class WasiFs {
  private readonly table = new Map<number, Entry>()
  // Only the last listed directory is kept (a guest could otherwise pin one per open fd); the
  // sorted order keeps cookies valid when another directory was listed in between.
  private listing: Listing | undefined

  constructor(
    private readonly mounts: ReadonlyArray<FsMount>,
    private readonly memory: GuestMemory
  ) {
    mounts.forEach((_, mount) =>
      this.table.set(3 + mount, {
        kind: "dir",
        mount,
        segments: [],
        preopen: true,
        rightsBase: DIR_RIGHTS,
        rightsInheriting: DIR_RIGHTS | FILE_RIGHTS
      })
    )
  }

  /** Whether `fd` is one of this filesystem's descriptors. */
  has(fd: number): boolean {
    return this.table.has(fd)
  }

  prestatGet(fd: number, out: number): number {
    const entry = this.table.get(fd)
    if (entry?.kind !== "dir" || !entry.preopen) return Errno.badf
    const name = encoder.encode(this.mounts[entry.mount]!.guestPath)
    this.memory.bytes(out, 8).fill(0)
    this.memory.setU32(out + 4, name.byteLength)
    return Errno.success
  }

  prestatDirName(fd: number, ptr: number, length: number): number {
    const entry = this.table.get(fd)
    if (entry?.kind !== "dir" || !entry.preopen) return Errno.badf
    const name = encoder.encode(this.mounts[entry.mount]!.guestPath)
    if (length >>> 0 < name.byteLength) return Errno.nametoolong
    this.memory.bytes(ptr, name.byteLength).set(name)
    return Errno.success
  }

  open(
    fd: number,
    lookupFlags: number,
    pathPtr: number,
    pathLength: number,
    oflags: number,
    rightsBase: bigint,
    rightsInheriting: bigint,
    fdflags: number,
    out: number
  ): number {
    const dir = this.dir(fd)
    this.memory.bytes(out, 4)
    const { segments, mustBeDir } = this.lexical(dir, this.path(pathPtr, pathLength))
    const base = BigInt.asUintN(64, rightsBase)
    // Write intent as wazero (Navidrome's runtime) reads it: create/truncate, append, or FD_WRITE.
    // Go asks for FD_FILESTAT_SET_SIZE even on read-only opens, so that bit is dropped, not refused.
    if (
      (oflags & (Oflags.creat | Oflags.excl | Oflags.trunc)) !== 0 ||
      (fdflags & Fdflags.append) !== 0 ||
      (base & Rights.fdWrite) !== 0n
    ) {
      return Errno.rofs
    }
    if (this.openCount() >= MAX_OPEN_FDS) return Errno.mfile
    const follow = (lookupFlags & LOOKUP_SYMLINK_FOLLOW) !== 0
    const { root, real } = this.realize(dir.mount, segments, follow)
    const stats = lstatSync(real, { bigint: true })
    // Only reachable without SYMLINK_FOLLOW: the final component is a link (O_NOFOLLOW semantics).
    if (stats.isSymbolicLink()) return Errno.loop
    const inheriting = BigInt.asUintN(64, rightsInheriting)
    let entry: Entry
    if (stats.isDirectory()) {
      entry = {
        kind: "dir",
        mount: dir.mount,
        segments,
        preopen: false,
        rightsBase: base & DIR_RIGHTS,
        rightsInheriting: inheriting & (DIR_RIGHTS | FILE_RIGHTS)
      }
    } else {
      if ((oflags & Oflags.directory) !== 0 || mustBeDir) return Errno.notdir
      // FIFOs, sockets and devices could block or have side effects on open.
      if (!stats.isFile()) return Errno.acces
      this.checkFile(root, real, stats)
      entry = {
        kind: "file",
        realPath: real,
        identity: { dev: stats.dev, ino: stats.ino, birthtimeNs: stats.birthtimeNs },
        position: 0,
        rightsBase: base & FILE_RIGHTS
      }
    }
    let next = 3
    while (this.table.has(next)) next++
    this.table.set(next, entry)
    this.memory.setU32(out, next)
    return Errno.success
  }

  /** `fd_read` (at the fd's position) or `fd_pread` (at `offset`, position unchanged). */
  read(fd: number, iovs: number, count: number, out: number, offset?: bigint): number {
    const entry = this.file(fd, Errno.isdir)
    const buffers = this.memory.iovecs(iovs, count)
    this.memory.bytes(out, 4)
    let position = offset === undefined ? entry.position : toOffset(BigInt.asUintN(64, offset))
    let total = 0
    this.withFile(entry, (hostFd) => {
      for (const buffer of buffers) {
        const wanted = Math.min(buffer.byteLength, MAX_U32 - total)
        if (wanted === 0) continue
        const read = readSync(hostFd, buffer, 0, wanted, position)
        total += read
        position += read
        if (read < wanted) break
      }
    })
    if (offset === undefined) entry.position = position
    this.memory.setU32(out, total)
    return Errno.success
  }

  seek(fd: number, delta: bigint, whence: number, out: number): number {
    const entry = this.file(fd, Errno.badf)
    this.memory.bytes(out, 8)
    const base =
      whence === 0
        ? 0n
        : whence === 1
          ? BigInt(entry.position)
          : whence === 2
            ? this.withFile(entry, (hostFd) => fstatSync(hostFd, { bigint: true })).size
            : undefined
    if (base === undefined) return Errno.inval
    const position = toOffset(base + BigInt.asIntN(64, delta))
    entry.position = position
    this.memory.setU64(out, BigInt(position))
    return Errno.success
  }

  tell(fd: number, out: number): number {
    const entry = this.file(fd, Errno.badf)
    this.memory.setU64(out, BigInt(entry.position))
    return Errno.success
  }

  /** WASI dirents (d_next, d_ino, d_namlen, d_type, padding to 24, name), `.` and `..` left out. */
  readdir(fd: number, buf: number, length: number, cookie: bigint, out: number): number {
    const dir = this.dir(fd)
    const target = this.memory.bytes(buf, length)
    this.memory.bytes(out, 4)
    const start = BigInt.asUintN(64, cookie)
    if (start === 0n || this.listing?.dir !== dir) this.listing = this.list(dir)
    const { entries, realPath } = this.listing
    let used = 0
    for (let i = start > BigInt(entries.length) ? entries.length : Number(start); i < entries.length; i++) {
      if (used === target.byteLength) break
      const { name, type } = entries[i]!
      const bytes = encoder.encode(name)
      const record = new Uint8Array(DIRENT_HEADER_BYTES + bytes.byteLength)
      const view = new DataView(record.buffer)
      view.setBigUint64(0, BigInt(i + 1), true)
      view.setBigUint64(8, this.inode(join(realPath, name)), true)
      view.setUint32(16, bytes.byteLength, true)
      view.setUint8(20, type)
      record.set(bytes, DIRENT_HEADER_BYTES)
      // A record cut short by the buffer's end tells the guest to call again with a larger buffer.
      const take = Math.min(record.byteLength, target.byteLength - used)
      target.set(record.subarray(0, take), used)
      used += take
    }
    this.memory.setU32(out, used)
    return Errno.success
  }

  filestatGet(fd: number, out: number): number {
    const entry = this.entry(fd)
    this.memory.bytes(out, 64)
    const stats =
      entry.kind === "file"
        ? this.withFile(entry, (hostFd) => fstatSync(hostFd, { bigint: true }))
        : statSync(this.realize(entry.mount, entry.segments, true).real, { bigint: true })
    this.writeFilestat(out, stats)
    return Errno.success
  }

  pathFilestatGet(fd: number, lookupFlags: number, pathPtr: number, pathLength: number, out: number): number {
    const dir = this.dir(fd)
    this.memory.bytes(out, 64)
    const { segments, mustBeDir } = this.lexical(dir, this.path(pathPtr, pathLength))
    const { real } = this.realize(dir.mount, segments, (lookupFlags & LOOKUP_SYMLINK_FOLLOW) !== 0)
    const stats = lstatSync(real, { bigint: true })
    if (mustBeDir && !stats.isDirectory()) return Errno.notdir
    this.writeFilestat(out, stats)
    return Errno.success
  }

  fdstatGet(fd: number, out: number): number {
    const entry = this.entry(fd)
    const bytes = this.memory.bytes(out, 24)
    bytes.fill(0)
    this.memory.setU8(out, entry.kind === "dir" ? Filetype.directory : Filetype.regularFile)
    this.memory.setU64(out + 8, entry.rightsBase)
    this.memory.setU64(out + 16, entry.kind === "dir" ? entry.rightsInheriting : 0n)
    return Errno.success
  }

  /** Rights may only shrink. */
  setRights(fd: number, base: bigint, inheriting: bigint): number {
    const entry = this.entry(fd)
    const nextBase = BigInt.asUintN(64, base)
    const nextInheriting = BigInt.asUintN(64, inheriting)
    const currentInheriting = entry.kind === "dir" ? entry.rightsInheriting : 0n
    if ((nextBase & ~entry.rightsBase) !== 0n || (nextInheriting & ~currentInheriting) !== 0n) {
      return Errno.notcapable
    }
    entry.rightsBase = nextBase
    if (entry.kind === "dir") entry.rightsInheriting = nextInheriting
    return Errno.success
  }

  /** Not a link: EINVAL, as POSIX. A link: ENOTCAPABLE, so its target (maybe a host path) never leaks. */
  readlink(
    fd: number,
    pathPtr: number,
    pathLength: number,
    buf: number,
    length: number,
    out: number
  ): number {
    const dir = this.dir(fd)
    this.memory.bytes(buf, length)
    this.memory.bytes(out, 4)
    const { segments } = this.lexical(dir, this.path(pathPtr, pathLength))
    const { real } = this.realize(dir.mount, segments, false)
    return lstatSync(real).isSymbolicLink() ? Errno.notcapable : Errno.inval
  }

  closeFd(fd: number): number {
    if (this.listing?.dir === this.entry(fd)) this.listing = undefined
    this.table.delete(fd)
    return Errno.success
  }

  renumber(from: number, to: number): number {
    const source = this.entry(from)
    const target = this.entry(to)
    if ((source.kind === "dir" && source.preopen) || (target.kind === "dir" && target.preopen)) {
      return Errno.notcapable
    }
    if (from === to) return Errno.success
    this.closeFd(to)
    this.table.set(to, source)
    this.table.delete(from)
    return Errno.success
  }

  /** Any call that would change the tree below a directory fd. */
  mutatePath(...fds: ReadonlyArray<number>): number {
    for (const fd of fds) this.dir(fd)
    return Errno.rofs
  }

  /** Any call that would change an open file or directory. */
  mutateFd(fd: number): number {
    this.entry(fd)
    return Errno.rofs
  }

  private openCount(): number {
    let count = 0
    for (const entry of this.table.values()) if (entry.kind === "file" || !entry.preopen) count++
    return count
  }

  private entry(fd: number): Entry {
    const entry = this.table.get(fd)
    if (entry === undefined) throw new WasiError(Errno.badf)
    return entry
  }

  private dir(fd: number): DirEntry {
    const entry = this.entry(fd)
    if (entry.kind !== "dir") throw new WasiError(Errno.notdir)
    return entry
  }

  private file(fd: number, dirErrno: number): FileEntry {
    const entry = this.entry(fd)
    if (entry.kind !== "file") throw new WasiError(dirErrno)
    return entry
  }

  private path(ptr: number, length: number): string {
    if (length >>> 0 > MAX_PATH_BYTES) throw new WasiError(Errno.nametoolong)
    const bytes = this.memory.bytes(ptr, length)
    let path: string
    try {
      path = pathDecoder.decode(bytes)
    } catch {
      throw new WasiError(Errno.ilseq)
    }
    if (path.includes("\0")) throw new WasiError(Errno.inval)
    return path
  }

  /** Resolves `.` and `..` by name within the mount; climbing above its root is a capability error. */
  private lexical(dir: DirEntry, path: string): { segments: Array<string>; mustBeDir: boolean } {
    if (path === "") throw new WasiError(Errno.noent)
    if (path.startsWith("/")) throw new WasiError(Errno.notcapable)
    const segments = [...dir.segments]
    for (const part of path.split("/")) {
      if (part === "" || part === ".") continue
      if (part === "..") {
        if (segments.pop() === undefined) throw new WasiError(Errno.notcapable)
        continue
      }
      segments.push(part)
    }
    return { segments, mustBeDir: path.endsWith("/") }
  }

  /**
   * The host path for `segments` below the mount, with every symlink resolved (all of them when
   * `follow`, else all but the last) and checked to stay below the mount's real root.
   */
  private realize(
    mount: number,
    segments: ReadonlyArray<string>,
    follow: boolean
  ): { root: string; real: string } {
    const root = realpathSync.native(this.mounts[mount]!.hostPath)
    if (segments.length === 0) return { root, real: root }
    const lexical = join(root, ...segments)
    if (follow) {
      const real = realpathSync.native(lexical)
      assertInside(root, real)
      return { root, real }
    }
    const parent = realpathSync.native(dirname(lexical))
    assertInside(root, parent)
    return { root, real: join(parent, basename(lexical)) }
  }

  /** Checks, through an actual open, that the kernel agrees with the path check. */
  private checkFile(root: string, real: string, expected: Identity): void {
    const hostFd = openSync(real, OPEN_FLAGS)
    try {
      const stats = fstatSync(hostFd, { bigint: true })
      if (!stats.isFile() || !sameFile(stats, expected)) throw new WasiError(Errno.stale)
      // A directory swapped for a symlink between the check and the open shows up here.
      if (procFd !== undefined) assertInside(root, realpathSync.native(procFd + hostFd))
    } finally {
      closeQuietly(hostFd)
    }
  }

  /**
   * Runs `use` on a host descriptor of the file, opened for this WASI call only. A worker stopped on
   * a timeout runs no cleanup, so a descriptor held across calls would leak from the process.
   */
  private withFile<A>(entry: FileEntry, use: (hostFd: number) => A): A {
    let hostFd: number
    try {
      hostFd = openSync(entry.realPath, OPEN_FLAGS)
    } catch (error) {
      // Removed, or its path now ends in a symlink, since the guest opened it.
      const code = error instanceof Error && "code" in error ? error.code : undefined
      if (code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP") throw new WasiError(Errno.stale)
      throw error
    }
    try {
      // Same device, inode and birth time: the very file checked at open, wherever its path leads now.
      if (!sameFile(fstatSync(hostFd, { bigint: true }), entry.identity)) throw new WasiError(Errno.stale)
      return use(hostFd)
    } finally {
      closeQuietly(hostFd)
    }
  }

  private list(dir: DirEntry): Listing {
    const { real } = this.realize(dir.mount, dir.segments, true)
    const entries = readdirSync(real, { withFileTypes: true })
      .map((dirent) => ({ name: dirent.name, type: filetypeOf(dirent) }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    return { dir, realPath: real, entries }
  }

  private inode(path: string): bigint {
    try {
      return lstatSync(path, { bigint: true }).ino
    } catch {
      return 0n
    }
  }

  private writeFilestat(out: number, stats: BigIntStats): void {
    this.memory.bytes(out, 64).fill(0)
    this.memory.setU64(out, stats.dev)
    this.memory.setU64(out + 8, stats.ino)
    this.memory.setU8(out + 16, filetypeOf(stats))
    this.memory.setU64(out + 24, stats.nlink)
    this.memory.setU64(out + 32, stats.size)
    this.memory.setU64(out + 40, stats.atimeNs)
    this.memory.setU64(out + 48, stats.mtimeNs)
    this.memory.setU64(out + 56, stats.ctimeNs)
  }
}

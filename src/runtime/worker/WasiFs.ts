/**
 * The jailed WASI filesystem of one plugin instance. Every mount is a preopened directory
 * (fd 3, 4, …); the guest reaches files only by paths relative to an open directory, resolved
 * lexically inside its mount, then walked one name at a time from a descriptor of the mount's root,
 * so that a folder swapped for a symlink meanwhile can never lead a call outside. A read-only mount
 * is never changed. A writable one (the plugin's `/storage`, or a library the administrator let the
 * plugin write) takes creates, writes, renames and removals made relative to a walked parent
 * descriptor, never symlinks or hard links, and its quota (`maxBytes`) is checked before any write
 * that grows it. See docs/host-services/filesystem.md and docs/decisions/0016-race-free-jail.md.
 */
import {
  type BigIntStats,
  closeSync,
  constants,
  type Dirent,
  fstatSync,
  ftruncateSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  realpathSync,
  renameSync,
  rmdirSync,
  unlinkSync,
  utimesSync,
  writeSync
} from "node:fs"
import { resolve, sep } from "node:path"
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

/** A host folder the guest sees at `guestPath`: read-only unless `writable`, within `maxBytes` if set. */
export interface FsMount {
  readonly guestPath: string
  readonly hostPath: string
  readonly writable?: boolean
  readonly maxBytes?: number
}

/** Files and folders a mount with a quota may hold, so that checking the quota stays cheap. */
export const MAX_QUOTA_ENTRIES = 10_000

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

/** What a writable mount adds to a file fd. */
export const FILE_WRITE_RIGHTS =
  Rights.fdDatasync |
  Rights.fdWrite |
  Rights.fdAllocate |
  Rights.fdFilestatSetSize |
  Rights.fdFilestatSetTimes
/** What a writable mount adds to a directory fd; never `path_symlink` nor `path_link`. */
export const DIR_WRITE_RIGHTS =
  Rights.pathCreateDirectory |
  Rights.pathCreateFile |
  Rights.pathRenameSource |
  Rights.pathRenameTarget |
  Rights.pathFilestatSetSize |
  Rights.pathFilestatSetTimes |
  Rights.fdFilestatSetTimes |
  Rights.pathRemoveDirectory |
  Rights.pathUnlinkFile

/** Symlinks one path may follow (Linux's own limit), then ELOOP. */
export const MAX_SYMLINKS = 40
/** Names one path may step through, `..` of symlink targets re-walking included, then ELOOP. */
export const MAX_STEPS = 4096

// Linux's O_PATH (the same on every architecture Node runs on there): a descriptor that names a file
// without opening it, so a device or FIFO met on the way is never opened and nothing can block.
const O_PATH = 0o10000000
const STEP_FLAGS = O_PATH | constants.O_NOFOLLOW
const READ_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK
const WRITE_FLAGS = constants.O_WRONLY | constants.O_NONBLOCK
// Creation never follows a name that is a symlink, and never takes an existing name.
const CREATE_FLAGS = constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | WRITE_FLAGS
const PROC_FD = "/proc/self/fd/"
const DIRENT_HEADER_BYTES = 24
const MAX_U32 = 0xffff_ffff

/**
 * Whether this process can walk paths through descriptors: Linux with /proc mounted, where
 * `/proc/self/fd/N/name` looks `name` up in the directory open as N, and `/proc/self/fd/N` reopens
 * N itself. Anywhere else the jail fails closed (every path call is ENOSYS).
 */
const probeJail = (): boolean => {
  if (process.platform !== "linux") return false
  try {
    const root = openSync("/", O_PATH | constants.O_DIRECTORY)
    try {
      if (readlinkSync(PROC_FD + root) !== "/") return false
      // O_PATH really is O_PATH here: the descriptor names the file but cannot read it.
      const probe = openSync(`${PROC_FD}${root}/proc/self/stat`, O_PATH)
      try {
        readSync(probe, Buffer.alloc(1))
        return false
      } catch (error) {
        return codeOf(error) === "EBADF"
      } finally {
        closeQuietly(probe)
      }
    } finally {
      closeQuietly(root)
    }
  } catch {
    return false
  }
}

/** One directory's entries, sorted by name, as seen by `fd_readdir` at cookie 0. */
interface Listing {
  readonly dir: DirEntry
  readonly entries: ReadonlyArray<{ readonly name: string; readonly type: number; readonly ino: bigint }>
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
  readonly mount: number
  /** Where the file was found below the mount root, symlinks resolved: each later call walks it again. */
  readonly resolved: ReadonlyArray<string>
  readonly identity: Identity
  position: number
  rightsBase: bigint
  readonly append: boolean
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

/** A path walked from a mount's root: descriptors open for the current WASI call only. */
interface Walked {
  /** O_PATH descriptor of what the path names (the root's own when the path is empty). */
  readonly fd: number
  readonly stats: BigIntStats
  /** Its place below the mount root, symlinks resolved. */
  readonly resolved: ReadonlyArray<string>
}

const encoder = new TextEncoder()
const pathDecoder = new TextDecoder("utf-8", { fatal: true })

const codeOf = (error: unknown): unknown =>
  error instanceof Error && "code" in error ? error.code : undefined

const closeQuietly = (fd: number): void => {
  try {
    closeSync(fd)
  } catch {
    // Already closed: nothing to release.
  }
}

const supported = probeJail()

/** Names below `root` when `path` (absolute) is `root` itself or lies lexically below it. */
const below = (root: string, path: string): Array<string> | undefined => {
  const prefix = root.endsWith(sep) ? root : root + sep
  if (path === root || path + sep === prefix) return []
  return path.startsWith(prefix) ? path.slice(prefix.length).split("/") : undefined
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

/** The inode number of a directory entry, 0 when it vanished meanwhile. */
const inode = (path: string): bigint => {
  try {
    return lstatSync(path, { bigint: true }).ino
  } catch {
    return 0n
  }
}

const toOffset = (value: bigint): number => {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) throw new WasiError(Errno.inval)
  return Number(value)
}

export class WasiFs {
  private readonly table = new Map<number, Entry>()
  // Only the last listed directory is kept (a guest could otherwise pin one per open fd); the
  // sorted order keeps cookies valid when another directory was listed in between.
  private listing: Listing | undefined
  // Each mount's root as a real path, fixed at the first look: a root later swapped for a symlink
  // is refused rather than followed (a folder re-created at the same place is still the mount).
  private readonly roots: Array<string | undefined>

  /** `jail: false` is what a host without Linux /proc gets: every path call fails closed. */
  constructor(
    private readonly mounts: ReadonlyArray<FsMount>,
    private readonly memory: GuestMemory,
    private readonly jail: boolean = supported
  ) {
    this.roots = mounts.map(({ hostPath }) => {
      try {
        return realpathSync.native(hostPath)
      } catch {
        // Missing for now: fixed when it first exists.
        return undefined
      }
    })
    mounts.forEach(({ writable = false }, mount) =>
      this.table.set(3 + mount, {
        kind: "dir",
        mount,
        segments: [],
        preopen: true,
        rightsBase: writable ? DIR_RIGHTS | DIR_WRITE_RIGHTS : DIR_RIGHTS,
        rightsInheriting: writable
          ? DIR_RIGHTS | DIR_WRITE_RIGHTS | FILE_RIGHTS | FILE_WRITE_RIGHTS
          : DIR_RIGHTS | FILE_RIGHTS
      })
    )
  }

  /** Why this instance's mounts cannot be read, if they cannot: for the host's log, once. */
  get unavailable(): string | undefined {
    if (this.jail || this.mounts.length === 0) return undefined
    return (
      "library files are unavailable to this plugin: the filesystem jail needs Linux with /proc " +
      "mounted, so its file calls answer ENOSYS. Run the engine on Linux, or allow it no library filesystem."
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
    const writable = this.mounts[dir.mount]!.writable === true
    // Write intent as wazero (Navidrome's runtime) reads it: create/truncate, append, or FD_WRITE.
    // Go asks for FD_FILESTAT_SET_SIZE even on read-only opens, so that bit is dropped, not refused.
    const writeIntent =
      (oflags & (Oflags.creat | Oflags.excl | Oflags.trunc)) !== 0 ||
      (fdflags & Fdflags.append) !== 0 ||
      (base & Rights.fdWrite) !== 0n
    if (writeIntent && !writable) return Errno.rofs
    if (this.openCount() >= MAX_OPEN_FDS) return Errno.mfile
    const follow = (lookupFlags & LOOKUP_SYMLINK_FOLLOW) !== 0
    const inheriting = BigInt.asUintN(64, rightsInheriting)
    const fileRights = writable ? FILE_RIGHTS | FILE_WRITE_RIGHTS : FILE_RIGHTS
    const dirRights = writable ? DIR_RIGHTS | DIR_WRITE_RIGHTS : DIR_RIGHTS
    if ((oflags & Oflags.creat) !== 0) {
      if (mustBeDir || (oflags & Oflags.directory) !== 0) return Errno.inval
      const created = this.create(dir.mount, segments, follow, (oflags & Oflags.excl) !== 0)
      if (created !== Errno.success) return created
    }
    const entry = this.walk(
      dir.mount,
      segments,
      follow,
      ({ fd: pathFd, resolved, stats }): Entry | number => {
        // Only reachable without SYMLINK_FOLLOW: the final component is a link (O_NOFOLLOW semantics).
        if (stats.isSymbolicLink()) return Errno.loop
        if (stats.isDirectory()) {
          if (writeIntent) return Errno.isdir
          return {
            kind: "dir",
            mount: dir.mount,
            segments,
            preopen: false,
            rightsBase: base & dirRights,
            rightsInheriting: inheriting & (dirRights | fileRights)
          }
        }
        if ((oflags & Oflags.directory) !== 0 || mustBeDir) return Errno.notdir
        // FIFOs, sockets and devices could block or have side effects on open.
        if (!stats.isFile()) return Errno.acces
        // Really opened once, so an unreadable file is EACCES here, as POSIX has it.
        const check =
          (oflags & Oflags.trunc) !== 0
            ? WRITE_FLAGS | constants.O_TRUNC
            : writeIntent
              ? WRITE_FLAGS
              : READ_FLAGS
        closeSync(openSync(PROC_FD + pathFd, check))
        const after = (oflags & Oflags.trunc) !== 0 ? fstatSync(pathFd, { bigint: true }) : stats
        return {
          kind: "file",
          mount: dir.mount,
          resolved,
          identity: { dev: after.dev, ino: after.ino, birthtimeNs: after.birthtimeNs },
          position: 0,
          rightsBase: base & fileRights,
          append: (fdflags & Fdflags.append) !== 0
        }
      }
    )
    if (typeof entry === "number") return entry
    let next = 3
    while (this.table.has(next)) next++
    this.table.set(next, entry)
    this.memory.setU32(out, next)
    return Errno.success
  }

  /**
   * `path_open` with O_CREAT: makes the file in its walked parent when the name is free (never
   * through a symlink: O_EXCL | O_NOFOLLOW), or leaves an existing one for the walk that follows.
   */
  private create(
    mount: number,
    segments: ReadonlyArray<string>,
    follow: boolean,
    exclusive: boolean
  ): number {
    if (segments.length === 0) return Errno.isdir
    let exists: boolean
    try {
      exists = this.walk(mount, segments, follow, () => true)
    } catch (error) {
      const code = error instanceof WasiError ? error.errno : codeOf(error)
      if (code !== "ENOENT" && code !== Errno.noent) throw error
      exists = false
    }
    if (exists) return exclusive ? Errno.exist : Errno.success
    this.atParent(mount, segments, (dirFd, name) => {
      this.ensureEntryRoom(mount)
      closeSync(openSync(`${PROC_FD}${dirFd}/${name}`, CREATE_FLAGS, 0o600))
    })
    return Errno.success
  }

  /** `fd_write` (at the fd's position, or its end with O_APPEND) or `fd_pwrite` (at `offset`). */
  write(fd: number, iovs: number, count: number, out: number, offset?: bigint): number {
    const entry = this.file(fd, Errno.badf)
    if ((entry.rightsBase & Rights.fdWrite) === 0n) return Errno.badf
    const buffers = this.memory.iovecs(iovs, count)
    this.memory.bytes(out, 4)
    const length = buffers.reduce((sum, buffer) => sum + buffer.byteLength, 0)
    if (length > MAX_U32) return Errno.inval
    let total = 0
    let position = 0
    this.withFile(
      entry,
      (hostFd, size) => {
        position =
          offset !== undefined ? toOffset(BigInt.asUintN(64, offset)) : entry.append ? size : entry.position
        this.ensureRoom(entry.mount, size, position + length)
        for (const buffer of buffers) {
          let done = 0
          while (done < buffer.byteLength) {
            done += writeSync(hostFd, buffer, done, buffer.byteLength - done, position + done)
          }
          total += done
          position += done
        }
      },
      WRITE_FLAGS
    )
    if (offset === undefined) entry.position = position
    this.memory.setU32(out, total)
    return Errno.success
  }

  /** `fd_filestat_set_size`, and `fd_allocate` (which only ever grows the file). */
  setSize(fd: number, size: bigint, growOnly = false): number {
    const entry = this.writableFile(fd)
    const wanted = toOffset(BigInt.asUintN(64, size))
    this.withFile(
      entry,
      (hostFd, current) => {
        if (growOnly && wanted <= current) return
        this.ensureRoom(entry.mount, current, wanted)
        ftruncateSync(hostFd, wanted)
      },
      WRITE_FLAGS
    )
    return Errno.success
  }

  /** `fd_filestat_set_times`. */
  setTimesFd(fd: number, atim: bigint, mtim: bigint, flags: number): number {
    const entry = this.entry(fd)
    if (!this.mounts[entry.mount]!.writable) return Errno.rofs
    if (entry.kind === "file") {
      this.atFile(entry, (pathFd, stats) => this.setTimes(pathFd, stats, atim, mtim, flags))
    } else {
      this.walk(entry.mount, entry.segments, true, ({ fd: pathFd, stats }) =>
        this.setTimes(pathFd, stats, atim, mtim, flags)
      )
    }
    return Errno.success
  }

  /** `path_filestat_set_times`. */
  setTimesPath(
    fd: number,
    lookupFlags: number,
    pathPtr: number,
    pathLength: number,
    atim: bigint,
    mtim: bigint,
    flags: number
  ): number {
    const dir = this.writableDir(fd)
    const { segments } = this.lexical(dir, this.path(pathPtr, pathLength))
    const follow = (lookupFlags & LOOKUP_SYMLINK_FOLLOW) !== 0
    return this.walk(dir.mount, segments, follow, ({ fd: pathFd, stats }) => {
      // Changing a link's own times would need lutimes through a descriptor, which Linux lacks.
      if (stats.isSymbolicLink()) return Errno.notsup
      this.setTimes(pathFd, stats, atim, mtim, flags)
      return Errno.success
    })
  }

  /** `path_create_directory`. */
  createDirectory(fd: number, pathPtr: number, pathLength: number): number {
    const dir = this.writableDir(fd)
    const { segments } = this.lexical(dir, this.path(pathPtr, pathLength))
    if (segments.length === 0) return Errno.exist
    this.atParent(dir.mount, segments, (dirFd, name) => {
      this.ensureEntryRoom(dir.mount)
      mkdirSync(`${PROC_FD}${dirFd}/${name}`, 0o700)
    })
    return Errno.success
  }

  /** `path_unlink_file`: a file or a symlink (the link itself), never a directory. */
  unlinkFile(fd: number, pathPtr: number, pathLength: number): number {
    const dir = this.writableDir(fd)
    const { segments, mustBeDir } = this.lexical(dir, this.path(pathPtr, pathLength))
    if (segments.length === 0) return Errno.isdir
    return this.atParent(dir.mount, segments, (dirFd, name) => {
      const at = `${PROC_FD}${dirFd}/${name}`
      const stats = lstatSync(at)
      if (stats.isDirectory()) return Errno.isdir
      if (mustBeDir) return Errno.notdir
      unlinkSync(at)
      return Errno.success
    })
  }

  /** `path_remove_directory`: an empty directory, never the mount's root. */
  removeDirectory(fd: number, pathPtr: number, pathLength: number): number {
    const dir = this.writableDir(fd)
    const { segments } = this.lexical(dir, this.path(pathPtr, pathLength))
    if (segments.length === 0) return Errno.busy
    this.atParent(dir.mount, segments, (dirFd, name) => rmdirSync(`${PROC_FD}${dirFd}/${name}`))
    return Errno.success
  }

  /** `path_rename` within one mount; across mounts EXDEV, as between file systems. */
  rename(
    fd: number,
    oldPtr: number,
    oldLength: number,
    newFd: number,
    newPtr: number,
    newLength: number
  ): number {
    const from = this.writableDir(fd)
    const to = this.writableDir(newFd)
    const source = this.lexical(from, this.path(oldPtr, oldLength)).segments
    const target = this.lexical(to, this.path(newPtr, newLength)).segments
    if (from.mount !== to.mount) return Errno.xdev
    if (source.length === 0 || target.length === 0) return Errno.busy
    this.atParent(from.mount, source, (sourceDir, sourceName) =>
      this.atParent(to.mount, target, (targetDir, targetName) =>
        renameSync(`${PROC_FD}${sourceDir}/${sourceName}`, `${PROC_FD}${targetDir}/${targetName}`)
      )
    )
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
            ? this.atFile(entry, (_, stats) => stats).size
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
    const { entries } = this.listing
    let used = 0
    for (let i = start > BigInt(entries.length) ? entries.length : Number(start); i < entries.length; i++) {
      if (used === target.byteLength) break
      const { ino, name, type } = entries[i]!
      const bytes = encoder.encode(name)
      const record = new Uint8Array(DIRENT_HEADER_BYTES + bytes.byteLength)
      const view = new DataView(record.buffer)
      view.setBigUint64(0, BigInt(i + 1), true)
      view.setBigUint64(8, ino, true)
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
        ? this.atFile(entry, (_, stats) => stats)
        : this.walk(entry.mount, entry.segments, true, ({ stats }) => stats)
    this.writeFilestat(out, stats)
    return Errno.success
  }

  pathFilestatGet(fd: number, lookupFlags: number, pathPtr: number, pathLength: number, out: number): number {
    const dir = this.dir(fd)
    this.memory.bytes(out, 64)
    const { segments, mustBeDir } = this.lexical(dir, this.path(pathPtr, pathLength))
    const follow = (lookupFlags & LOOKUP_SYMLINK_FOLLOW) !== 0
    const stats = this.walk(dir.mount, segments, follow, (walked) => walked.stats)
    if (mustBeDir && !stats.isDirectory()) return Errno.notdir
    this.writeFilestat(out, stats)
    return Errno.success
  }

  fdstatGet(fd: number, out: number): number {
    const entry = this.entry(fd)
    const bytes = this.memory.bytes(out, 24)
    bytes.fill(0)
    this.memory.setU8(out, entry.kind === "dir" ? Filetype.directory : Filetype.regularFile)
    if (entry.kind === "file" && entry.append) this.memory.setU16(out + 2, Fdflags.append)
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
    return this.walk(dir.mount, segments, false, ({ stats }) => stats.isSymbolicLink())
      ? Errno.notcapable
      : Errno.inval
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

  /**
   * `path_symlink` and `path_link`: never allowed, so a plugin cannot plant a link for the host or
   * an administrator to follow later. EPERM on a writable mount, EROFS on a read-only one.
   */
  link(...fds: ReadonlyArray<number>): number {
    const writable = fds.every((fd) => this.mounts[this.dir(fd).mount]!.writable === true)
    return writable ? Errno.perm : Errno.rofs
  }

  private writableDir(fd: number): DirEntry {
    const dir = this.dir(fd)
    if (this.mounts[dir.mount]!.writable !== true) throw new WasiError(Errno.rofs)
    return dir
  }

  private writableFile(fd: number): FileEntry {
    if (this.mounts[this.entry(fd).mount]!.writable !== true) throw new WasiError(Errno.rofs)
    const entry = this.file(fd, Errno.badf)
    if ((entry.rightsBase & (Rights.fdWrite | Rights.fdFilestatSetSize | Rights.fdAllocate)) === 0n) {
      throw new WasiError(Errno.badf)
    }
    return entry
  }

  /** Walks to the parent of `segments` (following links on the way) and runs `use` on it and the last name. */
  private atParent<A>(
    mount: number,
    segments: ReadonlyArray<string>,
    use: (dirFd: number, name: string) => A
  ): A {
    const name = segments[segments.length - 1]!
    return this.walk(mount, segments.slice(0, -1), true, ({ fd, stats }) => {
      if (!stats.isDirectory()) throw new WasiError(Errno.notdir)
      return use(fd, name)
    })
  }

  private setTimes(pathFd: number, stats: BigIntStats, atim: bigint, mtim: bigint, flags: number): void {
    // fstflags: ATIM 1, ATIM_NOW 2, MTIM 4, MTIM_NOW 8.
    if ((flags & 3) === 3 || (flags & 12) === 12) throw new WasiError(Errno.inval)
    const now = Date.now() / 1000
    const pick = (set: number, setNow: number, value: bigint, current: bigint): number =>
      (flags & setNow) !== 0
        ? now
        : (flags & set) !== 0
          ? Number(BigInt.asUintN(64, value)) / 1e9
          : Number(current) / 1e9
    utimesSync(PROC_FD + pathFd, pick(1, 2, atim, stats.atimeNs), pick(4, 8, mtim, stats.mtimeNs))
  }

  /**
   * Refuses (EDQUOT) growing a file from `size` to `end` bytes when that would take the mount over
   * its quota. Counted fresh each time: instances of the plugin on other workers write there too.
   */
  private ensureRoom(mount: number, size: number, end: number): void {
    const max = this.mounts[mount]!.maxBytes
    if (max === undefined || end <= size) return
    const { bytes } = this.usage(mount)
    if (bytes + (end - size) > max) throw new WasiError(Errno.dquot)
  }

  /** Refuses (EDQUOT) a new file or folder in a mount with a quota that holds its most entries. */
  private ensureEntryRoom(mount: number): void {
    if (this.mounts[mount]!.maxBytes === undefined) return
    if (this.usage(mount).entries >= MAX_QUOTA_ENTRIES) throw new WasiError(Errno.dquot)
  }

  /** Bytes of regular files and entries below a mount's root, links not followed. */
  private usage(mount: number): { bytes: number; entries: number } {
    return this.walk(mount, [], true, ({ fd }) => {
      let bytes = 0
      let entries = 0
      const pending = [PROC_FD + fd]
      while (pending.length > 0 && entries <= MAX_QUOTA_ENTRIES) {
        const at = pending.pop()!
        let dirents: Array<Dirent>
        try {
          dirents = readdirSync(at, { withFileTypes: true })
        } catch {
          continue // removed meanwhile
        }
        for (const dirent of dirents) {
          entries++
          const path = `${at}/${dirent.name}`
          if (dirent.isDirectory()) pending.push(path)
          else if (dirent.isFile()) {
            try {
              bytes += lstatSync(path).size
            } catch {
              // removed meanwhile
            }
          }
        }
      }
      return { bytes, entries }
    })
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
   * Opens the mount's root for this call: by its fixed real path, then asking the kernel where the
   * descriptor really is, so a root swapped for a symlink is refused instead of followed.
   */
  private openRoot(mount: number): number {
    if (!this.jail) throw new WasiError(Errno.nosys)
    const root = (this.roots[mount] ??= realpathSync.native(this.mounts[mount]!.hostPath))
    const fd = openSync(root, O_PATH | constants.O_DIRECTORY)
    try {
      if (readlinkSync(PROC_FD + fd) !== root) throw new WasiError(Errno.notcapable)
      return fd
    } catch (error) {
      closeQuietly(fd)
      throw error
    }
  }

  /**
   * Walks `path` (names below the mount root) one name at a time, each looked up with O_NOFOLLOW
   * in the directory descriptor reached so far, and runs `use` on the result; every descriptor is
   * closed again before returning. A symlink (each one on the way; the last one only when `follow`)
   * is never followed by the host: its target is walked in its place, from the root when absolute
   * and inside the mount, so it reaches nothing a plain path could not. Climbing above the root, or
   * an absolute target elsewhere, is ENOTCAPABLE.
   */
  private walk<A>(
    mount: number,
    path: ReadonlyArray<string>,
    follow: boolean,
    use: (walked: Walked) => A
  ): A {
    const root = this.openRoot(mount)
    let fd = root
    let stats: BigIntStats | undefined
    let resolved: Array<string> = []
    // Names still to walk, the next one last.
    const todo = path.toReversed()
    let links = 0
    let steps = 0
    const backToRoot = (): void => {
      if (fd !== root) closeQuietly(fd)
      fd = root
      stats = undefined
      resolved = []
    }
    try {
      while (todo.length > 0) {
        const name = todo.pop()!
        if (name === "" || name === ".") continue
        if (++steps > MAX_STEPS) throw new WasiError(Errno.loop)
        if (name === "..") {
          // Only symlink targets bring `..` here (the guest's own are lexical). No descriptor chain
          // is kept: down again from the root to the parent.
          if (resolved.length === 0) throw new WasiError(Errno.notcapable)
          const parent = resolved.slice(0, -1)
          backToRoot()
          todo.push(...parent.reverse())
          continue
        }
        const last = todo.length === 0
        const child = openSync(`${PROC_FD}${fd}/${name}`, STEP_FLAGS)
        let childStats: BigIntStats
        try {
          childStats = fstatSync(child, { bigint: true })
        } catch (error) {
          closeQuietly(child)
          throw error
        }
        if (childStats.isSymbolicLink() && (follow || !last)) {
          closeQuietly(child)
          if (++links > MAX_SYMLINKS) throw new WasiError(Errno.loop)
          const target = this.linkTarget(fd, name)
          // No longer a link: look the name up again.
          if (target === undefined) {
            todo.push(name)
            continue
          }
          if (target.startsWith("/")) {
            const inside = this.insideMount(mount, target)
            if (inside === undefined) throw new WasiError(Errno.notcapable)
            backToRoot()
            todo.push(...inside.reverse())
          } else {
            todo.push(...target.split("/").reverse())
          }
          continue
        }
        if (!last && !childStats.isDirectory()) {
          closeQuietly(child)
          throw new WasiError(Errno.notdir)
        }
        if (fd !== root) closeQuietly(fd)
        fd = child
        stats = childStats
        resolved.push(name)
      }
      return use({ fd, stats: stats ?? fstatSync(fd, { bigint: true }), resolved })
    } finally {
      if (fd !== root) closeQuietly(fd)
      closeQuietly(root)
    }
  }

  /** The text of the symlink `name` in directory `dirFd`, or undefined when it is no longer a link. */
  private linkTarget(dirFd: number, name: string): string | undefined {
    try {
      return readlinkSync(`${PROC_FD}${dirFd}/${name}`)
    } catch (error) {
      if (codeOf(error) === "EINVAL") return undefined
      throw error
    }
  }

  /** An absolute symlink target as names below the mount root, if it names a place inside it. */
  private insideMount(mount: number, target: string): Array<string> | undefined {
    const root = this.roots[mount]!
    return below(root, target) ?? below(resolve(this.mounts[mount]!.hostPath), target)
  }

  /**
   * Walks again to where the guest's file was found at open, without following a symlink at the
   * end: it must still be the very file checked then (device, inode, birth time), else ESTALE.
   */
  private atFile<A>(entry: FileEntry, use: (pathFd: number, stats: BigIntStats) => A): A {
    try {
      return this.walk(entry.mount, entry.resolved, false, ({ fd, stats }) => {
        if (!stats.isFile() || !sameFile(stats, entry.identity)) throw new WasiError(Errno.stale)
        return use(fd, stats)
      })
    } catch (error) {
      // Removed, or its way there now leads elsewhere, since the guest opened it.
      const code = error instanceof WasiError ? error.errno : codeOf(error)
      if (
        code === "ENOENT" ||
        code === "ENOTDIR" ||
        code === "ELOOP" ||
        code === Errno.notdir ||
        code === Errno.notcapable ||
        code === Errno.loop
      ) {
        throw new WasiError(Errno.stale)
      }
      throw error
    }
  }

  /**
   * Runs `use` on a host descriptor of the file, opened for this WASI call only: a worker stopped on
   * a timeout runs no cleanup, so a descriptor held across calls would leak from the process.
   */
  private withFile<A>(
    entry: FileEntry,
    use: (hostFd: number, size: number) => A,
    flags: number = READ_FLAGS
  ): A {
    const [hostFd, size] = this.atFile(entry, (pathFd, stats) => [
      openSync(PROC_FD + pathFd, flags),
      Number(stats.size)
    ])
    try {
      return use(hostFd, size)
    } finally {
      closeQuietly(hostFd)
    }
  }

  /** The directory's entries, read through its descriptor: whatever its path leads to meanwhile. */
  private list(dir: DirEntry): Listing {
    return this.walk(dir.mount, dir.segments, true, ({ fd, stats }) => {
      if (!stats.isDirectory()) throw new WasiError(Errno.notdir)
      const at = PROC_FD + fd
      const entries = readdirSync(at, { withFileTypes: true })
        .map((dirent) => ({
          name: dirent.name,
          type: filetypeOf(dirent),
          ino: inode(`${at}/${dirent.name}`)
        }))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      return { dir, entries }
    })
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

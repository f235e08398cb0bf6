/**
 * WASI preview 1 for plugins, implemented by us because `node:wasi` is not a sandbox. Plugins built
 * with TinyGo, Rust or Python PDKs import it even when they never touch a file. stdout and stderr
 * become plugin log lines (bounded per line here, budgeted by `GuestLog`); the filesystem is the jailed `WasiFs` over the plugin's mounts (read-only unless granted)
 * (none: no preopens, every other descriptor is EBADF). Guest mistakes (bad pointers, bad fds, host
 * fs errors) come back as errnos, never as exceptions.
 */
import { KernelAbort } from "./Kernel.js"
import type { Mount } from "../abi/protocol.js"
import { Errno, errnoOf, Filetype, GuestMemory } from "./WasiAbi.js"
import { WasiFs } from "./WasiFs.js"

export { Errno } from "./WasiAbi.js"

const ALL_RIGHTS = 0xffff_ffffn

/** Where WASI output goes: the plugin's `GuestLog` in the worker. */
export interface WasiLog {
  /** A complete stdout (level 2) or stderr (level 3) line; `alreadyCut` bytes of it were discarded. */
  readonly write: (level: number, line: Uint8Array, alreadyCut: number) => void
  /** A WASI host error (level 4). */
  readonly text: (level: number, message: string) => void
}

export interface WasiHost {
  /** The instance's exported memory, once instantiated. */
  readonly memory: () => WebAssembly.Memory | undefined
  readonly log: WasiLog
  /** Bytes of one stdout/stderr line kept; the rest is only counted. Default 4 KiB. */
  readonly maxLineBytes?: number
  /** Host folders the guest sees (read-only unless writable), preopened as fd 3, 4, … in this order. */
  readonly mounts?: ReadonlyArray<Mount>
  /** Told before the guest sleeps in `poll_oneoff`, so the pool knows the worker is idle-waiting. */
  readonly onSleep?: (ms: number) => void
}

export interface Wasi {
  readonly imports: Record<string, WasiFunction>
  /** End of a plugin call: emits partial log lines. */
  readonly flush: () => void
}

type WasiFunction = (...args: Array<never>) => number | bigint | void

const NEWLINE = 10

/**
 * Gathers one stdio stream into lines without holding more than one line's worth of bytes: a
 * multi-megabyte line keeps its first `max` (+3, to cut on a character boundary) and counts the rest.
 */
class LineBuffer {
  private readonly buffer: Uint8Array
  private length = 0
  private cut = 0

  constructor(
    max: number,
    private readonly emit: (line: Uint8Array, alreadyCut: number) => void
  ) {
    this.buffer = new Uint8Array(max + 3)
  }

  append(data: Uint8Array): void {
    let start = 0
    for (;;) {
      const newline = data.indexOf(NEWLINE, start)
      this.add(data.subarray(start, newline < 0 ? data.length : newline))
      if (newline < 0) return
      this.flushLine()
      start = newline + 1
    }
  }

  /** Emits a partial last line, if any. */
  flush(): void {
    if (this.length > 0 || this.cut > 0) this.flushLine()
  }

  private add(part: Uint8Array): void {
    const room = Math.min(this.buffer.length - this.length, part.length)
    this.buffer.set(part.subarray(0, room), this.length)
    this.length += room
    this.cut += part.length - room
  }

  private flushLine(): void {
    // The sink copies what it keeps before we reuse the buffer.
    this.emit(this.buffer.subarray(0, this.length), this.cut)
    this.length = 0
    this.cut = 0
  }
}

const isStdio = (fd: number): boolean => fd >= 0 && fd <= 2

/** The `wasi_snapshot_preview1` import object for one instance. */
export const makeWasi = (host: WasiHost): Wasi => {
  const maxLineBytes = host.maxLineBytes ?? 4096
  const stdout = new LineBuffer(maxLineBytes, (line, cut) => host.log.write(2, line, cut))
  const stderr = new LineBuffer(maxLineBytes, (line, cut) => host.log.write(3, line, cut))
  const sleeper = new Int32Array(new SharedArrayBuffer(4))
  const memory = new GuestMemory(host.memory)
  const fs = new WasiFs(host.mounts ?? [], memory)
  if (fs.unavailable !== undefined) host.log.text(4, fs.unavailable)

  const flush = (): void => {
    stdout.flush()
    stderr.flush()
  }

  const zeroCounts = (countPtr: number, sizePtr: number): number => {
    memory.setU32(countPtr, 0)
    memory.setU32(sizePtr, 0)
    return Errno.success
  }
  /** For calls that only need the fd to exist. */
  const known = (fd: number): number => (isStdio(fd) || fs.has(fd) ? Errno.success : Errno.badf)
  const nosys = (): number => Errno.nosys

  const functions: Record<string, WasiFunction> = {
    args_get: () => Errno.success,
    args_sizes_get: (countPtr: number, sizePtr: number) => zeroCounts(countPtr, sizePtr),
    environ_get: () => Errno.success,
    environ_sizes_get: (countPtr: number, sizePtr: number) => zeroCounts(countPtr, sizePtr),
    clock_res_get: (_id: number, out: number) => {
      memory.setU64(out, 1000n)
      return Errno.success
    },
    clock_time_get: (id: number, _precision: bigint, out: number) => {
      const now = id === 0 ? BigInt(Date.now()) * 1_000_000n : id <= 3 ? process.hrtime.bigint() : undefined
      if (now === undefined) return Errno.inval
      memory.setU64(out, now)
      return Errno.success
    },
    random_get: (ptr: number, length: number) => {
      const target = memory.bytes(ptr, length)
      // getRandomValues fills at most 64 KiB per call.
      for (let offset = 0; offset < target.length; offset += 65536) {
        crypto.getRandomValues(target.subarray(offset, Math.min(offset + 65536, target.length)))
      }
      return Errno.success
    },
    fd_write: (fd: number, iovs: number, iovsLength: number, written: number) => {
      if (fs.has(fd)) return fs.write(fd, iovs, iovsLength, written)
      if (fd !== 1 && fd !== 2) return Errno.badf
      const buffers = memory.iovecs(iovs, iovsLength)
      memory.bytes(written, 4)
      const lines = fd === 1 ? stdout : stderr
      let total = 0
      for (const buffer of buffers) {
        lines.append(buffer)
        total += buffer.byteLength
      }
      memory.setU32(written, total)
      return Errno.success
    },
    fd_pwrite: (fd: number, iovs: number, iovsLength: number, offset: bigint, written: number) =>
      isStdio(fd) ? Errno.spipe : fs.write(fd, iovs, iovsLength, written, offset),
    fd_read: (fd: number, iovs: number, iovsLength: number, read: number) => {
      if (fd === 0) {
        memory.setU32(read, 0)
        return Errno.success
      }
      if (isStdio(fd)) return Errno.badf
      return fs.read(fd, iovs, iovsLength, read)
    },
    fd_pread: (fd: number, iovs: number, iovsLength: number, offset: bigint, read: number) =>
      isStdio(fd) ? Errno.spipe : fs.read(fd, iovs, iovsLength, read, offset),
    fd_fdstat_get: (fd: number, out: number) => {
      if (!isStdio(fd)) return fs.fdstatGet(fd, out)
      memory.bytes(out, 24).fill(0)
      memory.setU8(out, Filetype.characterDevice)
      memory.setU64(out + 8, ALL_RIGHTS)
      memory.setU64(out + 16, ALL_RIGHTS)
      return Errno.success
    },
    fd_fdstat_set_flags: (fd: number) => known(fd),
    fd_fdstat_set_rights: (fd: number, base: bigint, inheriting: bigint) =>
      isStdio(fd) ? Errno.success : fs.setRights(fd, base, inheriting),
    fd_filestat_get: (fd: number, out: number) => {
      if (!isStdio(fd)) return fs.filestatGet(fd, out)
      memory.bytes(out, 64).fill(0)
      memory.setU8(out + 16, Filetype.characterDevice)
      return Errno.success
    },
    fd_close: (fd: number) => (isStdio(fd) ? Errno.success : fs.closeFd(fd)),
    fd_seek: (fd: number, delta: bigint, whence: number, out: number) =>
      isStdio(fd) ? Errno.spipe : fs.seek(fd, delta, whence, out),
    fd_tell: (fd: number, out: number) => (isStdio(fd) ? Errno.spipe : fs.tell(fd, out)),
    fd_sync: (fd: number) => known(fd),
    fd_datasync: (fd: number) => known(fd),
    fd_advise: (fd: number) => (fs.has(fd) ? Errno.success : Errno.badf),
    fd_allocate: (fd: number, offset: bigint, length: bigint) =>
      isStdio(fd)
        ? Errno.badf
        : fs.setSize(fd, BigInt.asUintN(64, offset) + BigInt.asUintN(64, length), true),
    fd_filestat_set_size: (fd: number, size: bigint) => (isStdio(fd) ? Errno.badf : fs.setSize(fd, size)),
    fd_filestat_set_times: (fd: number, atim: bigint, mtim: bigint, flags: number) =>
      isStdio(fd) ? Errno.badf : fs.setTimesFd(fd, atim, mtim, flags),
    fd_prestat_get: (fd: number, out: number) => fs.prestatGet(fd, out),
    fd_prestat_dir_name: (fd: number, ptr: number, length: number) => fs.prestatDirName(fd, ptr, length),
    fd_readdir: (fd: number, buf: number, length: number, cookie: bigint, out: number) =>
      fs.readdir(fd, buf, length, cookie, out),
    // stdio stays where the host put it.
    fd_renumber: (from: number, to: number) =>
      isStdio(from) || isStdio(to) ? Errno.notcapable : fs.renumber(from, to),
    path_open: (
      fd: number,
      lookupFlags: number,
      path: number,
      pathLength: number,
      oflags: number,
      rightsBase: bigint,
      rightsInheriting: bigint,
      fdflags: number,
      out: number
    ) => fs.open(fd, lookupFlags, path, pathLength, oflags, rightsBase, rightsInheriting, fdflags, out),
    path_filestat_get: (fd: number, lookupFlags: number, path: number, pathLength: number, out: number) =>
      fs.pathFilestatGet(fd, lookupFlags, path, pathLength, out),
    path_readlink: (fd: number, path: number, pathLength: number, buf: number, length: number, out: number) =>
      fs.readlink(fd, path, pathLength, buf, length, out),
    path_create_directory: (fd: number, path: number, pathLength: number) =>
      fs.createDirectory(fd, path, pathLength),
    path_filestat_set_times: (
      fd: number,
      lookupFlags: number,
      path: number,
      pathLength: number,
      atim: bigint,
      mtim: bigint,
      flags: number
    ) => fs.setTimesPath(fd, lookupFlags, path, pathLength, atim, mtim, flags),
    path_link: (fd: number, _flags: number, _path: number, _pathLength: number, newFd: number) =>
      fs.link(fd, newFd),
    path_remove_directory: (fd: number, path: number, pathLength: number) =>
      fs.removeDirectory(fd, path, pathLength),
    path_rename: (
      fd: number,
      path: number,
      pathLength: number,
      newFd: number,
      newPath: number,
      newLength: number
    ) => fs.rename(fd, path, pathLength, newFd, newPath, newLength),
    path_symlink: (_path: number, _pathLength: number, fd: number) => fs.link(fd),
    path_unlink_file: (fd: number, path: number, pathLength: number) => fs.unlinkFile(fd, path, pathLength),
    poll_oneoff: (inPtr: number, outPtr: number, count: number, eventsPtr: number) => {
      const subscriptions = count >>> 0
      memory.bytes(inPtr, subscriptions * 48)
      memory.bytes(outPtr, subscriptions * 32)
      memory.bytes(eventsPtr, 4)
      // Only clock subscriptions can make a plugin wait; the call timeout bounds any sleep.
      let sleepNs = -1n
      for (let i = 0; i < subscriptions; i++) {
        const sub = inPtr + i * 48
        if (memory.u8(sub + 8) !== 0) continue
        const timeout = memory.u64(sub + 24)
        const absolute = (memory.u16(sub + 40) & 1) === 1
        const relative = absolute ? timeout - process.hrtime.bigint() : timeout
        const wait = relative < 0n ? 0n : relative
        if (sleepNs < 0n || wait < sleepNs) sleepNs = wait
      }
      if (sleepNs > 0n) {
        host.onSleep?.(Number(sleepNs / 1_000_000n))
        Atomics.wait(sleeper, 0, 0, Number(sleepNs / 1_000_000n))
      }
      for (let i = 0; i < subscriptions; i++) {
        const sub = inPtr + i * 48
        const event = outPtr + i * 32
        memory.setU64(event, memory.u64(sub))
        memory.setU16(event + 8, 0)
        memory.setU8(event + 10, memory.u8(sub + 8))
      }
      memory.setU32(eventsPtr, subscriptions)
      return Errno.success
    },
    proc_exit: (code: number) => {
      throw new KernelAbort("procExit", `the plugin called proc_exit(${code})`, code)
    },
    proc_raise: nosys,
    sched_yield: () => Errno.success,
    sock_accept: nosys,
    sock_recv: nosys,
    sock_send: nosys,
    sock_shutdown: nosys
  }

  const imports: Record<string, WasiFunction> = {}
  for (const [name, fn] of Object.entries(functions)) {
    imports[name] = (...args: Array<never>) => {
      try {
        return fn(...args)
      } catch (error) {
        // proc_exit, and a stack overflow the guest ran into: both must unwind it.
        if (
          error instanceof KernelAbort ||
          (error instanceof RangeError && /call stack/i.test(error.message))
        )
          throw error
        const errno = errnoOf(error)
        if (errno !== undefined) return errno
        // A host-side bug must not unwind the guest; it still deserves a log line.
        host.log.text(4, `WASI ${name} failed: ${error instanceof Error ? error.message : String(error)}`)
        return Errno.io
      }
    }
  }
  return { imports, flush }
}

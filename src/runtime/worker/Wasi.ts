/**
 * WASI preview 1 for plugins, implemented by us because `node:wasi` is not a sandbox. Plugins built
 * with TinyGo, Rust or Python PDKs import it even when they never touch a file. There is no
 * filesystem here: descriptors other than stdio report EBADF and path calls report ENOTCAPABLE.
 * stdout and stderr become plugin log lines.
 */
import { KernelAbort } from "./Kernel.js"

export const Errno = {
  success: 0,
  badf: 8,
  inval: 28,
  nosys: 52,
  notcapable: 76,
  spipe: 70
} as const

const FILETYPE_CHARACTER_DEVICE = 2
const ALL_RIGHTS = 0xffff_ffffn

export interface WasiHost {
  /** The instance's exported memory, once instantiated. */
  readonly memory: () => WebAssembly.Memory | undefined
  /** Receives complete stdout (level 2) and stderr (level 3) lines. */
  readonly log: (level: number, line: string) => void
}

type WasiFunction = (...args: Array<never>) => number | bigint | void

const decoder = new TextDecoder()

/** The `wasi_snapshot_preview1` import object for one instance. */
export const makeWasi = (host: WasiHost): { imports: Record<string, WasiFunction>; flush: () => void } => {
  const pending: Record<number, string> = { 1: "", 2: "" }
  const sleeper = new Int32Array(new SharedArrayBuffer(4))

  const view = (): DataView => {
    const memory = host.memory()
    if (memory === undefined) throw new RangeError("WASI call before the plugin's memory exists")
    return new DataView(memory.buffer)
  }
  const bytes = (): Uint8Array => new Uint8Array(host.memory()!.buffer)

  const emit = (fd: number, text: string): void => {
    const lines = (pending[fd] + text).split("\n")
    pending[fd] = lines.pop() ?? ""
    for (const line of lines) host.log(fd === 1 ? 2 : 3, line)
  }
  const flush = (): void => {
    for (const fd of [1, 2]) {
      if (pending[fd] !== "") host.log(fd === 1 ? 2 : 3, pending[fd]!)
      pending[fd] = ""
    }
  }

  const zeroCounts = (countPtr: number, sizePtr: number): number => {
    const v = view()
    v.setUint32(countPtr, 0, true)
    v.setUint32(sizePtr, 0, true)
    return Errno.success
  }

  const badf = (): number => Errno.badf
  const notcapable = (): number => Errno.notcapable
  const nosys = (): number => Errno.nosys

  const imports: Record<string, WasiFunction> = {
    args_get: () => Errno.success,
    args_sizes_get: (countPtr: number, sizePtr: number) => zeroCounts(countPtr, sizePtr),
    environ_get: () => Errno.success,
    environ_sizes_get: (countPtr: number, sizePtr: number) => zeroCounts(countPtr, sizePtr),
    clock_res_get: (_id: number, out: number) => {
      view().setBigUint64(out, 1000n, true)
      return Errno.success
    },
    clock_time_get: (id: number, _precision: bigint, out: number) => {
      const now = id === 0 ? BigInt(Date.now()) * 1_000_000n : id <= 3 ? process.hrtime.bigint() : undefined
      if (now === undefined) return Errno.inval
      view().setBigUint64(out, now, true)
      return Errno.success
    },
    random_get: (ptr: number, length: number) => {
      const target = bytes().subarray(ptr, ptr + length)
      // getRandomValues fills at most 64 KiB per call.
      for (let offset = 0; offset < target.length; offset += 65536) {
        crypto.getRandomValues(target.subarray(offset, Math.min(offset + 65536, target.length)))
      }
      return Errno.success
    },
    fd_write: (fd: number, iovs: number, iovsLength: number, written: number) => {
      if (fd !== 1 && fd !== 2) return Errno.badf
      const v = view()
      const memory = bytes()
      let total = 0
      let text = ""
      for (let i = 0; i < iovsLength; i++) {
        const base = v.getUint32(iovs + i * 8, true)
        const length = v.getUint32(iovs + i * 8 + 4, true)
        text += decoder.decode(memory.subarray(base, base + length), { stream: true })
        total += length
      }
      emit(fd, text)
      v.setUint32(written, total, true)
      return Errno.success
    },
    fd_read: (fd: number, _iovs: number, _iovsLength: number, read: number) => {
      if (fd !== 0) return Errno.badf
      view().setUint32(read, 0, true)
      return Errno.success
    },
    fd_fdstat_get: (fd: number, out: number) => {
      if (fd > 2) return Errno.badf
      const v = view()
      v.setUint8(out, FILETYPE_CHARACTER_DEVICE)
      v.setUint16(out + 2, 0, true)
      v.setBigUint64(out + 8, ALL_RIGHTS, true)
      v.setBigUint64(out + 16, ALL_RIGHTS, true)
      return Errno.success
    },
    fd_fdstat_set_flags: (fd: number) => (fd > 2 ? Errno.badf : Errno.success),
    fd_fdstat_set_rights: (fd: number) => (fd > 2 ? Errno.badf : Errno.success),
    fd_close: (fd: number) => (fd > 2 ? Errno.badf : Errno.success),
    fd_seek: (fd: number) => (fd > 2 ? Errno.badf : Errno.spipe),
    fd_tell: (fd: number) => (fd > 2 ? Errno.badf : Errno.spipe),
    fd_sync: (fd: number) => (fd > 2 ? Errno.badf : Errno.success),
    fd_datasync: (fd: number) => (fd > 2 ? Errno.badf : Errno.success),
    fd_advise: badf,
    fd_allocate: badf,
    fd_filestat_get: badf,
    fd_filestat_set_size: badf,
    fd_filestat_set_times: badf,
    fd_pread: badf,
    fd_pwrite: badf,
    fd_prestat_get: badf,
    fd_prestat_dir_name: badf,
    fd_readdir: badf,
    fd_renumber: badf,
    path_create_directory: notcapable,
    path_filestat_get: notcapable,
    path_filestat_set_times: notcapable,
    path_link: notcapable,
    path_open: notcapable,
    path_readlink: notcapable,
    path_remove_directory: notcapable,
    path_rename: notcapable,
    path_symlink: notcapable,
    path_unlink_file: notcapable,
    poll_oneoff: (inPtr: number, outPtr: number, count: number, eventsPtr: number) => {
      const v = view()
      // Only clock subscriptions can make a plugin wait; the call timeout bounds any sleep.
      let sleepNs = -1n
      for (let i = 0; i < count; i++) {
        const sub = inPtr + i * 48
        if (v.getUint8(sub + 8) !== 0) continue
        const timeout = v.getBigUint64(sub + 24, true)
        const absolute = (v.getUint16(sub + 40, true) & 1) === 1
        const relative = absolute ? timeout - process.hrtime.bigint() : timeout
        const wait = relative < 0n ? 0n : relative
        if (sleepNs < 0n || wait < sleepNs) sleepNs = wait
      }
      if (sleepNs > 0n) Atomics.wait(sleeper, 0, 0, Number(sleepNs / 1_000_000n))
      for (let i = 0; i < count; i++) {
        const sub = inPtr + i * 48
        const event = outPtr + i * 32
        v.setBigUint64(event, v.getBigUint64(sub, true), true)
        v.setUint16(event + 8, 0, true)
        v.setUint8(event + 10, v.getUint8(sub + 8))
      }
      v.setUint32(eventsPtr, count, true)
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
  return { imports, flush }
}

/** Names every plugin may import from `wasi_snapshot_preview1`. */
export const wasiFunctionNames: ReadonlySet<string> = new Set(
  Object.keys(makeWasi({ memory: () => undefined, log: () => undefined }).imports)
)

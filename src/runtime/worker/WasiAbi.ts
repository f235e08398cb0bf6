/**
 * WASI preview 1 numbers and bounds-checked access to a guest's linear memory, shared by the WASI
 * imports (`Wasi.ts`) and the read-only filesystem (`WasiFs.ts`).
 */

/** WASI `errno` values used here (the wasi-libc numbering). */
export const Errno = {
  success: 0,
  acces: 2,
  again: 6,
  badf: 8,
  busy: 10,
  dquot: 19,
  exist: 20,
  fault: 21,
  fbig: 22,
  ilseq: 25,
  inval: 28,
  io: 29,
  isdir: 31,
  loop: 32,
  mfile: 33,
  nametoolong: 37,
  nfile: 41,
  nodev: 43,
  noent: 44,
  nomem: 48,
  nospc: 51,
  nosys: 52,
  notdir: 54,
  notempty: 55,
  notsup: 58,
  nxio: 60,
  overflow: 61,
  perm: 63,
  rofs: 69,
  spipe: 70,
  stale: 72,
  xdev: 75,
  notcapable: 76
} as const

export const Filetype = {
  unknown: 0,
  blockDevice: 1,
  characterDevice: 2,
  directory: 3,
  regularFile: 4,
  socketStream: 6,
  symbolicLink: 7
} as const

/** Bits of the WASI `rights` type. */
export const Rights = {
  fdDatasync: 1n << 0n,
  fdRead: 1n << 1n,
  fdSeek: 1n << 2n,
  fdFdstatSetFlags: 1n << 3n,
  fdSync: 1n << 4n,
  fdTell: 1n << 5n,
  fdWrite: 1n << 6n,
  fdAdvise: 1n << 7n,
  fdAllocate: 1n << 8n,
  pathCreateDirectory: 1n << 9n,
  pathCreateFile: 1n << 10n,
  pathOpen: 1n << 13n,
  fdReaddir: 1n << 14n,
  pathReadlink: 1n << 15n,
  pathRenameSource: 1n << 16n,
  pathRenameTarget: 1n << 17n,
  pathFilestatGet: 1n << 18n,
  pathFilestatSetSize: 1n << 19n,
  pathFilestatSetTimes: 1n << 20n,
  fdFilestatGet: 1n << 21n,
  fdFilestatSetSize: 1n << 22n,
  fdFilestatSetTimes: 1n << 23n,
  pathRemoveDirectory: 1n << 25n,
  pathUnlinkFile: 1n << 26n,
  pollFdReadwrite: 1n << 27n
} as const

export const Oflags = { creat: 1, directory: 2, excl: 4, trunc: 8 } as const
export const Fdflags = { append: 1 } as const
export const LOOKUP_SYMLINK_FOLLOW = 1

/** A guest pointer or length outside its memory: the call returns EFAULT. */
export class Fault extends Error {}

/** A WASI call that fails with `errno`. */
export class WasiError extends Error {
  constructor(readonly errno: number) {
    super(`errno ${errno}`)
  }
}

const hostErrnos: Readonly<Record<string, number>> = {
  EACCES: Errno.acces,
  EDQUOT: Errno.dquot,
  EAGAIN: Errno.again,
  EBADF: Errno.badf,
  EBUSY: Errno.busy,
  EEXIST: Errno.exist,
  EFBIG: Errno.fbig,
  EINVAL: Errno.inval,
  EIO: Errno.io,
  EISDIR: Errno.isdir,
  ELOOP: Errno.loop,
  EMFILE: Errno.nfile,
  ENAMETOOLONG: Errno.nametoolong,
  ENFILE: Errno.nfile,
  ENODEV: Errno.nodev,
  ENOENT: Errno.noent,
  ENOMEM: Errno.nomem,
  ENOSPC: Errno.nospc,
  ENOTDIR: Errno.notdir,
  ENOTEMPTY: Errno.notempty,
  ENXIO: Errno.nxio,
  EOVERFLOW: Errno.overflow,
  EPERM: Errno.perm,
  EROFS: Errno.rofs,
  ESTALE: Errno.stale,
  EXDEV: Errno.xdev
}

/**
 * The errno for anything a WASI function threw, or undefined when it must propagate (a
 * `KernelAbort` such as proc_exit). Host `EMFILE` becomes ENFILE: the process, not the guest, ran out.
 */
export const errnoOf = (error: unknown): number | undefined => {
  if (error instanceof WasiError) return error.errno
  if (error instanceof Fault) return Errno.fault
  if (error instanceof Error && "code" in error && typeof error.code === "string") {
    return hostErrnos[error.code] ?? Errno.io
  }
  return undefined
}

/** Bounds-checked little-endian access to the guest's memory; every miss throws `Fault`. */
export class GuestMemory {
  constructor(private readonly memory: () => WebAssembly.Memory | undefined) {}

  private buffer(): ArrayBuffer {
    const memory = this.memory()
    if (memory === undefined) throw new Fault("the plugin exports no memory")
    return memory.buffer
  }

  /** The guest bytes `[ptr, ptr + length)`; pointers and lengths are unsigned 32-bit. */
  bytes(ptr: number, length: number): Uint8Array {
    const buffer = this.buffer()
    const start = ptr >>> 0
    const size = length >>> 0
    if (start + size > buffer.byteLength) throw new Fault(`${start}+${size} is outside memory`)
    return new Uint8Array(buffer, start, size)
  }

  private view(ptr: number, size: number): DataView {
    const bytes = this.bytes(ptr, size)
    return new DataView(bytes.buffer, bytes.byteOffset, size)
  }

  u8(ptr: number): number {
    return this.view(ptr, 1).getUint8(0)
  }
  u16(ptr: number): number {
    return this.view(ptr, 2).getUint16(0, true)
  }
  u32(ptr: number): number {
    return this.view(ptr, 4).getUint32(0, true)
  }
  u64(ptr: number): bigint {
    return this.view(ptr, 8).getBigUint64(0, true)
  }
  setU8(ptr: number, value: number): void {
    this.view(ptr, 1).setUint8(0, value)
  }
  setU16(ptr: number, value: number): void {
    this.view(ptr, 2).setUint16(0, value, true)
  }
  setU32(ptr: number, value: number): void {
    this.view(ptr, 4).setUint32(0, value, true)
  }
  setU64(ptr: number, value: bigint): void {
    this.view(ptr, 8).setBigUint64(0, BigInt.asUintN(64, value), true)
  }

  /** The buffers of an iovec array (`{buf u32, len u32}` × count), each bounds-checked. */
  iovecs(ptr: number, count: number): Array<Uint8Array> {
    const table = this.bytes(ptr, (count >>> 0) * 8)
    const view = new DataView(table.buffer, table.byteOffset, table.byteLength)
    const buffers: Array<Uint8Array> = []
    for (let i = 0; i < table.byteLength; i += 8) {
      buffers.push(this.bytes(view.getUint32(i, true), view.getUint32(i + 4, true)))
    }
    return buffers
  }
}

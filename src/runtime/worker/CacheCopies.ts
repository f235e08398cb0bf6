/**
 * A worker's copies of one plugin's cache entries, for the gets it answers itself
 * (docs/decisions/0035-host-calls-in-the-worker.md). The cache lives on the main thread; a copy is
 * made from the main thread's answer to a lookup and used while the entry's slot in the shared
 * index keeps the stamp it had then, and while the entry is surely alive whatever the engine's clock
 * reads (`abi/EngineClock.ts`). A use marks the slot touched, so the main thread's
 * least-recently-used eviction still sees it.
 */
import { type CacheLookup, readLookup, type WireEntry } from "../../host/cache/CacheAnswers.js"
import { CacheIndexView } from "../../host/cache/CacheIndex.js"
import { EngineClockView } from "../abi/EngineClock.js"

/** Copies kept per plugin on one worker, and their bytes: a bound on the worker's memory, not the cache's. */
export const maxCopies = 1_024
export const maxCopyBytes = 1024 * 1024
/** A larger entry is not copied: each of its gets crosses. */
export const maxCopiedEntryBytes = 64 * 1024

interface Copy extends CacheLookup {
  readonly bytes: number
}

const decoder = new TextDecoder()

export class CacheCopies {
  private readonly copies = new Map<string, Copy>()
  private bytes = 0
  private readonly index: CacheIndexView
  private readonly clock: EngineClockView

  constructor(
    index: SharedArrayBuffer,
    clock: SharedArrayBuffer,
    /** Asks the main thread for the entry (`CacheAnswers.lookupFunction`), blocking. */
    private readonly lookup: (payload: Uint8Array) => Uint8Array
  ) {
    this.index = new CacheIndexView(index)
    this.clock = new EngineClockView(clock)
  }

  /**
   * The live entry under `key`, as a get on the main thread would find it: null when there is none,
   * undefined when the lookup went wrong (the call then crosses as it is). `payload` is the guest's
   * request, already known to hold `key`, passed on to the lookup.
   */
  entry(key: string, payload: Uint8Array): WireEntry | null | undefined {
    const copy = this.copies.get(key)
    if (copy !== undefined) {
      if (this.index.current(copy.slot, copy.stamp)) {
        const { high, low } = this.clock.bounds()
        if (copy.expiresAt > high) {
          this.index.touch(copy.slot)
          return copy
        }
        if (copy.expiresAt <= low) {
          this.forget(key)
          return null
        }
      }
      this.forget(key)
    }
    let reply: unknown
    try {
      reply = JSON.parse(decoder.decode(this.lookup(payload)))
    } catch {
      return undefined
    }
    const found = readLookup(reply)
    if (found !== undefined && found !== null && found.slot >= 0) this.keep(key, found)
    return found
  }

  /** Copies held, and their bytes (for tests of the bound). */
  get size(): number {
    return this.copies.size
  }

  get usedBytes(): number {
    return this.bytes
  }

  clear(): void {
    this.copies.clear()
    this.bytes = 0
  }

  private keep(key: string, found: CacheLookup): void {
    // UTF-16 code units: what the copy takes in this heap, near enough.
    const bytes = 2 * key.length + (typeof found.value === "string" ? 2 * found.value.length : 8)
    if (bytes > maxCopiedEntryBytes) return
    this.copies.set(key, { ...found, bytes })
    this.bytes += bytes
    for (const [oldest] of this.copies) {
      if (this.copies.size <= maxCopies && this.bytes <= maxCopyBytes) break
      this.forget(oldest)
    }
  }

  private forget(key: string): void {
    const copy = this.copies.get(key)
    if (copy === undefined) return
    this.copies.delete(key)
    this.bytes -= copy.bytes
  }
}

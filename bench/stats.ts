/** Small numeric and formatting helpers for the benchmark. */
import { cpus } from "node:os"
import v8 from "node:v8"
import vm from "node:vm"

/** Nearest-rank percentile (`p` in 0..1) of unsorted samples; `NaN` when there are none. */
export const percentile = (samples: ReadonlyArray<number>, p: number): number => {
  if (samples.length === 0) return Number.NaN
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)))
  return sorted[rank - 1]!
}

export const median = (samples: ReadonlyArray<number>): number => percentile(samples, 0.5)

/** Rounds to `digits` decimals (keeps the JSON readable). */
export const round = (value: number, digits = 3): number => {
  const factor = 10 ** digits
  return Math.round(value * factor) / factor
}

/** `12,345` for rates, `0.052` for milliseconds. */
export const formatNumber = (value: number): string =>
  !Number.isFinite(value)
    ? String(value)
    : Math.abs(value) >= 100
      ? Math.round(value).toLocaleString("en-US")
      : Math.abs(value) >= 1
        ? value.toFixed(2)
        : value.toFixed(3)

/**
 * A full garbage collection of the main thread's heap: `global.gc` when node runs with
 * `--expose-gc` (as `npm run bench` does), otherwise enabled at run time through V8's flags.
 */
export const collectGarbage: () => void = (() => {
  if (typeof globalThis.gc === "function") return globalThis.gc
  v8.setFlagsFromString("--expose-gc")
  const gc: unknown = vm.runInNewContext("gc")
  return typeof gc === "function" ? () => void gc() : () => undefined
})()

export const rssMb = (): number => process.memoryUsage.rss() / (1024 * 1024)

/** Left-aligned text table with a header row and a rule under it. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd()
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n")
}

const cpuTicks = () =>
  cpus().reduce(
    (sum, cpu) => {
      const t = cpu.times
      return { idle: sum.idle + t.idle, busy: sum.busy + t.user + t.nice + t.sys + t.irq }
    },
    { idle: 0, busy: 0 }
  )

/**
 * Starts measuring how much CPU other processes use; the returned function gives their share
 * (0..1) of all cores' time since then: busy time of the machine minus this process's own (all
 * its threads). Anything clearly above 0 means the figures of that period are skewed.
 */
export const foreignCpu = (): (() => number) => {
  const ticks = cpuTicks()
  const own = process.cpuUsage()
  const start = performance.now()
  const cores = cpus().length
  return () => {
    const now = cpuTicks()
    const ownUsage = process.cpuUsage(own)
    const ownMs = (ownUsage.user + ownUsage.system) / 1000
    const wallMs = (performance.now() - start) * cores
    return wallMs > 0 ? Math.max(0, (now.busy - ticks.busy - ownMs) / wallMs) : 0
  }
}

/** Share (0..1) of all cores' time spent idle over the next `ms`: other load skews every figure. */
export const idleShare = (ms: number): Promise<number> => {
  const before = cpuTicks()
  return new Promise((resolve) =>
    setTimeout(() => {
      const after = cpuTicks()
      const idle = after.idle - before.idle
      const total = idle + after.busy - before.busy
      resolve(total > 0 ? idle / total : 1)
    }, ms)
  )
}

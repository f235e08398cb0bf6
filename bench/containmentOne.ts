/**
 * A focused containment probe: the healthy plugin alone, then beside the hostile classes named on
 * the command line, alternating for a few rounds in one process, so that alone and attacked are
 * compared on the same machine state. Used to find what raises the healthy p99 under a class
 * (run it under `node --cpu-prof --import tsx` for a profile of the main thread).
 *
 *   npx tsx bench/containmentOne.ts websocket-flood loop --rounds 3 --seconds 5
 */
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { attackEnvironment, healthyCall } from "./attacks.js"
import { type HealthyProbe, probeHealthy } from "./containment.js"

const args = process.argv.slice(2)
const option = (name: string, fallback: number): number => {
  const at = args.indexOf(`--${name}`)
  return at >= 0 ? Number(args[at + 1]) : fallback
}
const rounds = option("rounds", 3)
const durationMs = option("seconds", 5) * 1_000
const names = args.filter((arg, i) => !arg.startsWith("--") && !args[i - 1]?.startsWith("--"))
// `--ab NAME=a,b`: each class runs once with the environment variable NAME=a and once with NAME=b
// in every round (for engine settings read from the environment while experimenting).
const abAt = args.indexOf("--ab")
const ab = abAt >= 0 ? args[abAt + 1]!.split("=") : undefined
const variants: ReadonlyArray<string | undefined> = ab === undefined ? [undefined] : ab[1]!.split(",")

const fmt = (probe: HealthyProbe, lagP99: number, lagMax: number) =>
  `p50 ${probe.p50Ms.toFixed(2)} p99 ${probe.p99Ms.toFixed(2)} max ${probe.maxMs.toFixed(1)} ms ` +
  `(${probe.calls} calls, ${probe.failures} failed); loop lag p99 ${lagP99.toFixed(1)} max ${lagMax.toFixed(1)} ms`

const program = Effect.scoped(
  Effect.gen(function* () {
    const { attacks, healthy } = yield* attackEnvironment()
    const chosen = attacks.filter((attack) => names.includes(attack.name))
    if (chosen.length !== names.length) {
      return yield* Effect.die(
        `unknown class among ${names.join(", ")}; known: ${attacks.map((a) => a.name).join(", ")}`
      )
    }
    const options = { durationMs, intervalMs: 10, minCalls: Math.round(durationMs / 12.5) }
    const lag = monitorEventLoopDelay({ resolution: 1 })
    const measured = <E, R>(effect: Effect.Effect<HealthyProbe, E, R>) =>
      Effect.gen(function* () {
        lag.reset()
        lag.enable()
        const probe = yield* effect
        lag.disable()
        return { probe, lagP99: lag.percentile(99) / 1e6, lagMax: lag.max / 1e6 }
      })
    const table: Record<string, Array<number>> = { alone: [] }
    const lags: Record<string, Array<number>> = { alone: [] }
    for (let round = 1; round <= rounds; round++) {
      const alone = yield* measured(probeHealthy(healthyCall(healthy), options))
      table.alone!.push(alone.probe.p99Ms)
      lags.alone!.push(alone.lagP99)
      console.log(`round ${round} alone: ${fmt(alone.probe, alone.lagP99, alone.lagMax)}`)
      for (const attack of chosen)
        for (const variant of variants) {
          if (variant !== undefined) process.env[ab![0]!] = variant
          const label = variant === undefined ? attack.name : `${attack.name} ${ab![0]}=${variant}`
          const result = yield* Effect.scoped(
            Effect.gen(function* () {
              const outcomes = yield* attack.start
              const r = yield* measured(probeHealthy(healthyCall(healthy), options))
              return { ...r, outcomes: { ...outcomes } }
            })
          )
          ;(table[label] ??= []).push(result.probe.p99Ms)
          ;(lags[label] ??= []).push(result.lagP99)
          console.log(
            `round ${round} ${label}: ${fmt(result.probe, result.lagP99, result.lagMax)}; hostile ${JSON.stringify(result.outcomes)}`
          )
        }
    }
    const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[values.length >> 1]!
    for (const [title, figures] of [
      ["healthy p99 (ms)", table],
      ["event-loop delay p99 (ms)", lags]
    ] as const) {
      console.log(`\n${title} per round, then the median:`)
      for (const [name, values] of Object.entries(figures)) {
        const cells = values.map((v) => v.toFixed(2).padStart(7)).join(" ")
        console.log(`  ${name.padEnd(34)} ${cells}  | ${median(values).toFixed(2)}`)
      }
    }
  })
)

// As in `npm run bench`: plugin logs below warnings are not printed.
Effect.runPromise(program.pipe(Logger.withMinimumLogLevel(LogLevel.Warning))).then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)

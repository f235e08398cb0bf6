/**
 * `npm run soak`: every hostile class of `bench/attacks.ts` at once, for a while, beside a healthy
 * plugin. The attack runs in a child process so that a crash of the engine is seen and counted
 * instead of ending the report. Prints a summary and writes `bench/results/soak.json`.
 *
 * Usage: npm run soak [-- --seconds N]   (default 120; the short version in `npm test` uses the
 * same harness for a few seconds)
 */
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { spawn } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { attackEnvironment, healthyCall } from "./attacks.js"
import { soak, type SoakResult } from "./containment.js"

const resultsDir = fileURLToPath(new URL("results/", import.meta.url))
const RESULT_PREFIX = "SOAK-RESULT "

const argValue = (name: string): string | undefined => {
  const index = process.argv.indexOf(name)
  return index === -1 ? undefined : process.argv[index + 1]
}

const seconds = Number(argValue("--seconds") ?? "120")

/** The child: runs the soak and prints its result as one line. */
const child = Effect.gen(function* () {
  const { attacks, healthy } = yield* attackEnvironment()
  const result = yield* soak({
    attacks,
    healthy: healthyCall(healthy),
    durationMs: seconds * 1000,
    intervalMs: 20,
    minCalls: 100,
    progress: (line) => console.error(`  ${line}`)
  })
  console.log(`${RESULT_PREFIX}${JSON.stringify(result)}`)
}).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Error))

/** The parent: starts the child, counts a crash, reports. */
const parent = async (): Promise<void> => {
  console.log(`soak: all attack classes at once for ${seconds} s beside a healthy plugin`)
  const started = performance.now()
  const proc = spawn(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), "--child", "--seconds", String(seconds)],
    { stdio: ["ignore", "pipe", "inherit"] }
  )
  let stdout = ""
  proc.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")))
  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on("exit", (code, signal) => resolve({ code, signal }))
  )
  const line = stdout.split("\n").find((l) => l.startsWith(RESULT_PREFIX))
  const result: SoakResult | undefined = line ? JSON.parse(line.slice(RESULT_PREFIX.length)) : undefined
  const crashes = exit.code === 0 && result !== undefined ? 0 : 1
  const report = {
    date: new Date().toISOString(),
    node: process.version,
    seconds,
    crashes,
    exit,
    totalSeconds: (performance.now() - started) / 1000,
    ...result
  }
  mkdirSync(resultsDir, { recursive: true })
  writeFileSync(`${resultsDir}soak.json`, `${JSON.stringify(report, null, 2)}\n`)
  if (result) {
    const f = (n: number) => n.toFixed(3)
    console.log(`crashes: ${crashes}`)
    console.log(`healthy alone:        p50 ${f(result.alone.p50Ms)} ms, p99 ${f(result.alone.p99Ms)} ms`)
    console.log(
      `healthy under attack: p50 ${f(result.underAttack.p50Ms)} ms, p99 ${f(result.underAttack.p99Ms)} ms, ` +
        `${result.underAttack.failures} failed of ${result.underAttack.calls}`
    )
    console.log(`peak RSS ${result.peakRssMb.toFixed(0)} MiB (before ${result.rssBeforeMb.toFixed(0)} MiB)`)
    console.log(
      `event-loop lag p99 ${f(result.eventLoopLag.p99Ms)} ms, max ${f(result.eventLoopLag.maxMs)} ms`
    )
    console.log(
      `threads/fds before ${JSON.stringify(result.handlesBefore)}, after ${JSON.stringify(result.handlesAfter)}`
    )
  } else {
    console.log(`crashes: ${crashes} (the attacked process exited with ${JSON.stringify(exit)})`)
  }
  console.log(`written to bench/results/soak.json`)
  process.exitCode = crashes === 0 ? 0 : 1
}

if (process.argv.includes("--child")) {
  Effect.runPromise(child).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error)
      process.exit(1)
    }
  )
} else {
  void parent()
}

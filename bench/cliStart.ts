/**
 * How long the compiled `ndp` program takes to start, against a bare `node -e 0` on the same
 * machine in the same run: `ndp --help` (no engine) and `ndp inspect <fixture>` (the engine, one
 * worker, no plugin code). Each is run several times in turn; medians of wall time are compared.
 */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { median, round } from "./stats.js"

const root = fileURLToPath(new URL("../", import.meta.url))

const timeRun = (args: ReadonlyArray<string>): number => {
  const started = performance.now()
  const result = spawnSync(process.execPath, args, { cwd: root, encoding: "utf8", timeout: 60_000 })
  const elapsed = performance.now() - started
  if (result.status !== 0)
    throw new Error(`node ${args.join(" ")} exited ${result.status}: ${result.stderr.slice(0, 500)}`)
  return elapsed
}

export interface CliStartFigures {
  readonly runs: number
  readonly nodeMs: number
  readonly helpMs: number
  readonly inspectMs: number
  /** `ndp --help` ÷ `node -e 0`. */
  readonly helpVsNode: number
  /** `ndp inspect build/fixtures/agent-full.ndp` ÷ `node -e 0`. */
  readonly inspectVsNode: number
}

export const measureCliStart = (runs = 7): CliStartFigures => {
  const commands = {
    node: ["-e", "0"],
    help: ["bin/ndp.js", "--help"],
    inspect: ["bin/ndp.js", "inspect", "build/fixtures/agent-full.ndp"]
  }
  const samples = { node: [] as Array<number>, help: [] as Array<number>, inspect: [] as Array<number> }
  // One unmeasured round warms the file cache; then the three alternate so load hits them alike.
  for (const args of Object.values(commands)) timeRun(args)
  for (let i = 0; i < runs; i++) {
    for (const [name, args] of Object.entries(commands))
      samples[name as keyof typeof samples].push(timeRun(args))
  }
  const nodeMs = median(samples.node)
  const helpMs = median(samples.help)
  const inspectMs = median(samples.inspect)
  return {
    runs,
    nodeMs: round(nodeMs, 1),
    helpMs: round(helpMs, 1),
    inspectMs: round(inspectMs, 1),
    helpVsNode: round(helpMs / nodeMs, 2),
    inspectVsNode: round(inspectMs / nodeMs, 2)
  }
}

// `npx tsx bench/cliStart.ts` measures only this (after npm run build).
if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(measureCliStart())

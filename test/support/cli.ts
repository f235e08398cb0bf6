/**
 * The `ndp` program run as a real child process from the repository root.
 *
 * Nothing here has a time budget of its own: a busy two-core machine can take many seconds to
 * start a process. `ndp` resolves when the process exits, `startNdp().waitFor` when the awaited
 * output appears (or the process exits without it); the test's own timeout is the only bound. A
 * safety timer still kills a process that outlives any test, so none is left behind.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

export const repositoryRoot = fileURLToPath(new URL("../../", import.meta.url))

/** How long a CLI test may run: generous, because process start-up is slow under load. */
export const CLI_TEST_TIMEOUT_MS = 600_000

// Far beyond any test's timeout: only there so that no process outlives the suite.
const SAFETY_KILL_MS = CLI_TEST_TIMEOUT_MS + 60_000

export interface NdpResult {
  /** The exit code, or null when a signal ended the process. */
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export interface NdpOptions {
  /** Written to the process's standard input, which is then closed (default: closed at once). */
  readonly input?: string | undefined
  readonly cwd?: string | undefined
}

const running = new Set<ChildProcess>()

/** A started `ndp` process whose output is collected as it comes. */
export const startNdp = (
  args: ReadonlyArray<string>,
  env: Record<string, string> = {},
  options: NdpOptions = {}
) => {
  const child = spawn(process.execPath, [`${repositoryRoot}bin/ndp.js`, ...args], {
    cwd: options.cwd ?? repositoryRoot,
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"]
  })
  running.add(child)
  const out = { stdout: "", stderr: "" }
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out.stdout += chunk))
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (out.stderr += chunk))
  // A process that exits before reading its input must not fail the test with EPIPE.
  child.stdin.on("error", () => {})
  child.stdin.end(options.input ?? "")
  const safety = setTimeout(() => child.kill("SIGKILL"), SAFETY_KILL_MS)
  safety.unref()
  const exited = new Promise<NdpResult>((resolve) => {
    // "close", not "exit": by then every byte of stdout and stderr has been read.
    child.on("close", (code, signal) => {
      clearTimeout(safety)
      running.delete(child)
      resolve({ code, signal, stdout: out.stdout, stderr: out.stderr })
    })
    child.on("error", (error) => {
      clearTimeout(safety)
      running.delete(child)
      resolve({ code: null, signal: null, stdout: out.stdout, stderr: `${out.stderr}\n${String(error)}` })
    })
  })
  let done = false
  void exited.then(() => (done = true))

  /** Polls the output until `pattern` matches it; fails if the process exits first. */
  const waitFor = async (pattern: RegExp, stream: "stdout" | "stderr" = "stdout") => {
    for (;;) {
      if (pattern.test(out[stream])) return
      if (done) {
        throw new Error(
          `ndp ${args.join(" ")} exited without printing ${pattern} on ${stream}\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`
        )
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  return { child, out, exited, waitFor }
}

/** Runs `ndp <args>` and resolves with its exit code and output once it has exited (never rejects). */
export const ndp = (
  args: ReadonlyArray<string>,
  env: Record<string, string> = {},
  options: NdpOptions = {}
) => startNdp(args, env, options).exited

/** Kills every `ndp` process still running (for an `afterAll`). */
export const killAll = () => {
  for (const child of running) child.kill("SIGKILL")
}

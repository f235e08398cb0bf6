/** The `ndp` program run as a real child process from the repository root. */
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"

export const repositoryRoot = fileURLToPath(new URL("../../", import.meta.url))

export interface NdpResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `ndp <args>` and resolves with its exit code and output (never rejects). */
export const ndp = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  new Promise<NdpResult>((resolve) => {
    execFile(
      process.execPath,
      ["bin/ndp.js", ...args],
      { cwd: repositoryRoot, encoding: "utf8", timeout: 60_000, env: { ...process.env, ...env } },
      (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : (error.code as number), stdout, stderr })
    )
  })

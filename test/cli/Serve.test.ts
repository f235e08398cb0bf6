/** `ndp serve` as a real long-running process, driven by `ndp plugins` from another process. */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ndp, repositoryRoot as root } from "../support/cli.js"
import { fixture } from "../support/fixtures.js"

const temps: Array<string> = []
const children: Array<ChildProcess> = []
afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL")
  for (const dir of temps) rmSync(dir, { recursive: true, force: true })
})

/** `ndp serve` as a child process whose output is collected as it comes. */
const startServe = (args: ReadonlyArray<string>) => {
  const child = spawn(process.execPath, ["bin/ndp.js", "serve", ...args], { cwd: root })
  children.push(child)
  const out = { stdout: "", stderr: "" }
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out.stdout += chunk))
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (out.stderr += chunk))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  const waitFor = async (pattern: RegExp, timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs
    while (!pattern.test(out.stdout)) {
      if (Date.now() > deadline || child.exitCode !== null) {
        throw new Error(`serve never printed ${pattern}\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  return { child, out, exited, waitFor }
}

describe("ndp serve", () => {
  it("shows plugins enabled from another process, registers new files, and stops cleanly on SIGTERM", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ndp-serve-"))
    temps.push(dir)
    const folder = join(dir, "plugins")
    const dataDir = join(dir, "data")
    mkdirSync(folder)
    copyFileSync(fixture("agent-full"), join(folder, "agent-full.ndp"))
    const settings = join(dir, "ndp.toml")
    writeFileSync(
      settings,
      [
        "[Plugins]",
        `Folder = ${JSON.stringify(folder)}`,
        `DataFolder = ${JSON.stringify(dataDir)}`,
        "AutoReload = true",
        'Debounce = "300ms"',
        "Workers = 2"
      ].join("\n")
    )
    const serve = startServe(["--config-file", settings])
    await serve.waitFor(/^agent-full: disabled \(agent-full 1\.0\.0\) \[MetadataAgent\]$/m)
    expect(serve.out.stdout).toContain(`serving plugins from ${folder}`)
    expect(serve.out.stdout).toContain("auto-reload on (debounce 300 ms)")

    const started = Date.now()
    const enabled = await ndp(["plugins", "enable", "agent-full", "--folder", folder, "--data-dir", dataDir])
    expect(enabled.code).toBe(0)
    await serve.waitFor(/^agent-full: loaded \(agent-full 1\.0\.0\) \[MetadataAgent\]$/m, 5_000)
    expect(Date.now() - started).toBeLessThan(10_000)

    copyFileSync(fixture("agent-partial"), join(folder, "partial.ndp"))
    await serve.waitFor(/^partial: disabled \(agent-partial 1\.0\.0\) \[MetadataAgent\]$/m, 5_000)
    rmSync(join(folder, "partial.ndp"))
    await serve.waitFor(/^partial: removed$/m, 5_000)

    serve.child.kill("SIGTERM")
    expect(await serve.exited).toBe(0)
    expect(serve.out.stdout.trimEnd().split("\n").at(-1)).toBe("stopped")
    // Each change is printed once: the status lines are not repeated on every refresh.
    expect(serve.out.stdout.match(/^agent-full: loaded/gm)).toHaveLength(1)
  })

  it("exits 1 naming the bad setting, and 0 without serving when plugins are disabled", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ndp-serve-"))
    temps.push(dir)
    const [bad, off] = await Promise.all([
      ndp(["serve", "--data-dir", dir], { NDP_PLUGINS_DEBOUNCE: "soon" }),
      ndp(["serve", "--data-dir", dir], { NDP_PLUGINS_ENABLED: "false" })
    ])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain("NDP_PLUGINS_DEBOUNCE: expected a positive duration")
    expect(off.code).toBe(0)
    expect(off.stderr).toContain("plugins are disabled")
  })
})

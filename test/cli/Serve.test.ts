/** `ndp serve` as a real long-running process, driven by `ndp plugins` from another process. */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { CLI_TEST_TIMEOUT_MS, killAll, ndp, startNdp } from "../support/cli.js"
import { fixture } from "../support/fixtures.js"

const temps: Array<string> = []
afterAll(() => {
  killAll()
  for (const dir of temps) rmSync(dir, { recursive: true, force: true })
})

describe("ndp serve", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
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
    const serve = startNdp(["serve", "--config-file", settings])
    await serve.waitFor(/^agent-full: disabled \(agent-full 1\.0\.0\) \[MetadataAgent\]$/m)
    expect(serve.out.stdout).toContain(`serving plugins from ${folder}`)
    expect(serve.out.stdout).toContain("auto-reload on (debounce 300 ms)")

    const enabled = await ndp(["plugins", "enable", "agent-full", "--folder", folder, "--data-dir", dataDir])
    expect(enabled.code).toBe(0)
    await serve.waitFor(/^agent-full: loaded \(agent-full 1\.0\.0\) \[MetadataAgent\]$/m)

    copyFileSync(fixture("agent-partial"), join(folder, "partial.ndp"))
    await serve.waitFor(/^partial: disabled \(agent-partial 1\.0\.0\) \[MetadataAgent\]$/m)
    rmSync(join(folder, "partial.ndp"))
    await serve.waitFor(/^partial: removed$/m)

    serve.child.kill("SIGTERM")
    expect((await serve.exited).code).toBe(0)
    expect(serve.out.stdout.trimEnd().split("\n").at(-1)).toBe("stopped")
    // Each change is printed once: the status lines are not repeated on every refresh.
    expect(serve.out.stdout.match(/^agent-full: loaded/gm)).toHaveLength(1)
  })

  it("warns when the plugins folder does not exist, and --log-level on the line beats the LogLevel setting", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ndp-serve-"))
    temps.push(dir)
    const missing = join(dir, "nowhere")
    const serve = startNdp(
      ["serve", "--folder", missing, "--data-dir", join(dir, "data"), "--log-level", "debug"],
      {
        NDP_PLUGINS_LOGLEVEL: "error"
      }
    )
    await serve.waitFor(/^\(no plugins yet\)$/m)
    // The debug line of the worker pool shows that the flag won over the setting.
    await serve.waitFor(/DEBUG .*plugin worker pool started/, "stderr")
    expect(serve.out.stderr).toContain(`warning: the plugins folder ${missing} does not exist; create it`)
    expect(serve.out.stdout).toContain(`serving plugins from ${missing} (data ${join(dir, "data")})`)
    serve.child.kill("SIGTERM")
    expect((await serve.exited).code).toBe(0)
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

/** The `ndp` program as a user runs it: a real process, real packages, exit codes and JSON. */
import { describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { fixture } from "../support/fixtures.js"

const root = fileURLToPath(new URL("../../", import.meta.url))

const ndp = (...args: Array<string>) => {
  const result = spawnSync(process.execPath, ["bin/ndp.js", ...args], {
    cwd: root,
    encoding: "utf8",
    timeout: 60_000
  })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

describe("ndp inspect", () => {
  it("prints the package as JSON and exits 0 when it can load", () => {
    const { code, stdout } = ndp("inspect", fixture("scrobbler"), "--json")
    expect(code).toBe(0)
    const report = JSON.parse(stdout) as Record<string, unknown>
    expect(report).toMatchObject({
      id: "scrobbler",
      capabilities: ["Scrobbler"],
      problems: [],
      manifest: { name: "scrobbler", permissions: { users: {} } }
    })
    expect(report.sha256).toMatch(/^[0-9a-f]{64}$/)
    expect(report.exports).toContain("nd_scrobbler_scrobble")
    expect(report.imports).toContainEqual({ module: "extism:host/env", name: "error_set" })
  })

  it("lists the problem and exits 3 when an import has no permission", () => {
    const { code, stdout } = ndp("inspect", fixture("forbidden-import"), "--json")
    expect(code).toBe(3)
    const report = JSON.parse(stdout) as { problems: Array<string> }
    expect(report.problems.join("\n")).toContain('needs the "kvstore" permission')
  })
})

describe("ndp call", () => {
  it("calls an export with input and config and prints {ok, output, ms}", () => {
    const { code, stdout } = ndp(
      "call",
      fixture("agent-full"),
      "config_value",
      "--input",
      '{"key":"greeting"}',
      "--config",
      "greeting=hi=there",
      "--json"
    )
    expect(code).toBe(0)
    const result = JSON.parse(stdout) as { ok: boolean; output: unknown; ms: number }
    expect(result.ok).toBe(true)
    expect(result.output).toEqual({ value: "hi=there", exists: true })
    expect(result.ms).toBeGreaterThan(0)
  })

  it("exits 2 with the error's tag when the call fails", () => {
    const { code, stdout } = ndp(
      "call",
      fixture("loop-export"),
      "nd_get_artist_biography",
      "--timeout-ms",
      "200",
      "--json"
    )
    expect(code).toBe(2)
    expect(JSON.parse(stdout)).toMatchObject({ ok: false, error: { tag: "PluginTimeoutError" } })
  })

  it("exits 3 when the plugin cannot load", () => {
    const { code, stdout } = ndp("call", fixture("unknown-module"), "nd_get_artist_biography", "--json")
    expect(code).toBe(3)
    expect(JSON.parse(stdout)).toMatchObject({ ok: false, error: { tag: "PluginLoadError" } })
  })

  it("refuses input that is not JSON with a clear message", () => {
    const { code, stderr } = ndp("call", fixture("agent-full"), "echo", "--input", "{nope")
    expect(code).toBe(1)
    expect(stderr).toContain("--input is not valid JSON")
  })

  it("--user and --admin add users to the embedded directory and allow them for the plugin", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "ndp-cli-"))
    try {
      const { code, stdout } = ndp(
        "call",
        fixture("host-users"),
        "call_users_getusers",
        "--user",
        "carol",
        "--admin",
        "dave",
        "--data-dir",
        dataDir,
        "--json"
      )
      expect(code).toBe(0)
      // Only the users named on the command line are allowed, not the demo users.
      expect(JSON.parse(stdout)).toMatchObject({
        ok: true,
        output: {
          result: [
            { userName: "carol", name: "carol" },
            { userName: "dave", name: "dave", isAdmin: true }
          ]
        }
      })
      expect(existsSync(join(dataDir, "ndp.db"))).toBe(true)
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  it("--library registers a folder and allows it; a bare ID allows an existing library", () => {
    const root = mkdtempSync(join(tmpdir(), "ndp-cli-"))
    try {
      const music = join(root, "music")
      mkdirSync(music)
      writeFileSync(join(music, "song.flac"), "not really audio")
      const { code, stdout } = ndp(
        "call",
        fixture("host-library"),
        "call_library_getalllibraries",
        "--library",
        `7=${music}`,
        "--library",
        "1",
        "--data-dir",
        join(root, "data"),
        "--json"
      )
      expect(code).toBe(0)
      const result = (JSON.parse(stdout) as { output: { result: Array<{ id: number; name: string }> } })
        .output.result
      expect(result.map((l) => [l.id, l.name])).toEqual([
        [1, "Demo Library"],
        [7, "music"]
      ])
      expect(ndp("call", fixture("host-library"), "noop", "--library", "seven").code).toBe(1)
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })
})

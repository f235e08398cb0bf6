/** `ndp plugins …` as a user runs it: real processes on temporary folders, exit codes and JSON. */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { CLI_TEST_TIMEOUT_MS, killAll, ndp } from "../support/cli.js"
import { fixture } from "../support/fixtures.js"
import { repackage } from "../support/repackage.js"

const temps: Array<string> = []
afterAll(() => {
  killAll()
  temps.forEach((dir) => rmSync(dir, { recursive: true, force: true }))
})

/** A plugins folder holding copies of the given fixtures, and a data folder beside it. */
const folders = (plugins: ReadonlyArray<string>) => {
  const dir = mkdtempSync(join(tmpdir(), "ndp-plugins-cli-"))
  temps.push(dir)
  const folder = join(dir, "plugins")
  mkdirSync(folder)
  for (const id of plugins) copyFileSync(fixture(id), join(folder, `${id}.ndp`))
  return {
    dir,
    folder,
    dataDir: join(dir, "data"),
    args: ["--folder", folder, "--data-dir", join(dir, "data")]
  }
}

interface Entry {
  id: string
  enabled: boolean
  capabilities: Array<string>
  users: unknown
  allowedNetworks: Array<string>
  lastError: string | null
}

/** The plugins of a `list --json` / `rescan --json` envelope. */
const pluginsOf = (stdout: string) => (JSON.parse(stdout) as { plugins: Array<Entry> }).plugins

describe("ndp plugins", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
  it("list --json prints the folders used and every registered plugin with its capabilities", async () => {
    const f = folders(["agent-full", "scrobbler"])
    const { code, stdout } = await ndp(["plugins", "list", ...f.args, "--json"])
    expect(code).toBe(0)
    const listed = JSON.parse(stdout) as {
      ok: boolean
      folder: string
      dataFolder: string
      plugins: Array<Record<string, unknown>>
    }
    expect(listed).toMatchObject({ ok: true, folder: f.folder, dataFolder: f.dataDir })
    const entries = listed.plugins
    expect(entries).toEqual([
      expect.objectContaining({
        id: "agent-full",
        name: "agent-full",
        version: "1.0.0",
        enabled: false,
        capabilities: ["MetadataAgent"],
        lastError: null
      }),
      expect.objectContaining({
        id: "scrobbler",
        enabled: false,
        capabilities: ["Scrobbler"],
        lastError: null
      })
    ])
    expect(entries[0]?.["sha256"]).toMatch(/^[0-9a-f]{64}$/)
  })

  it("enable refuses a plugin whose permission gate fails, and --user satisfies it", async () => {
    const f = folders(["scrobbler"])
    const refused = await ndp(["plugins", "enable", "scrobbler", ...f.args])
    expect(refused.code).toBe(4)
    expect(refused.stderr).toContain("error [PermissionGate]: plugin scrobbler needs the users permission")
    expect(refused.stderr).toContain("--user NAME")

    const refusedJson = await ndp(["plugins", "enable", "scrobbler", ...f.args, "--json"])
    expect(refusedJson.code).toBe(4)
    expect(JSON.parse(refusedJson.stdout)).toEqual({
      ok: false,
      error: {
        tag: "ManagerError",
        reason: "PermissionGate",
        message: expect.stringContaining("users"),
        hint: "pass --user NAME (repeatable) or --all-users to enable"
      }
    })

    const enabled = await ndp(["plugins", "enable", "scrobbler", "--user", "alice", ...f.args, "--json"])
    expect(enabled.code).toBe(0)
    expect(JSON.parse(enabled.stdout)).toMatchObject({
      ok: true,
      plugin: { id: "scrobbler", enabled: true, users: ["alice"] }
    })

    const disabled = await ndp(["plugins", "disable", "scrobbler", ...f.args])
    expect(disabled.code).toBe(0)
    expect(disabled.stdout).toContain("disabled scrobbler")
    const missing = await ndp(["plugins", "disable", "nope", ...f.args, "--json"])
    expect(missing.code).toBe(4)
    expect(JSON.parse(missing.stdout)).toMatchObject({ ok: false, error: { reason: "NotFound" } })
  })

  it("config --set validates against the manifest's schema and prints per-field errors", async () => {
    const f = folders([])
    const schema = {
      type: "object",
      properties: {
        apiKey: { type: "string", minLength: 1 },
        port: { type: "integer", minimum: 1 },
        tags: { type: "array", items: { type: "string" } }
      },
      required: ["apiKey"],
      additionalProperties: false
    }
    writeFileSync(
      join(f.folder, "agent-schema.ndp"),
      repackage("agent-full", (m) => ({ ...m, name: "agent-schema", config: { schema } }))
    )
    const bad = await ndp([
      "plugins",
      "config",
      "agent-schema",
      "--set",
      "port=abc",
      "--set",
      "extra=1",
      ...f.args
    ])
    expect(bad.code).toBe(4)
    expect(bad.stderr).toContain("error [InvalidConfig]: invalid configuration for plugin agent-schema")
    expect(bad.stderr).toContain("  apiKey: is required")
    expect(bad.stderr).toContain("  port: must be integer")
    expect(bad.stderr).toContain("  extra: is not a known setting")

    const badJson = await ndp(["plugins", "config", "agent-schema", "--set", "port=0", ...f.args, "--json"])
    expect(badJson.code).toBe(4)
    expect(JSON.parse(badJson.stdout)).toMatchObject({
      ok: false,
      error: {
        tag: "ManagerError",
        reason: "InvalidConfig",
        issues: expect.arrayContaining([
          { path: "apiKey", message: "is required" },
          { path: "port", message: "must be >= 1" }
        ])
      }
    })

    // Values parse as JSON when they can (8080, ["a"]), else stay text (k-1).
    const ok = await ndp([
      "plugins",
      "config",
      "agent-schema",
      "--set",
      "apiKey=k-1",
      "--set",
      "port=8080",
      "--set",
      'tags=["a"]',
      ...f.args
    ])
    expect(ok.code).toBe(0)
    const shown = await ndp(["plugins", "config", "agent-schema", ...f.args, "--json"])
    expect(JSON.parse(shown.stdout)).toEqual({
      ok: true,
      id: "agent-schema",
      config: { apiKey: "k-1", port: 8080, tags: ["a"] }
    })

    const malformed = await ndp(["plugins", "config", "agent-schema", "--set", "novalue", ...f.args])
    expect(malformed.code).toBe(1)
    expect(malformed.stderr).toContain('--set "novalue" is not key=value')
  })

  it("enable --allow-network grants networks (validated, canonical) and list shows them", async () => {
    const f = folders(["agent-full"])
    const granted = await ndp([
      "plugins",
      "enable",
      "agent-full",
      "--allow-network",
      "192.168.1.0/24",
      "--allow-network",
      "NAS.Local",
      "--allow-network",
      "FD00:0::/8",
      ...f.args,
      "--json"
    ])
    expect(granted.code).toBe(0)
    const networks = ["192.168.1.0/24", "nas.local", "fd00::/8"]
    expect(JSON.parse(granted.stdout)).toMatchObject({
      ok: true,
      plugin: { id: "agent-full", enabled: true, allowedNetworks: networks }
    })
    const listed = await ndp(["plugins", "list", ...f.args])
    expect(listed.stdout).toContain("networks: 192.168.1.0/24, nas.local, fd00::/8")

    // A block with host bits set is refused, naming the block it would have granted; nothing changes.
    const refused = await ndp(["plugins", "enable", "agent-full", "--allow-network", "10.1.2.3/8", ...f.args])
    expect(refused.code).toBe(4)
    expect(refused.stderr).toContain("error [InvalidNetwork]")
    expect(refused.stderr).toContain('"10.1.2.3/8" is not valid: it has bits set after the first 8')
    expect(refused.stderr).toContain("the block is 10.0.0.0/8")
    const unchanged = pluginsOf((await ndp(["plugins", "list", ...f.args, "--json"])).stdout)
    expect(unchanged[0]?.allowedNetworks).toEqual(networks)

    const both = await ndp([
      "plugins",
      "enable",
      "agent-full",
      "--no-networks",
      "--allow-network",
      "10.0.0.1",
      ...f.args
    ])
    expect(both.code).toBe(1)
    expect(both.stderr).toContain("give either --no-networks or --allow-network")
    const cleared = await ndp(["plugins", "enable", "agent-full", "--no-networks", ...f.args, "--json"])
    expect(JSON.parse(cleared.stdout)).toMatchObject({ ok: true, plugin: { allowedNetworks: [] } })
  })

  it("enable --allow-write grants library write access, --read-only takes it back; list shows it", async () => {
    const f = folders(["wasi-escape"])
    const granted = await ndp([
      "plugins",
      "enable",
      "wasi-escape",
      "--library",
      "1",
      "--allow-write",
      ...f.args,
      "--json"
    ])
    expect(granted.code).toBe(0)
    expect(JSON.parse(granted.stdout)).toMatchObject({
      ok: true,
      plugin: { id: "wasi-escape", enabled: true, libraries: [1], allowWrite: true }
    })
    const listed = await ndp(["plugins", "list", ...f.args])
    expect(listed.stdout).toContain("library write access")
    const both = await ndp(["plugins", "enable", "wasi-escape", "--allow-write", "--read-only", ...f.args])
    expect(both.code).toBe(1)
    expect(both.stderr).toContain("give either --allow-write or --read-only")
    const back = await ndp(["plugins", "enable", "wasi-escape", "--read-only", ...f.args, "--json"])
    expect(JSON.parse(back.stdout)).toMatchObject({ ok: true, plugin: { allowWrite: false } })
  })

  it("rescan registers new files and forgets removed ones; list names the folders and warns when one is missing", async () => {
    const f = folders(["agent-full"])
    const missing = join(f.dir, "nowhere")
    const [listed, empty] = await Promise.all([
      ndp(["plugins", "list", ...f.args]),
      ndp(["plugins", "list", "--folder", missing, "--data-dir", join(f.dir, "other-data")])
    ])
    const [header, first] = listed.stdout.split("\n")
    expect(header).toBe(`plugins folder ${f.folder} (data ${f.dataDir})`)
    expect(first).toMatch(/^agent-full +disabled +agent-full 1\.0\.0/)
    expect(listed.stderr).not.toContain("does not exist")
    expect(empty.code).toBe(0)
    expect(empty.stdout).toContain("(no plugins)")
    expect(empty.stderr).toContain(`warning: the plugins folder ${missing} does not exist`)
    copyFileSync(fixture("agent-partial"), join(f.folder, "partial.ndp"))
    rmSync(join(f.folder, "agent-full.ndp"))
    const { code, stdout } = await ndp(["plugins", "rescan", ...f.args, "--json"])
    expect(code).toBe(0)
    const entries = pluginsOf(stdout)
    expect(entries.map((e) => [e.id, e.enabled, e.capabilities])).toEqual([
      ["partial", false, ["MetadataAgent"]]
    ])
  })

  it("reads the folders from a settings file or the environment; bad settings exit 1 naming the key", async () => {
    const f = folders(["agent-full"])
    const toml = join(f.dir, "ndp.toml")
    writeFileSync(
      toml,
      `[Plugins]\nFolder = ${JSON.stringify(f.folder)}\nDataFolder = ${JSON.stringify(f.dataDir)}\n`
    )
    const [fromFile, fromEnv] = await Promise.all([
      ndp(["plugins", "list", "--config-file", toml, "--json"]),
      ndp(["plugins", "list", "--json"], { NDP_PLUGINS_FOLDER: f.folder, NDP_PLUGINS_DATAFOLDER: f.dataDir })
    ])
    expect(fromFile.code).toBe(0)
    expect(pluginsOf(fromFile.stdout).map((e) => e.id)).toEqual(["agent-full"])
    expect(pluginsOf(fromEnv.stdout).map((e) => e.id)).toEqual(["agent-full"])

    writeFileSync(toml, `[Plugins]\nFolder = ${JSON.stringify(f.folder)}\nCacheSize = "lots"\n`)
    const bad = await ndp(["plugins", "list", "--config-file", toml, "--json"])
    expect(bad.code).toBe(1)
    expect(JSON.parse(bad.stdout)).toMatchObject({
      ok: false,
      error: {
        tag: "ManagerConfigError",
        reason: "Invalid",
        message: expect.stringContaining("Plugins.CacheSize in")
      }
    })
  })
})

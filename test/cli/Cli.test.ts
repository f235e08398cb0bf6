/** The `ndp` program as a user runs it: a real process, real packages, exit codes and JSON. */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { unzipSync, zipSync } from "fflate"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { CLI_TEST_TIMEOUT_MS, killAll, ndp } from "../support/cli.js"
import { fixture } from "../support/fixtures.js"
import { pluginFolder, wat } from "../support/wat.js"

const temps: Array<string> = []
afterAll(() => {
  killAll()
  for (const dir of temps) rmSync(dir, { recursive: true, force: true })
})
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "ndp-cli-"))
  temps.push(dir)
  return dir
}

const ESC = "\u001b"
const manifestOf = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  author: "ndp-engine tests",
  version: "1.0.0",
  ...extra
})
/** A package file holding `manifest` and `wasm`, built in memory. */
const packageFile = (dir: string, id: string, manifest: Record<string, unknown>, wasm: Uint8Array) => {
  const path = join(dir, `${id}.ndp`)
  writeFileSync(
    path,
    zipSync({ "manifest.json": new TextEncoder().encode(JSON.stringify(manifest)), "plugin.wasm": wasm })
  )
  return path
}
/** The manifest and module of a built fixture. */
const unpack = (id: string) => {
  const entries = unzipSync(readFileSync(fixture(id)))
  return {
    manifest: JSON.parse(new TextDecoder().decode(entries["manifest.json"])) as Record<string, unknown>,
    wasm: entries["plugin.wasm"]!
  }
}

describe("ndp inspect", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
  it("prints the package in the {ok: true} envelope and exits 0 when it can load", async () => {
    const { code, stdout } = await ndp(["inspect", fixture("scrobbler"), "--json"])
    expect(code).toBe(0)
    const report = JSON.parse(stdout) as Record<string, unknown>
    expect(report).toMatchObject({
      ok: true,
      id: "scrobbler",
      abi: "extism",
      loadable: true,
      capabilities: ["Scrobbler"],
      problems: [],
      warnings: [],
      manifest: { name: "scrobbler", permissions: { users: {} } }
    })
    expect(report.sha256).toMatch(/^[0-9a-f]{64}$/)
    expect(report.exports).toContain("nd_scrobbler_scrobble")
    expect(report.imports).toContainEqual({ module: "extism:host/env", name: "error_set" })
  })

  it("says ok: false with the problems and exits 3 when an import has no permission", async () => {
    const { code, stdout } = await ndp(["inspect", fixture("forbidden-import"), "--json"])
    expect(code).toBe(3)
    const report = JSON.parse(stdout) as { ok: boolean; error: { tag: string }; problems: Array<string> }
    expect(report).toMatchObject({ ok: false, loadable: false, error: { tag: "PluginLoadError" } })
    expect(report.problems.join("\n")).toContain('needs the "kvstore" permission')
  })

  it("an unreadable package is the same error envelope, exit 3", async () => {
    const bad = join(tempDir(), "bad.ndp")
    writeFileSync(bad, "hello")
    const [asJson, asText] = await Promise.all([ndp(["inspect", bad, "--json"]), ndp(["inspect", bad])])
    expect(asJson.code).toBe(3)
    expect(JSON.parse(asJson.stdout)).toEqual({
      ok: false,
      error: {
        tag: "PluginLoadError",
        reason: "Package",
        message: expect.stringContaining("package is not a zip archive")
      }
    })
    expect(asText.code).toBe(3)
    expect(asText.stderr).toContain(`error [Package]: cannot read ${bad}`)
  })

  it("warns when a module exports no capability function, and names the ABI a foreign module targets", async () => {
    const dir = tempDir()
    const modules = {
      bindgen: `(module (import "wbg" "__wbindgen_throw" (func (param i32 i32)))
        (func (export "greet")))`,
      emscripten: `(module (import "env" "emscripten_resize_heap" (func (param i32) (result i32)))
        (import "env" "__syscall_openat" (func (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1) (func (export "main") (result i32) (i32.const 0)))`,
      command: `(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1) (func (export "_start")))`
    }
    const paths = Object.fromEntries(
      await Promise.all(
        Object.entries(modules).map(
          async ([id, text]) => [id, packageFile(dir, id, manifestOf(id), await wat(text))] as const
        )
      )
    )
    // A component: the component-model header (version 0x0d, layer 1) before any section.
    const component = packageFile(
      dir,
      "component",
      manifestOf("component"),
      Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00)
    )
    const [users, bindgen, emscripten, command, componentResult] = await Promise.all([
      ndp(["inspect", fixture("host-users")]),
      ndp(["inspect", paths["bindgen"]!, "--json"]),
      ndp(["inspect", paths["emscripten"]!, "--json"]),
      ndp(["inspect", paths["command"]!, "--json"]),
      ndp(["inspect", component, "--json"])
    ])
    // Loadable, but nothing in Navidrome would ever call it.
    expect(users.code).toBe(0)
    expect(users.stdout).toContain("warning: exports none of the capability functions")
    expect(users.stdout).toContain("Navidrome will never call it")

    const report = (r: { stdout: string }) =>
      JSON.parse(r.stdout) as { abi: string; warnings: Array<string>; problems: Array<string> }
    expect(bindgen.code).toBe(3)
    expect(report(bindgen).abi).toBe("wasm-bindgen")
    expect(report(bindgen).warnings.join("\n")).toMatch(/wasm-bindgen .*__wbindgen_throw.*Extism PDK/)
    expect(report(emscripten).abi).toBe("emscripten")
    expect(report(emscripten).warnings.join("\n")).toContain("Emscripten")
    expect(report(command).abi).toBe("wasi-command")
    expect(report(command).warnings.join("\n")).toContain("WASI command (exports _start")
    expect(report(command).warnings.join("\n")).toContain("exports none of the capability functions")
    expect(componentResult.code).toBe(3)
    expect(JSON.parse(componentResult.stdout)).toMatchObject({
      ok: false,
      error: { tag: "PluginLoadError", hint: expect.stringContaining("WebAssembly component") }
    })
  })
})

describe("ndp call", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
  it("calls an export with input and config and prints {ok, output, ms}", async () => {
    const { code, stdout } = await ndp([
      "call",
      fixture("agent-full"),
      "config_value",
      "--input",
      '{"key":"greeting"}',
      "--config",
      "greeting=hi=there",
      "--json"
    ])
    expect(code).toBe(0)
    const result = JSON.parse(stdout) as { ok: boolean; output: unknown; ms: number }
    expect(result.ok).toBe(true)
    expect(result.output).toEqual({ value: "hi=there", exists: true })
    expect(result.ms).toBeGreaterThan(0)
  })

  it("reads --input from a file (@FILE) and from standard input (-)", async () => {
    const file = join(tempDir(), "input.json")
    writeFileSync(file, '{"key":"greeting"}\n')
    const args = ["call", fixture("agent-full"), "config_value", "--config", "greeting=hello", "--json"]
    const [fromFile, fromStdin, missing] = await Promise.all([
      ndp([...args, "--input", `@${file}`]),
      ndp([...args, "--input", "-"], {}, { input: '{"key": "greeting"}' }),
      ndp([...args, "--input", `@${file}.missing`])
    ])
    for (const r of [fromFile, fromStdin]) {
      expect(r.code).toBe(0)
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, output: { value: "hello", exists: true } })
    }
    expect(missing.code).toBe(1)
    expect(JSON.parse(missing.stdout)).toMatchObject({
      ok: false,
      error: {
        reason: "InvalidInput",
        message: expect.stringContaining(`cannot read --input file ${file}.missing`)
      }
    })
  })

  it("exits 2 with the error's tag when the call fails", async () => {
    const { code, stdout } = await ndp([
      "call",
      fixture("loop-export"),
      "nd_get_artist_biography",
      "--timeout-ms",
      "200",
      "--json"
    ])
    expect(code).toBe(2)
    expect(JSON.parse(stdout)).toMatchObject({ ok: false, error: { tag: "PluginTimeoutError" } })
  })

  it("exits 3 when the plugin cannot load", async () => {
    const { code, stdout } = await ndp([
      "call",
      fixture("unknown-module"),
      "nd_get_artist_biography",
      "--json"
    ])
    expect(code).toBe(3)
    expect(JSON.parse(stdout)).toMatchObject({ ok: false, error: { tag: "PluginLoadError", reason: "Link" } })
  })

  it("says where --input stops being JSON, and lists the exports when the export is unknown", async () => {
    const [text, json, unknown] = await Promise.all([
      ndp(["call", fixture("agent-full"), "echo", "--input", '{"a": 1,\n "b": nope}']),
      ndp(["call", fixture("agent-full"), "echo", "--input", "{nope", "--json"]),
      ndp(["call", fixture("agent-full"), "nd_get_artist_bio", "--json"])
    ])
    expect(text.code).toBe(1)
    expect(text.stderr).toContain("error [InvalidInput]: --input is not valid JSON: ")
    // The parser's own words (they vary with the Node version), and where when it says so.
    expect(text.stderr).toMatch(/--input is not valid JSON: .*JSON/)
    expect(json.code).toBe(1)
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      error: { tag: "UsageError", reason: "InvalidInput", message: expect.stringMatching(/line 1, column 2/) }
    })
    expect(unknown.code).toBe(1)
    const message = (JSON.parse(unknown.stdout) as { error: { message: string } }).error.message
    expect(message).toContain('plugin agent-full has no export "nd_get_artist_bio"; its exports are ')
    expect(message).toContain("nd_get_artist_biography")
    expect(message).toContain("echo")
  })

  it("--user and --admin add users to the embedded directory and allow them for the plugin", async () => {
    const dataDir = tempDir()
    const { code, stdout } = await ndp([
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
    ])
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
  })

  it("--library ID=PATH replaces the demo library, so a user's library may be 1; a bare ID allows an existing one", async () => {
    const root = tempDir()
    const music = join(root, "music")
    mkdirSync(music)
    writeFileSync(join(music, "song.flac"), "not really audio")
    const libraries = (stdout: string) =>
      (JSON.parse(stdout) as { output: { result: Array<{ id: number; name: string }> } }).output.result.map(
        (l) => [l.id, l.name]
      )
    const call = (dataDir: string, ...library: Array<string>) =>
      ndp([
        "call",
        fixture("host-library"),
        "call_library_getalllibraries",
        ...library.flatMap((l) => ["--library", l]),
        "--data-dir",
        dataDir,
        "--json"
      ])
    const [mine, demo, bad] = await Promise.all([
      call(join(root, "data"), `1=${music}`),
      call(join(root, "demo-data"), "1"),
      ndp(["call", fixture("host-library"), "noop", "--library", "seven", "--json"])
    ])
    expect(mine.code).toBe(0)
    expect(libraries(mine.stdout)).toEqual([[1, "music"]])
    // Without a named folder the demo library is still there, as library 1.
    expect(demo.code).toBe(0)
    expect(libraries(demo.stdout)).toEqual([[1, "Demo Library"]])
    expect(bad.code).toBe(1)
    expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false, error: { reason: "InvalidLibrary" } })
    // The replacement is kept in the data folder: a bare 1 is the user's library from now on.
    const again = await call(join(root, "data"), "1")
    expect(libraries(again.stdout)).toEqual([[1, "music"]])
  })

  it("--wait-ms keeps the plugin loaded so its task queue runs; the task's state outlives the process", async () => {
    const dataDir = tempDir()
    const config = ["--config", "init_queue=jobs", "--config", "init_config={}"]
    const enqueued = await ndp([
      "call",
      fixture("host-taskqueue"),
      "call_task_enqueue",
      "--input",
      '{"queueName":"jobs","payload":"aGk="}',
      ...config,
      "--data-dir",
      dataDir,
      "--wait-ms",
      "10000",
      "--json"
    ])
    expect(enqueued.code).toBe(0)
    const taskId = (JSON.parse(enqueued.stdout) as { output: { result: string } }).output.result
    const got = await ndp([
      "call",
      fixture("host-taskqueue"),
      "call_task_get",
      "--input",
      JSON.stringify({ taskId }),
      "--data-dir",
      dataDir,
      "--json"
    ])
    expect(JSON.parse(got.stdout)).toMatchObject({
      ok: true,
      output: { result: { status: "completed", message: "done jobs aGk= 1", attempt: 1 } }
    })
  })
})

describe("usage, help and logs", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
  it("help is concise, names the whole command, shows optional flags in brackets, and has no colour off a terminal", async () => {
    const [list, call, root] = await Promise.all([
      ndp(["plugins", "list", "--help"]),
      ndp(["call", "--help"]),
      ndp(["--help"])
    ])
    expect(list.code).toBe(0)
    expect(list.stdout).toContain(
      "Usage:\n  ndp plugins list [--folder DIR] [--data-dir DIR] [--config-file FILE] [--database URL] [--json]"
    )
    expect(list.stdout).not.toContain("$ list")
    expect(call.stdout).toContain("[--config key=value]…")
    expect(call.stdout).toContain("[--user NAME]…")
    expect(call.stdout).toMatch(/--input JSON\|@FILE\|- +the call's input/)
    expect(call.stdout).not.toContain("A user-defined piece of text")
    expect(root.stdout).toMatch(/^ {2}pack +build a \.ndp/m)
    for (const r of [list, call, root]) expect(r.stdout + r.stderr).not.toContain(ESC)
  })

  it("usage errors suggest the flag or command meant, and are the error envelope with --json", async () => {
    const [flag, flagJson, command, missing, level] = await Promise.all([
      ndp(["plugins", "list", "--jsno"]),
      ndp(["plugins", "list", "--jsno", "--json"]),
      ndp(["plugins", "lst"]),
      ndp(["call", fixture("agent-full"), "--json"]),
      ndp(["inspect", fixture("agent-full"), "--log-level", "loud", "--json"])
    ])
    expect(flag.code).toBe(1)
    expect(flag.stderr).toContain("Received unknown argument: '--jsno'")
    expect(flag.stderr).toContain("did you mean --json?")
    expect(flag.stderr).not.toContain(ESC)
    expect(flagJson.code).toBe(1)
    expect(JSON.parse(flagJson.stdout)).toEqual({
      ok: false,
      error: { tag: "UsageError", reason: "Usage", message: expect.stringContaining("did you mean --json?") }
    })
    expect(command.code).toBe(1)
    expect(command.stderr).toContain('unknown command "lst" for ndp plugins; did you mean "list"?')
    expect(missing.code).toBe(1)
    expect(JSON.parse(missing.stdout)).toMatchObject({
      ok: false,
      error: { tag: "UsageError", message: expect.stringContaining("<export>") }
    })
    expect(level.code).toBe(1)
    expect(JSON.parse(level.stdout)).toMatchObject({
      ok: false,
      error: { tag: "UsageError", message: expect.stringContaining('got "loud"') }
    })
  })

  it("--log-level works anywhere on the line; logs go to stderr without colour off a terminal", async () => {
    const dir = tempDir()
    const [after, middle] = await Promise.all([
      ndp(["plugins", "list", "--data-dir", dir, "--json", "--log-level", "debug"]),
      ndp(["inspect", "--log-level=debug", fixture("agent-full"), "--json"])
    ])
    for (const r of [after, middle]) {
      expect(r.code).toBe(0)
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: true })
      expect(r.stderr).toContain("DEBUG")
      expect(r.stderr).not.toContain(ESC)
    }
  })
})

describe("ndp pack", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
  it("packs a folder into <folder>.ndp that inspects as loadable, byte for byte the same every time", async () => {
    const dir = tempDir()
    const { manifest, wasm } = unpack("agent-full")
    const source = pluginFolder(dir, "my-agent", manifest, wasm)
    const first = await ndp(["pack", source, "--json"], {}, { cwd: dir })
    expect(first.code).toBe(0)
    const packed = JSON.parse(first.stdout) as { ok: boolean; file: string; id: string; sha256: string }
    expect(packed).toMatchObject({
      ok: true,
      file: join(dir, "my-agent.ndp"),
      id: "my-agent",
      capabilities: ["MetadataAgent"]
    })
    const [inspected, again] = await Promise.all([
      ndp(["inspect", packed.file, "--json"]),
      ndp(["pack", join(source, "plugin.wasm"), join(source, "manifest.json"), "-o", join(dir, "other.ndp")])
    ])
    expect(inspected.code).toBe(0)
    expect(JSON.parse(inspected.stdout)).toMatchObject({ ok: true, id: "my-agent", sha256: packed.sha256 })
    expect(again.code).toBe(0)
    expect(again.stdout).toContain(`packed ${join(dir, "other.ndp")} (other,`)
    expect(readFileSync(join(dir, "other.ndp"))).toEqual(readFileSync(packed.file))
  })

  it("refuses, writing nothing, what loading would refuse: permissions, manifest, memory, a foreign ABI", async () => {
    const dir = tempDir()
    const forbidden = unpack("forbidden-import")
    const agent = unpack("agent-full")
    const sources = {
      permission: pluginFolder(dir, "permission", forbidden.manifest, forbidden.wasm),
      manifest: pluginFolder(dir, "manifest", { name: "no-version", author: "x" }, agent.wasm),
      memory: pluginFolder(
        dir,
        "memory",
        manifestOf("memory"),
        await wat(`(module (memory (export "memory") 5000) (func (export "nd_on_init")))`)
      ),
      foreign: pluginFolder(
        dir,
        "foreign",
        manifestOf("foreign"),
        await wat(`(module (import "env" "emscripten_resize_heap" (func (param i32) (result i32)))
          (memory (export "memory") 1) (func (export "nd_on_init")))`)
      )
    }
    const results = await Promise.all(
      Object.values(sources).map((source) => ndp(["pack", source, "--json"], {}, { cwd: dir }))
    )
    const [permission, manifest, memory, foreign] = results.map((r) => {
      expect(r.code).toBe(3)
      return (JSON.parse(r.stdout) as { ok: boolean; error: Record<string, unknown> }).error
    })
    expect(permission).toMatchObject({
      tag: "PackError",
      reason: "Invalid",
      problems: [expect.stringContaining('needs the "kvstore" permission; declare it in manifest.json')]
    })
    expect(manifest).toMatchObject({ reason: "Invalid", problems: [expect.stringContaining("version")] })
    expect(memory).toMatchObject({ reason: "Invalid", message: expect.stringMatching(/memory/i) })
    expect(foreign).toMatchObject({
      reason: "Invalid",
      problems: [expect.stringContaining("emscripten_resize_heap")],
      hint: expect.stringContaining("seems built with Emscripten")
    })
    for (const name of Object.keys(sources)) expect(existsSync(join(dir, `${name}.ndp`))).toBe(false)

    const [notNdp, notFolder, text] = await Promise.all([
      ndp(["pack", sources.permission, "-o", join(dir, "out.zip"), "--json"]),
      ndp(["pack", join(dir, "nowhere"), "--json"]),
      ndp(["pack", sources.permission], {}, { cwd: dir })
    ])
    expect(notNdp.code).toBe(1)
    expect(JSON.parse(notNdp.stdout)).toMatchObject({
      error: { reason: "Usage", message: expect.stringContaining("must end in .ndp") }
    })
    expect(notFolder.code).toBe(1)
    expect(JSON.parse(notFolder.stdout)).toMatchObject({
      error: { reason: "Usage", message: expect.stringContaining("is not a folder") }
    })
    expect(text.code).toBe(3)
    expect(text.stderr).toContain("error [Invalid]: permission would not load")
    expect(text.stderr).toContain('  problem: imports "extism:host/user" "kvstore_get"')
  })
})

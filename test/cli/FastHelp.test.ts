/**
 * `ndp … --help` is answered by bin/ndp.js from the help texts written at build time, without
 * loading the program: it must print exactly what the program itself prints, for every command.
 */
import { describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../../", import.meta.url))
const run = (entry: string, args: ReadonlyArray<string>) =>
  spawnSync(process.execPath, [entry, ...args], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "" },
    timeout: 120_000
  })

describe("ndp --help from the built help texts", () => {
  const helps = JSON.parse(readFileSync(`${root}dist/cli/help.json`, "utf8")) as Record<string, unknown>

  it("covers every command, and prints what the program prints", () => {
    const keys = Object.keys(helps)
    expect(keys).toEqual(expect.arrayContaining(["", "call", "inspect", "pack", "plugins", "plugins enable"]))
    for (const key of keys) {
      const args = [...(key === "" ? [] : key.split(" ")), "some-argument", "--help"]
      const fast = run("bin/ndp.js", args)
      const program = run("dist/cli/main.js", args)
      expect(fast.status, key).toBe(0)
      expect(fast.stdout, key).toBe(program.stdout)
      expect(fast.stdout, key).toContain(key === "" ? "ndp" : `ndp ${key}`)
    }
  }, 600_000)
})

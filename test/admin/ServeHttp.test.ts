/** `ndp serve --http` as a real process: the address, the token shown once, and its hash kept. */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { tokenFile } from "../../src/admin/AdminAuth.js"
import { parseListen } from "../../src/cli/Serve.js"
import { CLI_TEST_TIMEOUT_MS, killAll, ndp, startNdp } from "../support/cli.js"
import { fixture } from "../support/fixtures.js"

const temps: Array<string> = []
afterAll(() => {
  killAll()
  for (const dir of temps) rmSync(dir, { recursive: true, force: true })
})

describe("ndp serve --http", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
  it("reads PORT, HOST:PORT and [IPv6]:PORT; 127.0.0.1 when only a port is given", () => {
    expect(parseListen("4533")).toEqual({ host: "127.0.0.1", port: 4533 })
    expect(parseListen("0.0.0.0:80")).toEqual({ host: "0.0.0.0", port: 80 })
    expect(parseListen("[::1]:4533")).toEqual({ host: "::1", port: 4533 })
    expect(parseListen("localhost:99999")).toBeUndefined()
    expect(parseListen("a:b")).toBeUndefined()
  })

  it("prints the address and a generated token once, keeps only its hash, and serves the API with it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ndp-serve-http-"))
    temps.push(dir)
    const folder = join(dir, "plugins")
    const dataDir = join(dir, "data")
    mkdirSync(folder)
    copyFileSync(fixture("configurable"), join(folder, "configurable.ndp"))
    const args = ["serve", "--http", "127.0.0.1:0", "--folder", folder, "--data-dir", dataDir]
    const env = { NDP_ADMIN_TOKEN: "" }

    const first = startNdp(args, env)
    await first.waitFor(/^admin token \(shown once.*\): (\S+)$/m)
    await first.waitFor(/^admin: (http:\/\/127\.0\.0\.1:\d+\/)$/m)
    const url = /^admin: (http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(first.out.stdout)![1]!
    const token = /^admin token \(shown once.*\): (\S+)$/m.exec(first.out.stdout)![1]!
    expect(readFileSync(tokenFile(dataDir), "utf8")).not.toContain(token)
    const listed = await fetch(`${url}api/plugins`, { headers: { authorization: `Bearer ${token}` } })
    expect(listed.status).toBe(200)
    expect(await listed.json()).toMatchObject([{ id: "configurable" }])
    expect((await fetch(`${url}api/plugins`)).status).toBe(401)
    first.child.kill("SIGTERM")
    expect((await first.exited).code).toBe(0)

    // Second start: the same token works, and none is printed.
    const second = startNdp(args, env)
    await second.waitFor(/^admin: (http:\/\/127\.0\.0\.1:\d+\/)$/m)
    const again = /^admin: (http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(second.out.stdout)![1]!
    expect(
      (await fetch(`${again}api/plugins`, { headers: { authorization: `Bearer ${token}` } })).status
    ).toBe(200)
    expect(second.out.stdout).not.toContain("admin token")
    second.child.kill("SIGTERM")
    expect((await second.exited).code).toBe(0)
  })

  it("a malformed --http is a usage error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ndp-serve-http-"))
    temps.push(dir)
    const result = await ndp([
      "serve",
      "--http",
      "here:port",
      "--folder",
      dir,
      "--data-dir",
      join(dir, "data")
    ])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain("--http takes PORT, HOST:PORT or [IPv6]:PORT")
  })
})

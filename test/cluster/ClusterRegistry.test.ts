/**
 * The registry of a cluster lives in its PostgreSQL database: two `ndp serve --database` nodes on
 * one plugins folder, a change made through one node's admin API (or by `ndp plugins … --database`
 * from a third process) reaches the plugin on the other node.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { CLI_TEST_TIMEOUT_MS, killAll, ndp, startNdp } from "../support/cli.js"
import { fixture } from "../support/fixtures.js"
import { postgresServer } from "../support/postgres.js"
import { until } from "../support/wait.js"

const token = "cluster-registry-test-token"
const temps: Array<string> = []
let scope: Scope.CloseableScope
let url = ""

beforeAll(async () => {
  scope = await Effect.runPromise(Scope.make())
  const server = await Effect.runPromise(Scope.extend(postgresServer, scope))
  url = await Effect.runPromise(server.createDatabase("registry"))
}, 120_000)

afterAll(async () => {
  killAll()
  await Effect.runPromise(Scope.close(scope, Exit.void))
  for (const dir of temps) rmSync(dir, { recursive: true, force: true })
}, 120_000)

const api = (base: string, method: string, path: string, body?: unknown) =>
  fetch(`${base}api/${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })

/** The biography the node's `cluster-greeter` answers (its configured greeting), or why not. */
const greetingOn = async (base: string): Promise<string> => {
  const response = await api(base, "POST", "plugins/cluster-greeter/call", {
    export: "nd_get_artist_biography",
    input: JSON.stringify({ id: "1", name: "Artist" })
  })
  const body = (await response.json()) as { output?: string | null }
  if (!response.ok || typeof body.output !== "string") return `(${response.status})`
  return (JSON.parse(body.output) as { biography: string }).biography
}

const lines = (node: ReturnType<typeof startNdp>, pattern: RegExp) =>
  node.out.stdout.split("\n").filter((line) => pattern.test(line)).length

describe("the registry of a cluster", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
  it("a config change or a disable made on one node, or by ndp plugins --database, reaches the other node", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ndp-cluster-registry-"))
    temps.push(dir)
    // Every node serves the same packages from the same path (docs/cluster.md).
    const folder = join(dir, "plugins")
    mkdirSync(folder)
    copyFileSync(fixture("cluster-greeter"), join(folder, "cluster-greeter.ndp"))
    const cli = (...args: Array<string>) =>
      ndp([...args, "--folder", folder, "--data-dir", join(dir, "cli"), "--database", url])

    const enabled = await cli("plugins", "enable", "cluster-greeter")
    expect(enabled.code, enabled.stderr).toBe(0)
    // The node's own SQLite registry is not the one it reads: nothing is enabled there.
    const local = await ndp(["plugins", "list", "--json", "--folder", folder, "--data-dir", join(dir, "cli")])
    expect(JSON.parse(local.stdout)).toMatchObject({ plugins: [{ id: "cluster-greeter", enabled: false }] })

    const start = (name: string) =>
      startNdp(
        [
          "serve",
          "--folder",
          folder,
          "--data-dir",
          join(dir, name),
          "--database",
          url,
          "--http",
          "127.0.0.1:0"
        ],
        { NDP_ADMIN_TOKEN: token, NDP_PLUGINS_WORKERS: "1" }
      )
    const nodes = [start("a"), start("b")]
    for (const node of nodes) await node.waitFor(/^cluster-greeter: loaded/m)
    const [a, b] = await Promise.all(
      nodes.map(async (node) => {
        await node.waitFor(/^admin: (http:\S+)/m)
        return /^admin: (http:\S+)/m.exec(node.out.stdout)![1]!
      })
    )
    expect(await greetingOn(b!)).toBe("(none)")

    // A config saved through node A's admin API: node B reloads the plugin with it.
    const saved = await api(a!, "PUT", "plugins/cluster-greeter/config", {
      config: { greeting: "hello from a" }
    })
    expect(saved.status, await saved.text()).toBe(200)
    const savedAt = Date.now()
    await until(
      "node B to answer with the new greeting",
      async () => (await greetingOn(b!)) === "hello from a"
    )
    console.log(`config saved on node A → answered by node B in ${Date.now() - savedAt} ms`)

    // Disabled through node A: node B unloads it.
    const disabledOnB = lines(nodes[1]!, /^cluster-greeter: disabled/)
    const disabled = await api(a!, "POST", "plugins/cluster-greeter/disable")
    expect(disabled.status, await disabled.text()).toBe(200)
    await until(
      "node B to unload the plugin",
      () => lines(nodes[1]!, /^cluster-greeter: disabled/) > disabledOnB
    )
    expect(await greetingOn(b!)).not.toBe("hello from a")

    // Enabled again by the CLI of a third process on the same database: both nodes load it, with
    // the configuration node A saved.
    const loaded = nodes.map((node) => lines(node, /^cluster-greeter: loaded/))
    const again = await cli("plugins", "enable", "cluster-greeter")
    expect(again.code, again.stderr).toBe(0)
    await until("both nodes to load the plugin again", () =>
      nodes.every((node, i) => lines(node, /^cluster-greeter: loaded/) > loaded[i]!)
    )
    for (const base of [a!, b!]) expect(await greetingOn(base)).toBe("hello from a")

    for (const node of nodes) node.child.kill("SIGTERM")
    for (const node of nodes) expect((await node.exited).code).toBe(0)
  })
})

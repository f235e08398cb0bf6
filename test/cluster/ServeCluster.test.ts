/**
 * Three `ndp serve` processes as the nodes of one cluster on a PostgreSQL server started by the
 * test. The `cluster-ticker` plugin schedules a job every second from `nd_on_init`: it must run on
 * one node only, fire once per tick across the cluster, and move to another node when its owner is
 * killed with SIGKILL.
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

const temps: Array<string> = []
let scope: Scope.CloseableScope
let url = ""

beforeAll(async () => {
  scope = await Effect.runPromise(Scope.make())
  url = (await Effect.runPromise(Scope.extend(postgresServer, scope))).url
}, 120_000)

afterAll(async () => {
  killAll()
  await Effect.runPromise(Scope.close(scope, Exit.void))
  for (const dir of temps) rmSync(dir, { recursive: true, force: true })
}, 120_000)

type Node = ReturnType<typeof startNdp>

const fired = (node: Node) => node.out.stderr.match(/ticker fired tick/g)?.length ?? 0
const initialised = (node: Node) => node.out.stderr.match(/ticker initialised/g)?.length ?? 0
const total = (nodes: ReadonlyArray<Node>) => nodes.reduce((sum, node) => sum + fired(node), 0)

/** Polls until `check` holds; fails the test with `what` after a generous deadline. */
const until = async (what: string, check: () => boolean, timeoutMs = 120_000) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Counts the callbacks of the whole cluster over at least `seconds` of real time. */
const countOver = async (nodes: ReadonlyArray<Node>, seconds: number) => {
  const before = total(nodes)
  const started = Date.now()
  await until(`${seconds} s to pass`, () => Date.now() - started >= seconds * 1000)
  return { count: total(nodes) - before, elapsed: (Date.now() - started) / 1000 }
}

const startNode = async (index: number) => {
  const dir = mkdtempSync(join(tmpdir(), `ndp-node${index}-`))
  temps.push(dir)
  const folder = join(dir, "plugins")
  const dataDir = join(dir, "data")
  mkdirSync(folder)
  copyFileSync(fixture("cluster-ticker"), join(folder, "cluster-ticker.ndp"))
  const enabled = await ndp([
    "plugins",
    "enable",
    "cluster-ticker",
    "--folder",
    folder,
    "--data-dir",
    dataDir
  ])
  expect(enabled.code, enabled.stderr).toBe(0)
  return startNdp(["serve", "--folder", folder, "--data-dir", dataDir, "--database", url], {
    NDP_PLUGINS_WORKERS: "1"
  })
}

describe("ndp serve as a cluster", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
  it("a job every second fires once per tick on 3 nodes, and moves to another node when its owner is killed", async () => {
    const nodes = await Promise.all([0, 1, 2].map(startNode))
    for (const node of nodes) await node.waitFor(/^cluster-ticker: loaded/m)
    await until("the first callback", () => total(nodes) > 0)

    const first = await countOver(nodes, 8)
    // 3 nodes firing independently would give about 3 × elapsed; load can only make it fewer.
    expect(first.count).toBeGreaterThan(0)
    expect(first.count).toBeLessThanOrEqual(Math.ceil(first.elapsed) + 1)
    // nd_on_init ran on one node, the owner, and only the owner fires.
    const owners = nodes.filter((node) => initialised(node) > 0)
    expect(owners).toHaveLength(1)
    const owner = owners[0]!
    expect(nodes.filter((node) => fired(node) > 0)).toEqual([owner])

    const killedAt = Date.now()
    owner.child.kill("SIGKILL")
    const survivors = nodes.filter((node) => node !== owner)
    await until("another node to take the plugin over", () => survivors.some((node) => fired(node) > 0))
    const failoverMs = Date.now() - killedAt
    console.log(`failover: owner killed → first callback on the new owner in ${failoverMs} ms`)
    const heirs = survivors.filter((node) => initialised(node) > 0)
    expect(heirs).toHaveLength(1)

    const second = await countOver(survivors, 8)
    expect(second.count).toBeGreaterThan(0)
    expect(second.count).toBeLessThanOrEqual(Math.ceil(second.elapsed) + 1)
    expect(survivors.filter((node) => fired(node) > 0)).toEqual(heirs)

    for (const node of survivors) node.child.kill("SIGTERM")
    for (const node of survivors) expect((await node.exited).code).toBe(0)
  })
})

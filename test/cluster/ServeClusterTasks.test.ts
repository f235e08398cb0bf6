/**
 * A task queue on a cluster of three `ndp serve` nodes sharing a PostgreSQL server started by the
 * test. The `cluster-tasks` plugin enqueues one task from `nd_on_init`, whose first attempt sleeps
 * 20 s: the node running it is killed with SIGKILL mid-task, and the task must run again on
 * another node as its second attempt, once, and finish once.
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

/** Every `task <event> <id> attempt <n>` line a node logged. */
const events = (node: Node, event: "started" | "finished") =>
  [...node.out.stderr.matchAll(new RegExp(`task ${event} (\\w+) attempt (\\d+)`, "g"))].map((m) => ({
    id: m[1]!,
    attempt: Number(m[2])
  }))

const until = async (what: string, check: () => boolean, timeoutMs = 180_000) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const startNode = async (index: number) => {
  const dir = mkdtempSync(join(tmpdir(), `ndp-tasks${index}-`))
  temps.push(dir)
  const folder = join(dir, "plugins")
  const dataDir = join(dir, "data")
  mkdirSync(folder)
  copyFileSync(fixture("cluster-tasks"), join(folder, "cluster-tasks.ndp"))
  const enabled = await ndp(["plugins", "enable", "cluster-tasks", "--folder", folder, "--data-dir", dataDir])
  expect(enabled.code, enabled.stderr).toBe(0)
  return startNdp(["serve", "--folder", folder, "--data-dir", dataDir, "--database", url], {
    NDP_PLUGINS_WORKERS: "1"
  })
}

describe("a task queue on a cluster", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
  it("a task whose node is killed mid-attempt runs again once on another node, and finishes once", async () => {
    const nodes = await Promise.all([0, 1, 2].map(startNode))
    for (const node of nodes) await node.waitFor(/^cluster-tasks: loaded/m)

    await until("a node to start the task", () => nodes.some((node) => events(node, "started").length > 0))
    const runner = nodes.find((node) => events(node, "started").length > 0)!
    const { id } = events(runner, "started")[0]!
    expect(events(runner, "started")[0]!.attempt).toBe(1)
    runner.child.kill("SIGKILL")
    await runner.exited
    // The first attempt sleeps 20 s: it was killed before it could finish.
    expect(events(runner, "finished").filter((e) => e.id === id)).toEqual([])

    const survivors = nodes.filter((node) => node !== runner)
    const attempt2 = () => survivors.filter((node) => events(node, "started").some((e) => e.id === id))
    await until("the task to finish on a survivor", () =>
      survivors.some((node) => events(node, "finished").some((e) => e.id === id))
    )
    // Exactly one survivor ran it, as its second attempt, once; nobody ran any attempt twice.
    expect(attempt2()).toHaveLength(1)
    expect(events(attempt2()[0]!, "started").filter((e) => e.id === id)).toEqual([{ id, attempt: 2 }])
    expect(survivors.flatMap((node) => events(node, "finished")).filter((e) => e.id === id)).toEqual([
      { id, attempt: 2 }
    ])
    const starts = nodes.flatMap((node) => events(node, "started")).map((e) => `${e.id}/${e.attempt}`)
    expect(new Set(starts).size).toBe(starts.length)

    for (const node of survivors) node.child.kill("SIGTERM")
    for (const node of survivors) expect((await node.exited).code).toBe(0)
  })
})

/**
 * A task queue on a cluster of three `ndp serve` nodes sharing a PostgreSQL server started by the
 * test. The `cluster-tasks` plugin enqueues one task from `nd_on_init`, whose first attempt sleeps
 * 20 s: the node running it is killed with SIGKILL mid-task, and the task must run again on
 * another node as its second attempt, once, and finish once.
 */
import { describe, expect, it } from "@effect/vitest"
import { CLI_TEST_TIMEOUT_MS } from "../support/cli.js"
import { type ClusterNode, clusterHarness } from "../support/cluster.js"
import { until } from "../support/wait.js"

const { sharedFolder, startNode } = clusterHarness()

type Node = ClusterNode

/** Every `task <event> <id> attempt <n>` line a node logged. */
const events = (node: Node, event: "started" | "finished") =>
  [...node.out.stderr.matchAll(new RegExp(`task ${event} (\\w+) attempt (\\d+)`, "g"))].map((m) => ({
    id: m[1]!,
    attempt: Number(m[2])
  }))

describe("a task queue on a cluster", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
  it("a task whose node is killed mid-attempt runs again once on another node, and finishes once", async () => {
    const nodes = [0, 1, 2].map(startNode(await sharedFolder("cluster-tasks")))
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

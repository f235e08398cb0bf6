/**
 * Three `ndp serve` processes as the nodes of one cluster on a PostgreSQL server started by the
 * test. The `cluster-ticker` plugin schedules a job every second from `nd_on_init`: it must run on
 * one node only, fire once per tick across the cluster, and move to another node when its owner is
 * killed with SIGKILL.
 */
import { describe, expect, it } from "@effect/vitest"
import { CLI_TEST_TIMEOUT_MS } from "../support/cli.js"
import { type ClusterNode, clusterHarness } from "../support/cluster.js"
import { until } from "../support/wait.js"

const { sharedFolder, startNode } = clusterHarness()

type Node = ClusterNode

const fired = (node: Node) => node.out.stderr.match(/ticker fired tick/g)?.length ?? 0
const initialised = (node: Node) => node.out.stderr.match(/ticker initialised/g)?.length ?? 0
const total = (nodes: ReadonlyArray<Node>) => nodes.reduce((sum, node) => sum + fired(node), 0)

/** Counts the callbacks of the whole cluster over at least `seconds` of real time. */
const countOver = async (nodes: ReadonlyArray<Node>, seconds: number) => {
  const before = total(nodes)
  const started = Date.now()
  await until(`${seconds} s to pass`, () => Date.now() - started >= seconds * 1000)
  return { count: total(nodes) - before, elapsed: (Date.now() - started) / 1000 }
}

let settling: { at: number; counts: ReadonlyArray<number> } | undefined

describe("ndp serve as a cluster", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
  it("a job every second fires once per tick on 3 nodes, and moves to another node when its owner is killed", async () => {
    const nodes = [0, 1, 2].map(startNode(await sharedFolder("cluster-ticker")))
    for (const node of nodes) await node.waitFor(/^cluster-ticker: loaded/m)
    await until("the first callback", () => total(nodes) > 0)

    // Nodes that start later take shards over, so the plugin may move once or twice while the
    // cluster forms: wait for a window in which a single node fires.
    let owner: Node | undefined
    await until("the cluster to settle on one owner", () => {
      if (settling === undefined) settling = { at: Date.now(), counts: nodes.map(fired) }
      if (Date.now() - settling.at < 4_000) return false
      const moved = nodes.filter((node, i) => fired(node) > settling!.counts[i]!)
      settling = undefined
      owner = moved.length === 1 ? moved[0] : undefined
      return owner !== undefined
    })
    const firedBefore = nodes.map(fired)
    const first = await countOver(nodes, 8)
    // 3 nodes firing independently would give about 3 × elapsed; load can only make it fewer.
    expect(first.count).toBeGreaterThan(0)
    expect(first.count).toBeLessThanOrEqual(Math.ceil(first.elapsed) + 1)
    // Only the owner fires, and it ran nd_on_init.
    expect(nodes.filter((node, i) => fired(node) > firedBefore[i]!)).toEqual([owner])
    expect(initialised(owner!)).toBeGreaterThan(0)

    const survivors = nodes.filter((node) => node !== owner)
    const atKill = survivors.map(fired)
    const initsAtKill = survivors.map(initialised)
    const killedAt = Date.now()
    owner!.child.kill("SIGKILL")
    await until("another node to take the plugin over", () =>
      survivors.some((node, i) => fired(node) > atKill[i]!)
    )
    const failoverMs = Date.now() - killedAt
    console.log(`failover: owner killed → first callback on the new owner in ${failoverMs} ms`)
    const heirs = survivors.filter((node, i) => initialised(node) > initsAtKill[i]!)
    expect(heirs).toHaveLength(1)

    const firedAfter = survivors.map(fired)
    const second = await countOver(survivors, 8)
    expect(second.count).toBeGreaterThan(0)
    expect(second.count).toBeLessThanOrEqual(Math.ceil(second.elapsed) + 1)
    expect(survivors.filter((node, i) => fired(node) > firedAfter[i]!)).toEqual(heirs)

    for (const node of survivors) node.child.kill("SIGTERM")
    for (const node of survivors) expect((await node.exited).code).toBe(0)
  })
})

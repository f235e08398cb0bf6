/**
 * The embedded defaults of `ndp serve --database` nodes: two nodes started at once on a fresh
 * PostgreSQL database agree on one artwork secret, so a plugin asking either node for the same
 * artwork gets the same signed URL (through each node's admin API).
 */
import { describe, expect, it } from "@effect/vitest"
import { CLI_TEST_TIMEOUT_MS } from "../support/cli.js"
import { type ClusterNode, clusterHarness } from "../support/cluster.js"

const { sharedFolder, startNode } = clusterHarness()
const token = "cluster-embedded-test-token"

const adminOf = async (node: ClusterNode) => {
  await node.waitFor(/^admin: (http:\S+)/m)
  return /^admin: (http:\S+)/m.exec(node.out.stdout)![1]!
}

/** The album artwork URL `host-artwork` gets from the node at `base`. */
const artworkUrl = async (base: string) => {
  const response = await fetch(`${base}api/plugins/host-artwork/call`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ export: "call_artwork_getalbumurl", input: JSON.stringify({ id: "42" }) })
  })
  const body = (await response.json()) as { output?: string | null }
  expect(response.status, JSON.stringify(body)).toBe(200)
  return (JSON.parse(body.output!) as { url: string }).url
}

describe("the embedded defaults of a cluster", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
  it("two nodes started at once sign artwork with one secret", async () => {
    const start = startNode(await sharedFolder("host-artwork"), ["--http", "127.0.0.1:0"], {
      NDP_ADMIN_TOKEN: token
    })
    const nodes = [start(0), start(1)]
    for (const node of nodes) await node.waitFor(/^host-artwork: loaded/m)
    const [a, b] = await Promise.all(nodes.map(adminOf))
    const fromA = await artworkUrl(a!)
    expect(fromA).toMatch(/^http:\/\/localhost:4533\/share\/img\/\S+$/)
    expect(await artworkUrl(b!)).toBe(fromA)

    for (const node of nodes) node.child.kill("SIGTERM")
    for (const node of nodes) expect((await node.exited).code).toBe(0)
  })
})

// A 3-node cluster on this machine (docs/cluster.md): three `ndp serve --database URL` processes,
// each with its own data folder, serving one plugins folder with the demo plugins and
// `cluster-ticker`, enabled in the cluster's registry on the PostgreSQL server at URL, or on a
// throwaway one started here (Debian's binaries, see test/support/postgres.ts) when no URL is given. Their output is prefixed with the node's name;
// Ctrl-C stops them all.
//
// Usage: npx tsx scripts/cluster-demo.ts [postgres://…]
import * as Effect from "effect/Effect"
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { demoPlugins } from "../src/cli/DemoPlugins.js"
import { ndp, repositoryRoot, startNdp } from "../test/support/cli.js"
import { postgresServer } from "../test/support/postgres.js"

// Demo plugins that show request-driven and background work, and the ticker the tests count.
const plugins = [
  ...demoPlugins.filter((id) => ["agent-full", "scrobbler", "lifecycle"].includes(id)),
  "cluster-ticker"
]

const prefixed = (name: string, text: string) =>
  text
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => `${name} | ${line}\n`)
    .join("")

const main = Effect.gen(function* () {
  const given = process.argv[2]
  const url = given ?? (yield* postgresServer).url
  console.log(`cluster on ${url}`)
  const root = mkdtempSync(join(tmpdir(), "ndp-cluster-demo-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(root, { recursive: true, force: true })))
  // Every node serves the same packages from the same path; the registry is the database's.
  const folder = join(root, "plugins")
  mkdirSync(folder, { recursive: true })
  for (const id of plugins) {
    const source = join(repositoryRoot, "build", "fixtures", `${id}.ndp`)
    if (existsSync(source)) copyFileSync(source, join(folder, `${id}.ndp`))
  }
  const shared = ["--folder", folder, "--data-dir", join(root, "cli"), "--database", url]
  for (const id of plugins) {
    // The scrobbler asks for the users permission: every user may use it.
    const enabled = yield* Effect.promise(() => ndp(["plugins", "enable", id, "--all-users", ...shared]))
    if (enabled.code !== 0) console.log(`${id} not enabled: ${enabled.stderr.trim()}`)
  }
  const nodes = yield* Effect.promise(() =>
    Promise.all(
      ["node1", "node2", "node3"].map(async (name) => {
        const dataDir = join(root, name, "data")
        const node = startNdp(["serve", "--folder", folder, "--data-dir", dataDir, "--database", url])
        node.child.stdout?.on("data", (chunk: string | Buffer) =>
          process.stdout.write(prefixed(name, String(chunk)))
        )
        node.child.stderr?.on("data", (chunk: string | Buffer) =>
          process.stdout.write(prefixed(name, String(chunk)))
        )
        return node
      })
    )
  )
  yield* Effect.addFinalizer(() =>
    Effect.promise(async () => {
      for (const node of nodes) node.child.kill("SIGTERM")
      await Promise.all(nodes.map((node) => node.exited))
    })
  )
  console.log("3 nodes started; kill one (kill -9 <pid>) to watch its plugins move; Ctrl-C stops all")
  console.log(`pids: ${nodes.map((node) => node.child.pid).join(" ")}`)
  yield* Effect.async<void>((resume) => {
    process.once("SIGINT", () => resume(Effect.void))
  })
})

Effect.runPromise(Effect.scoped(main)).then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)

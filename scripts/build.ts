// Builds the package into dist/: ESM JavaScript, .d.ts and source maps from src/ with tsc
// (tsconfig.build.json), the worker bundled into one CommonJS script with esbuild
// (dist/runtime/internal/ndp-worker.cjs, found beside WorkerScript.js at run time), the `ndp`
// program bundled into one ES module (dist/cli/ndp.mjs, the worker copied beside it), and the demo
// plugins `ndp demo` runs (dist/demo/, copied from build/fixtures: run build:fixtures first).
// Skips the work when dist/ is newer than everything it is made from.
//
// Usage: npx tsx scripts/build.ts [--force]
import { spawnSync } from "node:child_process"
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import path from "node:path"
import { fileURLToPath } from "node:url"
import * as esbuild from "esbuild"
import { workerBuildOptions, workerFileName } from "../src/runtime/internal/WorkerScript.js"
import { demoPlugins } from "../src/cli/DemoPlugins.js"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const dist = path.join(root, "dist")
const stamp = path.join(root, "build", "dist.stamp")
const cliBundleName = "ndp.mjs"
const fixtures = path.join(root, "build", "fixtures")

/** Newest modification time (ms) of a file, or of every file under a folder. */
const newest = (target: string): number => {
  const stat = statSync(target)
  if (!stat.isDirectory()) return stat.mtimeMs
  let latest = stat.mtimeMs
  for (const entry of readdirSync(target)) latest = Math.max(latest, newest(path.join(target, entry)))
  return latest
}

const inputs = [
  "src",
  "tsconfig.json",
  "tsconfig.build.json",
  "package.json",
  "scripts/build.ts",
  ...demoPlugins.map((id) => `build/fixtures/${id}.ndp`)
]

const fail = (message: string): never => {
  console.error(`build: ${message}`)
  process.exit(1)
}

for (const id of demoPlugins) {
  if (!existsSync(path.join(fixtures, `${id}.ndp`)))
    fail(`build/fixtures/${id}.ndp is missing: run npm run build:fixtures first (npm run build does both)`)
}

const force = process.argv.includes("--force")
if (!force && existsSync(stamp) && existsSync(path.join(dist, "index.js"))) {
  const built = statSync(stamp).mtimeMs
  if (inputs.every((input) => newest(path.join(root, input)) <= built)) process.exit(0)
}

const started = performance.now()
// From scratch: a renamed or deleted source must not leave its old output behind.
rmSync(dist, { recursive: true, force: true })

const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
const compiled = spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], {
  cwd: root,
  stdio: "inherit"
})
if (compiled.status !== 0) fail("tsc failed (errors above)")

await esbuild.build({
  ...workerBuildOptions,
  entryPoints: [path.join(root, "src/runtime/worker/main.ts")],
  outfile: path.join(dist, "runtime/internal", workerFileName),
  banner: { js: "// ndp-engine execution worker, bundled from src/runtime/worker/ by npm run build." }
})

// The `ndp` program as one ES module (docs/decisions/0025): loading ~900 modules one by one was
// most of a cold start. The worker script is copied beside it, where WorkerScript looks for it.
// better-sqlite3 is native and esbuild optional, so both stay imports; `require` is given to the
// CommonJS dependencies that call it.
await esbuild.build({
  entryPoints: [path.join(root, "src/cli/main.ts")],
  outfile: path.join(dist, "cli", cliBundleName),
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["better-sqlite3", "esbuild"],
  logLevel: "silent",
  banner: {
    js: [
      "// The ndp program, bundled from src/cli/main.ts by npm run build.",
      'import { createRequire as __ndpCreateRequire } from "node:module"',
      "const require = __ndpCreateRequire(import.meta.url)"
    ].join("\n")
  }
})
cpSync(path.join(dist, "runtime/internal", workerFileName), path.join(dist, "cli", workerFileName))

// The admin page: static files beside the compiled module (dist/admin/web/), minified, nothing
// fetched at run time.
const web = path.join(root, "src/admin/web")
await esbuild.build({
  entryPoints: [path.join(web, "app.js"), path.join(web, "style.css")],
  outdir: path.join(dist, "admin/web"),
  minify: true,
  bundle: false,
  format: "esm",
  target: "es2022",
  logLevel: "warning"
})
cpSync(path.join(web, "index.html"), path.join(dist, "admin/web/index.html"))

mkdirSync(path.join(dist, "demo"), { recursive: true })
for (const id of demoPlugins) cpSync(path.join(fixtures, `${id}.ndp`), path.join(dist, "demo", `${id}.ndp`))

// Help texts, so `ndp … --help` is answered by bin/ndp.js without loading the program (most of a
// cold start is loading Effect and the engine). Generated from the same command tree the program
// prints from, so the two cannot differ.
const { commandTree } = await import("../src/cli/Cli.js")
const { helpText } = await import("../src/cli/Help.js")
type Node = typeof commandTree
const helps: Record<string, { readonly plain: string; readonly colour: string }> = {}
const visit = (trail: ReadonlyArray<Node>): void => {
  const key = trail
    .slice(1)
    .map((n) => n.name)
    .join(" ")
  helps[key] = { plain: helpText(trail, false), colour: helpText(trail, true) }
  for (const child of trail[trail.length - 1]!.children ?? []) visit([...trail, child])
}
visit([commandTree])
writeFileSync(path.join(dist, "cli", "help.json"), `${JSON.stringify(helps)}\n`)

mkdirSync(path.dirname(stamp), { recursive: true })
writeFileSync(stamp, `${new Date().toISOString()}\n`)
console.error(`build: dist/ written in ${((performance.now() - started) / 1000).toFixed(1)} s`)

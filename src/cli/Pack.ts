/**
 * `ndp pack <dir | manifest.json plugin.wasm> [-o name.ndp]`: builds a `.ndp` and refuses one that
 * would not load. The zip is checked by the loader's own inspect path (package limits, manifest
 * schema, memory cap, compile, imports against permissions, capability rules) before the output is
 * written, so a mistake shows on the developer's machine, not after the file was copied to a server.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { zipSync } from "fflate"
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { basename, dirname, join, resolve } from "node:path"
import * as Engine from "../Engine.js"
import { PluginLoader } from "../loader/PluginLoader.js"
import { pluginIdFromFileName } from "../package/PluginPackage.js"
import { binaryHint, describeModule } from "./Diagnose.js"
import { described } from "./Help.js"
import { CommandFailure, printJson } from "./ServerOptions.js"

/** Packing failed; nothing was written. */
export class PackError extends Data.TaggedError("PackError")<{
  /** Usage: arguments; Read: a source file; Invalid: the package would not load; Write: the output. */
  readonly reason: "Usage" | "Read" | "Invalid" | "Write"
  readonly message: string
  readonly problems?: ReadonlyArray<string> | undefined
  readonly hint?: string | undefined
}> {}

/** What `pack` wrote. */
export interface PackResult {
  readonly file: string
  readonly id: string
  readonly sha256: string
  readonly bytes: number
  readonly capabilities: ReadonlyArray<string>
  readonly warnings: ReadonlyArray<string>
}

/** An engine whose data folder is temporary and removed afterwards: for commands that run no plugin code. */
export const throwAwayEngine = Layer.unwrapScoped(
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "ndp-inspect-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    ),
    (dir) => Engine.layer({ runtime: { poolSize: 1 }, dataFolder: dir })
  )
)

const errorText = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

const isDirectory = (path: string) => {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

const read = (what: string, path: string) =>
  Effect.try({
    try: () => readFileSync(path),
    catch: (cause) =>
      new PackError({ reason: "Read", message: `cannot read ${what} ${path}: ${errorText(cause)}` })
  })

// A fixed time stamp: the same sources always make the same bytes (and SHA-256).
const ZIP_TIME = new Date(Date.UTC(2000, 0, 1))

/** Where the two sources are: a folder holding both, or the two files in either order. */
const locate = (sources: ReadonlyArray<string>) => {
  if (sources.length === 1) {
    const folder = resolve(sources[0]!)
    if (!isDirectory(folder)) {
      return Effect.fail(
        new PackError({
          reason: "Usage",
          message: `${sources[0]} is not a folder; give a folder holding manifest.json and plugin.wasm, or both files`
        })
      )
    }
    return Effect.succeed({
      manifest: join(folder, "manifest.json"),
      wasm: join(folder, "plugin.wasm"),
      name: basename(folder)
    })
  }
  const [a, b] = sources.map((s) => resolve(s)) as [string, string]
  const [manifest, wasm] = a.endsWith(".wasm") || b.endsWith(".json") ? [b, a] : [a, b]
  return Effect.succeed({ manifest, wasm, name: basename(dirname(manifest)) })
}

/** Builds, checks and writes the package; nothing is written unless it would load. */
export const packPlugin = Effect.fn("Pack.pack")(function* (
  sources: ReadonlyArray<string>,
  output: Option.Option<string>
) {
  const where = yield* locate(sources)
  const target = resolve(Option.getOrElse(output, () => `${where.name}.ndp`))
  if (!target.endsWith(".ndp")) {
    return yield* new PackError({
      reason: "Usage",
      message: `the output ${target} must end in .ndp (the file name without .ndp is the plugin ID)`
    })
  }
  const id = yield* pluginIdFromFileName(basename(target)).pipe(
    Effect.mapError(
      (e) =>
        new PackError({
          reason: "Usage",
          message: `${e.message}${Option.isNone(output) ? "; or name the output with -o ID.ndp" : ""}`
        })
    )
  )
  const manifest = yield* read("the manifest", where.manifest)
  const wasm = yield* read("the module", where.wasm)
  const zip = zipSync({ "manifest.json": manifest, "plugin.wasm": wasm }, { level: 9, mtime: ZIP_TIME })

  // Checked as the loader reads it: from a file named like the output, in a folder of its own.
  const scratch = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "ndp-pack-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
  const candidate = join(scratch, `${id}.ndp`)
  yield* Effect.sync(() => writeFileSync(candidate, zip))
  const loader = yield* PluginLoader
  const report = yield* loader.inspectFile(candidate).pipe(
    Effect.mapError((e) => {
      const hint = binaryHint(wasm)
      return new PackError({
        reason: "Invalid",
        message: `${id} would not load: ${e.message}${hint === undefined ? "" : `; ${hint}`}`
      })
    })
  )
  const diagnosis = describeModule(report)
  if (report.problems.length > 0) {
    return yield* new PackError({
      reason: "Invalid",
      message: `${id} would not load; fix ${report.problems.length === 1 ? "this problem" : `these ${report.problems.length} problems`} and pack again`,
      problems: report.problems,
      // Refused imports of a module built for another ABI: say which, that is the real mistake.
      hint: diagnosis.abi === "extism" || diagnosis.abi === "none" ? undefined : diagnosis.warnings[0]
    })
  }
  yield* Effect.try({
    try: () => writeFileSync(target, zip),
    catch: (cause) =>
      new PackError({ reason: "Write", message: `cannot write ${target}: ${errorText(cause)}` })
  })
  const result: PackResult = {
    file: target,
    id,
    sha256: report.sha256,
    bytes: zip.byteLength,
    capabilities: report.capabilities,
    warnings: [...report.warnings, ...diagnosis.warnings]
  }
  return result
}, Effect.scoped)

const json = Options.boolean("json").pipe(Options.withDescription("print one JSON object on stdout"))

/** `ndp pack`. */
export const pack = described(
  "build a .ndp from a plugin folder (or manifest.json and plugin.wasm), refusing one that would not load",
  Command.make(
    "pack",
    {
      source: Args.text({ name: "dir | manifest.json" }).pipe(
        Args.withDescription("a folder holding manifest.json and plugin.wasm, or the manifest")
      ),
      module: Args.text({ name: "plugin.wasm" }).pipe(
        Args.optional,
        Args.withDescription("the module, when the first argument is the manifest (either order)")
      ),
      output: Options.text("output").pipe(
        Options.withAlias("o"),
        Options.withPseudoName("NAME.ndp"),
        Options.optional,
        Options.withDescription("the package to write; its name is the plugin ID (default <folder name>.ndp)")
      ),
      json
    },
    ({ json, module, output, source }) =>
      packPlugin(Option.match(module, { onNone: () => [source], onSome: (m) => [source, m] }), output).pipe(
        Effect.flatMap((result) =>
          Effect.gen(function* () {
            if (json) {
              yield* printJson({ ok: true, ...result })
            } else {
              yield* Console.log(
                `packed ${result.file} (${result.id}, ${result.bytes} bytes, [${result.capabilities.join(", ")}])`
              )
              for (const w of result.warnings) yield* Console.error(`warning: ${w}`)
            }
          })
        ),
        Effect.mapError(
          (e) =>
            new CommandFailure({
              code: e.reason === "Invalid" ? 3 : 1,
              tag: e._tag,
              reason: e.reason,
              message: e.message,
              problems: e.problems,
              hint: e.hint
            })
        ),
        Effect.provide(throwAwayEngine)
      )
  )
)

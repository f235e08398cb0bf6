/**
 * The `ndp` command line: inspect a package, call one export, run the demo. Exit codes are part
 * of the interface (docs/cli.md): 0 ok, 1 usage, 2 the call failed, 3 the plugin could not load.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import * as Engine from "../Engine.js"
import { upsertUsers } from "../embedded/EmbeddedDatabase.js"
import { registerLibrary } from "../embedded/EmbeddedCatalog.js"
import { PluginLoader } from "../loader/PluginLoader.js"
import { parseConfigPairs } from "../manifest/PluginConfig.js"
import { demo } from "./Demo.js"
import { defaultDemoFolder } from "./DemoPlugins.js"
import { plugins } from "./Plugins.js"
import { serve } from "./Serve.js"

export const ExitCode = { ok: 0, usage: 1, callFailed: 2, cannotLoad: 3 } as const

const setExitCode = (code: number) =>
  Effect.sync(() => {
    process.exitCode = code
  })

// A one-shot command needs one worker: fast to start, and timeouts still work.
const oneShotEngine = (timeoutMs: Option.Option<number>, dataDir: Option.Option<string> = Option.none()) =>
  Engine.layer({
    runtime: { poolSize: 1, ...(Option.isSome(timeoutMs) ? { defaultTimeoutMs: timeoutMs.value } : {}) },
    dataFolder: Option.getOrUndefined(dataDir)
  })

// Inspecting runs no plugin code and keeps no data: a throw-away data folder, removed afterwards.
const inspectEngine = Layer.unwrapScoped(
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "ndp-inspect-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    ),
    (dir) => oneShotEngine(Option.none(), Option.some(dir))
  )
)

const json = Options.boolean("json").pipe(Options.withDescription("print one JSON object on stdout"))
const packageFile = Args.file({ name: "file.ndp", exists: "yes" }).pipe(
  Args.withDescription("the plugin package (.ndp)")
)

const printJson = (value: unknown) => Console.log(JSON.stringify(value, null, 2))

const inspect = Command.make("inspect", { file: packageFile, json }, ({ file, json }) =>
  Effect.gen(function* () {
    const loader = yield* PluginLoader
    const report = yield* Effect.either(loader.inspectFile(file))
    if (report._tag === "Left") {
      yield* json
        ? printJson({ ok: false, problems: [report.left.message] })
        : Console.error(`cannot read ${file}: ${report.left.message}`)
      return yield* setExitCode(ExitCode.cannotLoad)
    }
    const r = report.right
    const loadable = r.problems.length === 0
    if (json) {
      yield* printJson({ ...r, loadable })
    } else {
      const m = r.manifest
      yield* Console.log(`${r.id}  ${m ? `${m.name} ${m.version} by ${m.author}` : "(manifest unreadable)"}`)
      if (m?.description) yield* Console.log(`  ${m.description}`)
      yield* Console.log(`  sha256        ${r.sha256}`)
      yield* Console.log(`  capabilities  ${r.capabilities.join(", ") || "(none)"}`)
      yield* Console.log(`  permissions   ${m ? Object.keys(m.permissions).join(", ") || "(none)" : "?"}`)
      yield* Console.log(`  exports       ${r.exports.join(", ")}`)
      yield* Console.log(
        `  imports       ${r.imports.map((i) => `${i.module}.${i.name}`).join(", ") || "(none)"}`
      )
      for (const w of r.warnings) yield* Console.log(`  warning: ${w}`)
      for (const p of r.problems) yield* Console.log(`  problem: ${p}`)
      yield* Console.log(loadable ? "  loadable" : "  NOT loadable")
    }
    yield* setExitCode(loadable ? ExitCode.ok : ExitCode.cannotLoad)
  }).pipe(Effect.provide(inspectEngine))
).pipe(Command.withDescription("show a package's manifest, permissions, capabilities, imports and problems"))

const call = Command.make(
  "call",
  {
    file: packageFile,
    exportName: Args.text({ name: "export" }).pipe(
      Args.withDescription("the export to call, e.g. nd_get_artist_biography")
    ),
    input: Options.text("input").pipe(Options.optional, Options.withDescription("the call's input, as JSON")),
    config: Options.text("config").pipe(
      Options.repeated,
      Options.withDescription("plugin configuration as key=value (repeatable); values are strings")
    ),
    dataDir: Options.directory("data-dir").pipe(
      Options.optional,
      Options.withDescription("where host services keep the plugin's data (default ./ndp-data)")
    ),
    user: Options.text("user").pipe(
      Options.repeated,
      Options.withDescription(
        "add this user to the embedded directory and allow it for the plugin (repeatable)"
      )
    ),
    library: Options.text("library").pipe(
      Options.repeated,
      Options.withDescription(
        "ID=PATH registers a library folder in the embedded catalogue and allows it for the plugin; a bare ID allows an existing library, e.g. 1 for the demo library (repeatable)"
      )
    ),
    admin: Options.text("admin").pipe(
      Options.repeated,
      Options.withDescription("as --user, as an administrator (repeatable)")
    ),
    timeoutMs: Options.integer("timeout-ms").pipe(
      Options.optional,
      Options.withDescription("call timeout in ms")
    ),
    json
  },
  ({ admin, config, dataDir, exportName, file, input, json, library, timeoutMs, user }) =>
    Effect.gen(function* () {
      const fail = (code: number, tag: string, message: string) =>
        Effect.zipRight(
          json
            ? printJson({ ok: false, error: { tag, message } })
            : Console.error(`error [${tag}]: ${message}`),
          setExitCode(code)
        )
      if (Option.isSome(input)) {
        const parsed = Effect.try(() => JSON.parse(input.value) as unknown)
        if ((yield* Effect.either(parsed))._tag === "Left") {
          return yield* fail(ExitCode.usage, "InvalidInput", `--input is not valid JSON: ${input.value}`)
        }
      }
      const configObject = yield* Effect.either(parseConfigPairs(config))
      if (configObject._tag === "Left") {
        return yield* fail(ExitCode.usage, configObject.left._tag, configObject.left.message)
      }
      const users = [
        ...user.map((userName) => ({ userName, name: userName, isAdmin: false })),
        ...admin.map((userName) => ({ userName, name: userName, isAdmin: true }))
      ]
      yield* upsertUsers(users)
      const libraries: Array<number> = []
      for (const spec of library) {
        const match = /^(\d+)(?:=(.+))?$/.exec(spec)
        if (match === null) {
          return yield* fail(ExitCode.usage, "InvalidLibrary", `--library takes ID=PATH or ID, got "${spec}"`)
        }
        const id = Number(match[1])
        if (match[2] !== undefined) {
          const registered = yield* Effect.either(registerLibrary({ id, path: resolve(match[2]) }))
          if (registered._tag === "Left") {
            return yield* fail(ExitCode.usage, registered.left._tag, registered.left.message)
          }
        }
        libraries.push(id)
      }
      const loader = yield* PluginLoader
      const plugin = yield* Effect.either(
        loader.loadFile(file, { config: configObject.right, users: users.map((u) => u.userName), libraries })
      )
      if (plugin._tag === "Left") {
        return yield* fail(ExitCode.cannotLoad, plugin.left._tag, plugin.left.message)
      }
      const started = performance.now()
      const result = yield* Effect.either(
        plugin.right.call(
          exportName,
          Option.getOrElse(input, () => "")
        )
      )
      const ms = Math.round((performance.now() - started) * 1000) / 1000
      if (result._tag === "Left") {
        return yield* fail(ExitCode.callFailed, result.left._tag, result.left.message)
      }
      const text = result.right === null ? "" : new TextDecoder().decode(result.right)
      let output: unknown = null
      if (text !== "") {
        try {
          output = JSON.parse(text)
        } catch {
          output = text
        }
      }
      if (json) {
        yield* printJson({ ok: true, output, ms })
      } else {
        yield* Console.log(
          typeof output === "string" || output === null ? text : JSON.stringify(output, null, 2)
        )
        yield* Console.error(`ok in ${ms} ms`)
      }
      yield* setExitCode(ExitCode.ok)
    }).pipe(Effect.scoped, Effect.provide(oneShotEngine(timeoutMs, dataDir)))
).pipe(Command.withDescription("load a plugin with the given config and call one export"))

const demoCommand = Command.make(
  "demo",
  {
    folder: Options.directory("folder").pipe(
      Options.withDefault(defaultDemoFolder()),
      Options.withDescription("where the demo plugins are (default: those shipped in the package)")
    ),
    dataDir: Options.directory("data-dir").pipe(
      Options.withDefault("build/demo-data"),
      Options.withDescription("where the demo keeps plugin data")
    )
  },
  ({ dataDir, folder }) =>
    demo(folder).pipe(Effect.provide(Layer.fresh(Engine.layer({ dataFolder: dataDir }))))
).pipe(Command.withDescription("load the bundled demo plugins and show what they answer"))

const ndp = Command.make("ndp").pipe(
  Command.withDescription("run and inspect Navidrome-compatible WebAssembly plugins"),
  Command.withSubcommands([inspect, call, demoCommand, serve, plugins])
)

/** The program for `process.argv`. */
export const run = Command.run(ndp, { name: "ndp", version: "0.1.0" })

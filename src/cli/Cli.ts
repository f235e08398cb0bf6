/**
 * The `ndp` command line: inspect a package, call one export, pack a plugin, run the demo, serve a
 * folder, manage its plugins. Exit codes are part of the interface (docs/cli.md): 0 ok, 1 usage,
 * 2 the call failed, 3 the plugin could not load (4 and 5 for `serve` / `plugins`). With `--json`
 * every outcome, usage errors included, is one envelope on stdout: `{"ok": true, …}` or
 * `{"ok": false, "error": {"tag", "reason", "message"}}`.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import { readFileSync } from "node:fs"
import { resolve } from "node:path"
import * as Engine from "../Engine.js"
import { upsertUsers } from "../server/embedded/EmbeddedDatabase.js"
import { registerLibrary } from "../server/embedded/CatalogQueries.js"
import { decodeGrants } from "../host/network/NetworkPolicy.js"
import { PluginLoader } from "../loader/PluginLoader.js"
import { parseConfigPairs } from "../manifest/PluginConfig.js"
import { demo } from "./Demo.js"
import { defaultDemoFolder } from "./DemoPlugins.js"
import { readPackageBytes } from "../package/PluginPackage.js"
import { binaryHint, describeModule } from "./Diagnose.js"
import {
  closest,
  type CommandNode,
  commandPath,
  described,
  docText,
  flagNames,
  helpText,
  plainConsole,
  useColour
} from "./Help.js"
import { pack, throwAwayEngine } from "./Pack.js"
import { plugins } from "./Plugins.js"
import { serve } from "./Serve.js"
import { CommandFailure, LogLevelFlag, printJson, reportFailure, usageFailure } from "./ServerOptions.js"

export const ExitCode = { ok: 0, usage: 1, callFailed: 2, cannotLoad: 3 } as const

// A one-shot command needs one worker: fast to start, and timeouts still work.
const oneShotEngine = (timeoutMs: Option.Option<number>, dataDir: Option.Option<string>) =>
  Engine.layer({
    runtime: { poolSize: 1, ...(Option.isSome(timeoutMs) ? { defaultTimeoutMs: timeoutMs.value } : {}) },
    dataFolder: Option.getOrUndefined(dataDir)
  })

const json = Options.boolean("json").pipe(Options.withDescription("print one JSON object on stdout"))
const packageFile = Args.file({ name: "file.ndp", exists: "yes" }).pipe(
  Args.withDescription("the plugin package (.ndp)")
)

const inspect = described(
  "show a package's manifest, permissions, capabilities, imports and problems",
  Command.make("inspect", { file: packageFile, json }, ({ file, json }) =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const report = yield* Effect.either(loader.inspectFile(file))
      if (report._tag === "Left") {
        const hint = yield* abiHintOfFile(file)
        return yield* new CommandFailure({
          code: ExitCode.cannotLoad,
          tag: report.left._tag,
          reason: report.left.reason,
          message: `cannot read ${file}: ${report.left.message}`,
          hint
        })
      }
      const diagnosis = describeModule(report.right)
      const r = { ...report.right, warnings: [...report.right.warnings, ...diagnosis.warnings] }
      const loadable = r.problems.length === 0
      if (json) {
        yield* printJson({
          ok: loadable,
          ...(loadable
            ? {}
            : {
                error: {
                  tag: "PluginLoadError",
                  reason: "NotLoadable",
                  message: `plugin ${r.id} cannot load: ${r.problems.join("; ")}`
                }
              }),
          ...r,
          abi: diagnosis.abi,
          loadable
        })
      } else {
        const m = r.manifest
        yield* Console.log(
          `${r.id}  ${m ? `${m.name} ${m.version} by ${m.author}` : "(manifest unreadable)"}`
        )
        if (m?.description) yield* Console.log(`  ${m.description}`)
        yield* Console.log(`  sha256        ${r.sha256}`)
        yield* Console.log(`  capabilities  ${r.capabilities.join(", ") || "(none)"}`)
        yield* Console.log(`  permissions   ${m ? Object.keys(m.permissions).join(", ") || "(none)" : "?"}`)
        yield* Console.log(`  exports       ${r.exports.join(", ") || "(none)"}`)
        yield* Console.log(
          `  imports       ${r.imports.map((i) => `${i.module}.${i.name}`).join(", ") || "(none)"}`
        )
        for (const w of r.warnings) yield* Console.log(`  warning: ${w}`)
        for (const p of r.problems) yield* Console.log(`  problem: ${p}`)
        yield* Console.log(loadable ? "  loadable" : "  NOT loadable")
      }
      if (!loadable) {
        return yield* new CommandFailure({
          code: ExitCode.cannotLoad,
          tag: "PluginLoadError",
          reason: "NotLoadable",
          message: `plugin ${r.id} cannot load: ${r.problems.join("; ")}`,
          reported: true
        })
      }
    }).pipe(Effect.provide(throwAwayEngine))
  )
)

/** Why a package's module could not even be compiled, when its first bytes say (e.g. a component). */
const abiHintOfFile = (file: string) =>
  Effect.try(() => readFileSync(file)).pipe(
    Effect.flatMap((bytes) => readPackageBytes(bytes)),
    Effect.map((contents) => binaryHint(contents.wasm)),
    Effect.orElseSucceed(() => undefined)
  )

/** Where the line "at position N" of a JSON error is, as line and column (1-based). */
const jsonErrorText = (text: string, error: unknown) => {
  // One line: the parser may quote the input, line breaks included.
  const message = (error instanceof Error ? error.message : String(error)).replace(/\r?\n/g, "\\n")
  const at = /position (\d+)/.exec(message)
  if (at === null) return message
  const before = text.slice(0, Number(at[1]))
  const line = before.split("\n").length
  const column = before.length - before.lastIndexOf("\n")
  return `${message} (line ${line}, column ${column})`
}

/** The `--input` text: the value itself, `@FILE` for a file's contents, `-` for standard input. */
const readInput = (value: string) =>
  Effect.gen(function* () {
    const source = value === "-" ? "standard input" : value.startsWith("@") ? value.slice(1) : undefined
    const text =
      source === undefined
        ? value
        : yield* Effect.try({
            try: () => readFileSync(value === "-" ? 0 : source, "utf8"),
            catch: (cause) =>
              usageFailure(
                "InvalidInput",
                `cannot read --input ${value === "-" ? "from standard input" : `file ${source}`}: ${cause instanceof Error ? cause.message : String(cause)}`
              )
          })
    yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (error) =>
        usageFailure(
          "InvalidInput",
          `--input ${source === undefined ? "" : `(${source}) `}is not valid JSON: ${jsonErrorText(text, error)}`
        )
    })
    return text
  })

const callCommand = described(
  "load a plugin with the given config and call one export",
  Command.make(
    "call",
    {
      file: packageFile,
      exportName: Args.text({ name: "export" }).pipe(
        Args.withDescription("the export to call, e.g. nd_get_artist_biography")
      ),
      input: Options.text("input").pipe(
        Options.withPseudoName("JSON|@FILE|-"),
        Options.optional,
        Options.withDescription("the call's input: JSON text, @FILE to read it from a file, - from stdin")
      ),
      config: Options.text("config").pipe(
        Options.withPseudoName("key=value"),
        Options.repeated,
        Options.withDescription("plugin configuration; values are strings")
      ),
      dataDir: Options.directory("data-dir").pipe(
        Options.withPseudoName("DIR"),
        Options.optional,
        Options.withDescription("where host services keep the plugin's data (default ./ndp-data)")
      ),
      user: Options.text("user").pipe(
        Options.withPseudoName("NAME"),
        Options.repeated,
        Options.withDescription("add this user to the embedded directory and allow it for the plugin")
      ),
      library: Options.text("library").pipe(
        Options.withPseudoName("ID[=PATH]"),
        Options.repeated,
        Options.withDescription(
          "ID=PATH registers a music folder under that ID and allows it (your libraries then replace the demo library, so 1 is yours to use); a bare ID allows an existing library"
        )
      ),
      admin: Options.text("admin").pipe(
        Options.withPseudoName("NAME"),
        Options.repeated,
        Options.withDescription("as --user, as an administrator")
      ),
      timeoutMs: Options.integer("timeout-ms").pipe(
        Options.withPseudoName("MS"),
        Options.optional,
        Options.withDescription("call timeout in milliseconds")
      ),
      waitMs: Options.integer("wait-ms").pipe(
        Options.withPseudoName("MS"),
        Options.optional,
        Options.withDescription(
          "keep the plugin loaded this long after the call, so its background work (task queue, schedules) runs"
        )
      ),
      allowNetwork: Options.text("allow-network").pipe(
        Options.withPseudoName("NET"),
        Options.repeated,
        Options.withDescription(
          "let the plugin reach this private network: a CIDR (192.168.1.0/24, 127.0.0.1/32, ::1/128) or a host name; without it loopback and private addresses are refused"
        )
      ),
      json
    },
    ({
      admin,
      allowNetwork,
      config,
      dataDir,
      exportName,
      file,
      input,
      json,
      library,
      timeoutMs,
      user,
      waitMs
    }) =>
      Effect.gen(function* () {
        const inputText = Option.isSome(input) ? yield* readInput(input.value) : ""
        const configObject = yield* parseConfigPairs(config).pipe(
          Effect.mapError((e) => usageFailure(e._tag, e.message))
        )
        const users = [
          ...user.map((userName) => ({ userName, name: userName, isAdmin: false })),
          ...admin.map((userName) => ({ userName, name: userName, isAdmin: true }))
        ]
        const libraries: Array<{ id: number; path?: string }> = []
        for (const spec of library) {
          const match = /^(\d+)(?:=(.+))?$/.exec(spec)
          if (match === null) {
            return yield* usageFailure("InvalidLibrary", `--library takes ID=PATH or ID, got "${spec}"`)
          }
          libraries.push({ id: Number(match[1]), ...(match[2] === undefined ? {} : { path: match[2] }) })
        }
        yield* upsertUsers(users)
        // Named folders replace the demo library: a user's library may be 1, as in Navidrome.
        for (const { id, path } of libraries) {
          if (path === undefined) continue
          yield* registerLibrary({ id, path: resolve(path), replaceDemo: true }).pipe(
            Effect.mapError((e) => usageFailure(e._tag, e.message))
          )
        }
        yield* decodeGrants(allowNetwork).pipe(Effect.mapError((e) => usageFailure(e._tag, e.message)))
        const loader = yield* PluginLoader
        const plugin = yield* loader
          .loadFile(file, {
            config: configObject,
            users: users.map((u) => u.userName),
            libraries: libraries.map((l) => l.id),
            allowedNetworks: allowNetwork
          })
          .pipe(
            Effect.mapError(
              (e) =>
                new CommandFailure({
                  code: ExitCode.cannotLoad,
                  tag: e._tag,
                  reason: e.reason,
                  message: e.message
                })
            )
          )
        if (!plugin.exports.has(exportName)) {
          return yield* usageFailure(
            "UnknownExport",
            `plugin ${plugin.id} has no export ${JSON.stringify(exportName)}; its exports are ${[...plugin.exports].join(", ") || "(none)"}`
          )
        }
        const started = performance.now()
        const result = yield* plugin.call(exportName, inputText).pipe(
          Effect.mapError(
            (e) =>
              new CommandFailure({
                code: ExitCode.callFailed,
                tag: e._tag,
                reason: e._tag,
                message: e.message
              })
          )
        )
        const ms = Math.round((performance.now() - started) * 1000) / 1000
        const text = result === null ? "" : new TextDecoder().decode(result)
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
        if (Option.isSome(waitMs) && waitMs.value > 0) {
          if (!json) yield* Console.error(`keeping the plugin loaded for ${waitMs.value} ms`)
          yield* Effect.sleep(Duration.millis(waitMs.value))
        }
      }).pipe(Effect.scoped, Effect.provide(oneShotEngine(timeoutMs, dataDir)))
  )
)

const demoCommand = described(
  "load the bundled demo plugins and show what they answer",
  Command.make(
    "demo",
    {
      folder: Options.directory("folder").pipe(
        Options.withPseudoName("DIR"),
        Options.withDefault(defaultDemoFolder()),
        Options.withDescription("where the demo plugins are (default: those shipped in the package)")
      ),
      dataDir: Options.directory("data-dir").pipe(
        Options.withPseudoName("DIR"),
        Options.withDefault("build/demo-data"),
        Options.withDescription("where the demo keeps plugin data")
      )
    },
    ({ dataDir, folder }) =>
      demo(folder).pipe(Effect.provide(Layer.fresh(Engine.layer({ dataFolder: dataDir }))))
  )
)

const summary = "run and inspect Navidrome-compatible WebAssembly plugins"

const ndp = Command.make("ndp").pipe(
  Command.withDescription(summary),
  Command.withSubcommands([
    inspect.command,
    callCommand.command,
    pack.command,
    demoCommand.command,
    serve.command,
    plugins.command
  ])
)

/** The program's commands, for help and suggestions. */
export const commandTree: CommandNode = {
  name: "ndp",
  summary,
  command: ndp,
  children: [inspect.node, callCommand.node, pack.node, demoCommand.node, serve.node, plugins.node]
}

const cliRun = Command.run(ndp, { name: "ndp", version: "0.1.0" })

const logLevels: Record<string, LogLevel.LogLevel> = Object.fromEntries(
  LogLevel.allLevels.map((level) => [level.label.toLowerCase(), level])
)

/** Takes `--log-level X` / `--log-level=X` out of the line wherever it is (before a `--`). */
const extractLogLevel = (args: ReadonlyArray<string>) => {
  const rest: Array<string> = []
  let level: Option.Option<LogLevel.LogLevel> = Option.none()
  let error: string | undefined
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") {
      rest.push(...args.slice(i))
      break
    }
    const inline = arg.startsWith("--log-level=") ? arg.slice("--log-level=".length) : undefined
    if (arg !== "--log-level" && inline === undefined) {
      rest.push(arg)
      continue
    }
    const value = inline ?? args[++i]
    const found = value === undefined ? undefined : logLevels[value.toLowerCase()]
    if (found === undefined) {
      error = `--log-level takes one of ${Object.keys(logLevels).join(", ")}${value === undefined ? "" : `, got "${value}"`}`
    } else {
      level = Option.some(found)
    }
  }
  return { rest, level, error }
}

/** A usage error; `printed`: @effect/cli already printed it on stderr, enough without --json. */
const usageError = (json: boolean, message: string, printed: boolean) =>
  Effect.fail(
    new CommandFailure({
      code: ExitCode.usage,
      tag: "UsageError",
      reason: "Usage",
      message,
      reported: printed && !json
    })
  )

const isCommandFailure = (error: unknown): error is CommandFailure => error instanceof CommandFailure

/** With --json, anything unexpected is still an envelope on stdout (details on stderr). */
const reportUnexpected = (cause: Cause.Cause<unknown>) => {
  if (Cause.isInterruptedOnly(cause) || Cause.failureOption(cause).pipe(Option.exists(isCommandFailure)))
    return Effect.failCause(cause)
  const squashed = Cause.squash(cause)
  const failure = (reported: boolean) =>
    new CommandFailure({
      code: ExitCode.usage,
      tag: "UnexpectedError",
      reason: "Unexpected",
      message: squashed instanceof Error ? squashed.message : String(squashed),
      reported
    })
  return Console.error(Cause.pretty(cause)).pipe(
    Effect.zipRight(reportFailure(true)(failure(false))),
    Effect.zipRight(Effect.fail(failure(true)))
  )
}

/**
 * The exit code of a finished run, decided here only: 0 on success, a `CommandFailure`'s code, 1 for
 * anything else, 130 when stopped by a signal, except for `serve`, whose normal end is that stop.
 */
export const exitCodeOf = (exit: Exit.Exit<unknown, unknown>, argv: ReadonlyArray<string>): number => {
  if (Exit.isSuccess(exit)) return ExitCode.ok
  if (Cause.isInterruptedOnly(exit.cause))
    return extractLogLevel(argv.slice(2)).rest[0] === "serve" ? ExitCode.ok : 130
  return Cause.failureOption(exit.cause).pipe(
    Option.filter(isCommandFailure),
    Option.match({ onNone: () => ExitCode.usage, onSome: (failure) => failure.code })
  )
}

/** The program for `process.argv`: help, `--log-level` anywhere, colours, and the `--json` envelope. */
export const run = (argv: ReadonlyArray<string>) => {
  const colour = { out: useColour(process.stdout), err: useColour(process.stderr) }
  const args = argv.slice(2)
  const end = args.indexOf("--")
  const flags = end < 0 ? args : args.slice(0, end)
  const json = flags.includes("--json")
  const { error, level, rest } = extractLogLevel(args)

  const program = Effect.gen(function* () {
    if (error !== undefined) return yield* usageError(json, error, false)
    const { next, path } = commandPath(commandTree, rest)
    const node = path[path.length - 1]!
    const prefix = path.map((n) => n.name).join(" ")
    if (flags.includes("--help") || flags.includes("-h"))
      return yield* Console.log(helpText(path, colour.out))
    if (node.children !== undefined && flags.includes("--version")) return yield* cliRun(argv)
    if (node.children !== undefined) {
      const word = rest[next]
      const names = node.children.map((c) => c.name)
      if (word === undefined) {
        if (!json) yield* Console.error(helpText(path, colour.err))
        return yield* usageError(json, `${prefix} needs a command: ${names.join(", ")}`, !json)
      }
      const guess = closest(word, names)
      return yield* usageError(
        json,
        `unknown command "${word}" for ${prefix}${guess === undefined ? "" : `; did you mean "${guess}"?`} The commands are ${names.join(", ")}`,
        false
      )
    }
    yield* cliRun([...argv.slice(0, 2), ...rest]).pipe(
      Effect.catchIf(ValidationError.isValidationError, (e) => {
        const message = docText(e.error)
        const unknown = /unknown argument: '([^']+)'/.exec(message)?.[1]
        const guess =
          unknown !== undefined && unknown.startsWith("-")
            ? closest(unknown.split("=")[0]!, flagNames(node))
            : undefined
        const hint = guess === undefined ? "" : `did you mean ${guess}? (${prefix} --help lists the options)`
        return Effect.zipRight(
          hint !== "" && !json ? Console.error(hint) : Effect.void,
          usageError(json, hint === "" ? message : `${message}; ${hint}`, true)
        )
      })
    )
  })

  return program.pipe(
    // Every command's failure is reported here, once; the entry then exits with its code.
    Effect.tapErrorTag("CommandFailure", reportFailure(json)),
    Option.isSome(level) ? Logger.withMinimumLogLevel(level.value) : (effect) => effect,
    Effect.provideService(LogLevelFlag, level),
    json ? Effect.catchAllCause(reportUnexpected) : (effect) => effect,
    // Logs go to stderr so stdout stays machine-readable; coloured only on a terminal. The whole set
    // is replaced, whatever logger the entry program installed.
    Effect.locally(
      FiberRef.currentLoggers,
      HashSet.make(Logger.prettyLogger({ stderr: true, colors: colour.err }))
    ),
    (effect) => Console.consoleWith((base) => Console.withConsole(effect, plainConsole(base, colour)))
  )
}

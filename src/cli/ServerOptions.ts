/**
 * What `ndp serve` and `ndp plugins …` share: the options naming the folders and the settings file,
 * how they become settings, the exit codes, and how a failure is reported (text or `--json`).
 */
import * as Options from "@effect/cli/Options"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as ManagerConfig from "../manager/ManagerConfig.js"
import type { ManagerError } from "../manager/PluginManager.js"
import type { RegistryError } from "../manager/Registry.js"
import type { StorageError } from "../storage/StorageError.js"
import type { ConfigIssue } from "../manifest/PluginConfig.js"
import type { WorkerScriptError } from "../runtime/internal/WorkerScript.js"

/**
 * Exit codes of `serve` and `plugins` (docs/manager.md): 0 ok, 1 usage or bad settings, 3 a plugin
 * cannot load, 4 the manager refused (unknown plugin, permission gate, invalid config), 5 the
 * registry could not be opened or written.
 */
export const ManagerExitCode = { ok: 0, usage: 1, cannotLoad: 3, refused: 4, registry: 5 } as const

/** The options naming where plugins and data live. */
export const locationOptions = {
  folder: Options.directory("folder").pipe(
    Options.withPseudoName("DIR"),
    Options.optional,
    Options.withDescription("the plugins folder (*.ndp); default <data-dir>/plugins")
  ),
  dataDir: Options.directory("data-dir").pipe(
    Options.withPseudoName("DIR"),
    Options.optional,
    Options.withDescription("the data folder holding the registry ndp.db; default ./ndp-data")
  ),
  configFile: Options.file("config-file", { exists: "yes" }).pipe(
    Options.withPseudoName("FILE"),
    Options.optional,
    Options.withDescription("settings file (.toml or .json) with a [Plugins] block")
  ),
  database: Options.text("database").pipe(
    Options.withPseudoName("URL"),
    Options.optional,
    Options.withDescription(
      "a postgres:// URL: the database of a cluster, whose registry this edits; serve joins as a node (docs/cluster.md)"
    )
  )
}

/** The `--log-level` given on the command line, if any (it wins over the `LogLevel` setting). */
export class LogLevelFlag extends Context.Reference<LogLevelFlag>()("ndp-engine/cli/LogLevelFlag", {
  defaultValue: (): Option.Option<LogLevel.LogLevel> => Option.none()
}) {}

/** Prints one JSON value on stdout. */
export const printJson = (value: unknown) => Console.log(JSON.stringify(value, null, 2))

/**
 * A command ended without doing what was asked; `code` is the exit code. Commands fail with it and
 * print nothing about it: `run` reports it once (text or envelope) and the entry exits with `code`.
 */
export class CommandFailure extends Data.TaggedError("CommandFailure")<{
  readonly code: number
  /** Already shown to the user (an inspect report, a usage error @effect/cli printed): only exit. */
  readonly reported?: boolean | undefined
  readonly tag: string
  readonly reason: string
  readonly message: string
  readonly hint?: string | undefined
  readonly issues?: ReadonlyArray<ConfigIssue> | undefined
  /** Why a package would not load, one line each. */
  readonly problems?: ReadonlyArray<string> | undefined
}> {}

/** A usage mistake the option parser cannot see (conflicting flags, a malformed pair). */
export const usageFailure = (reason: string, message: string) =>
  new CommandFailure({ code: ManagerExitCode.usage, tag: "UsageError", reason, message })

/** Maps the manager's, the registry's and the settings' errors to a failure with its exit code. */
export const toFailure = (
  error:
    | ManagerError
    | RegistryError
    | StorageError
    | ManagerConfig.ManagerConfigError
    | WorkerScriptError
    | CommandFailure
): CommandFailure => {
  switch (error._tag) {
    case "CommandFailure":
      return error
    case "WorkerScriptError":
      return new CommandFailure({
        code: ManagerExitCode.cannotLoad,
        tag: error._tag,
        reason: "WorkerScript",
        message: error.message
      })
    case "ManagerConfigError":
      return new CommandFailure({
        code: ManagerExitCode.usage,
        tag: error._tag,
        reason: error.reason,
        message: error.message
      })
    // The registry lives in the engine's database: a database that cannot open is a registry failure.
    case "StorageError":
    case "RegistryError":
      return new CommandFailure({
        code: ManagerExitCode.registry,
        tag: error._tag,
        reason: "Registry",
        message: error.message
      })
    case "ManagerError": {
      const code =
        error.reason === "Registry"
          ? ManagerExitCode.registry
          : error.reason === "LoadFailed"
            ? ManagerExitCode.cannotLoad
            : ManagerExitCode.refused
      const hint =
        error.reason !== "PermissionGate"
          ? undefined
          : error.message.includes("library")
            ? "pass --library ID (repeatable) or --all-libraries to enable"
            : "pass --user NAME (repeatable) or --all-users to enable"
      return new CommandFailure({ code, tag: error._tag, reason: error.reason, message: error.message, hint })
    }
  }
}

/**
 * Prints a failure: on stderr, or with `--json` as the envelope
 * `{ok: false, error: {tag, reason, message, …}}` on stdout. `run` calls it, once per failure.
 */
export const reportFailure = (json: boolean) => (failure: CommandFailure) =>
  failure.reported === true
    ? Effect.void
    : json
      ? printJson({
          ok: false,
          error: {
            tag: failure.tag,
            reason: failure.reason,
            message: failure.message,
            ...(failure.issues === undefined ? {} : { issues: failure.issues }),
            ...(failure.problems === undefined ? {} : { problems: failure.problems }),
            ...(failure.hint === undefined ? {} : { hint: failure.hint })
          }
        })
      : Console.error(
          [
            `error [${failure.reason}]: ${failure.message}`,
            ...(failure.issues ?? []).map((i) => `  ${i.path === "" ? "(config)" : i.path}: ${i.message}`),
            ...(failure.problems ?? []).map((p) => `  problem: ${p}`),
            ...(failure.hint === undefined ? [] : [`  ${failure.hint}`])
          ].join("\n")
        )

/** Settings from `--config-file`, the environment and the given flags (flags win). */
export const loadSettings = (
  args: {
    readonly folder: Option.Option<string>
    readonly dataDir: Option.Option<string>
    readonly configFile: Option.Option<string>
    readonly database?: Option.Option<string>
  },
  extra: Partial<Record<ManagerConfig.SettingKey, string>> = {}
): Effect.Effect<ManagerConfig.ManagerSettings, ManagerConfig.ManagerConfigError, FileSystem.FileSystem> =>
  ManagerConfig.load({
    file: Option.getOrUndefined(args.configFile),
    overrides: {
      ...extra,
      ...Option.match(args.folder, { onNone: () => ({}), onSome: (Folder) => ({ Folder }) }),
      ...Option.match(args.dataDir, { onNone: () => ({}), onSome: (DataFolder) => ({ DataFolder }) }),
      ...Option.match(args.database ?? Option.none(), {
        onNone: () => ({}),
        onSome: (Database) => ({ Database })
      })
    }
  })

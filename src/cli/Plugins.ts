/**
 * `ndp plugins list|enable|disable|config|rescan`: edit the registry of a plugins folder. They load
 * no plugin (the manager runs with `live: false`), so they work whether or not an `ndp serve` runs
 * on the same folders; a running server picks the change up from the registry within about 1 s.
 * With `--database` they edit a cluster's registry, and every node of it follows.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { existsSync } from "node:fs"
import * as Engine from "../Engine.js"
import type { AccessList } from "../host/HostFunctions.js"
import { PluginLoader } from "../loader/PluginLoader.js"
import { type ManagerSettings, toOptions } from "../manager/ManagerConfig.js"
import * as PluginManager from "../manager/PluginManager.js"
import * as Registry from "../manager/Registry.js"
import { decodeManifest } from "../manifest/Manifest.js"
import * as PgStorage from "../storage/PgStorage.js"
import { sharedAsStorage } from "../storage/Storage.js"
import { type ConfigObject, validateConfig } from "../manifest/PluginConfig.js"
import { described } from "./Help.js"
import {
  CommandFailure,
  loadSettings,
  locationOptions,
  ManagerExitCode,
  printJson,
  toFailure,
  usageFailure
} from "./ServerOptions.js"

/** One plugin as `list --json` prints it. */
export interface PluginEntry {
  readonly id: string
  readonly name: string
  readonly version: string
  readonly enabled: boolean
  readonly capabilities: ReadonlyArray<string>
  readonly lastError: string | null
  readonly users: AccessList<string>
  readonly libraries: AccessList<number>
  readonly allowedNetworks: ReadonlyArray<string>
  /** Whether the plugin may write to its library folders. */
  readonly allowWrite: boolean
  readonly path: string
  readonly sha256: string
}

type Services = PluginManager.PluginManager | Registry.Registry | PluginLoader

// One worker is plenty: these commands only inspect packages, they never run plugin code.
const registryLayer = (settings: ManagerSettings) => {
  const { engine, manager } = toOptions(settings, false)
  // With a Database, the registry edited is the cluster's, which every node follows.
  const registry =
    settings.database === undefined
      ? Registry.layer
      : Registry.layer.pipe(
          Layer.provide(sharedAsStorage),
          Layer.provide(PgStorage.layerUrl(settings.database))
        )
  return PluginManager.layer(manager).pipe(
    Layer.provideMerge(registry),
    Layer.provideMerge(Engine.layer({ ...engine, runtime: { ...engine.runtime, poolSize: 1 } }))
  )
}

const json = Options.boolean("json").pipe(Options.withDescription("print JSON on stdout"))
const pluginId = Args.text({ name: "id" }).pipe(
  Args.withDescription("the plugin ID (its file name without .ndp)")
)

/** Runs `body` against the registry of the folders the options name; failures carry their exit code. */
const withRegistry = <E extends Parameters<typeof toFailure>[0]>(
  args: Parameters<typeof loadSettings>[0] & { readonly json: boolean },
  body: (settings: ManagerSettings) => Effect.Effect<void, E, Services>
) =>
  Effect.gen(function* () {
    const settings = yield* loadSettings(args)
    yield* body(settings).pipe(Effect.provide(registryLayer(settings)))
  }).pipe(Effect.mapError(toFailure))

// The manifest lists no capabilities; they are read from the module's exports (no plugin code runs).
const entryOf = (status: PluginManager.PluginStatus) =>
  Effect.gen(function* () {
    const loader = yield* PluginLoader
    const report = yield* Effect.option(loader.inspectFile(status.path))
    const entry: PluginEntry = {
      id: status.id,
      name: status.name,
      version: status.version,
      enabled: status.enabled,
      capabilities: Option.match(report, {
        onNone: () => status.capabilities,
        onSome: (r) => r.capabilities
      }),
      lastError: status.lastError,
      users: status.users,
      libraries: status.libraries,
      allowedNetworks: status.allowedNetworks,
      allowWrite: status.allowWrite,
      path: status.path,
      sha256: status.sha256
    }
    return entry
  })

const accessText = (what: string, list: AccessList<string | number>) =>
  list === "all" ? `  ${what}: all` : list.length > 0 ? `  ${what}: ${list.join(", ")}` : ""

const entryLine = (e: PluginEntry, width: number) =>
  `${e.id.padEnd(width)}  ${e.enabled ? "enabled " : "disabled"}  ${e.name} ${e.version}  [${e.capabilities.join(", ")}]` +
  accessText("users", e.users) +
  accessText("libraries", e.libraries) +
  accessText("networks", e.allowedNetworks) +
  (e.allowWrite ? "  library write access" : "") +
  (e.lastError === null ? "" : `  error: ${e.lastError}`)

/** The folders first (which ones a command used is the first thing to check when a plugin is missing). */
const printEntries = (json: boolean, settings: ManagerSettings) =>
  Effect.gen(function* () {
    const manager = yield* PluginManager.PluginManager
    const entries = yield* Effect.forEach(yield* manager.list, entryOf)
    const folders = { folder: settings.folder, dataFolder: settings.dataFolder }
    if (json) return yield* printJson({ ok: true, ...folders, plugins: entries })
    yield* Console.log(`plugins folder ${settings.folder} (data ${settings.dataFolder})`)
    if (!existsSync(settings.folder)) {
      yield* Console.error(
        `warning: the plugins folder ${settings.folder} does not exist; create it and put .ndp files in it, or pass --folder`
      )
    }
    if (entries.length === 0) return yield* Console.log("(no plugins)")
    const width = Math.max(...entries.map((e) => e.id.length))
    for (const e of entries) yield* Console.log(entryLine(e, width))
  })

const printChanged = (json: boolean, verb: string, status: PluginManager.PluginStatus) =>
  Effect.gen(function* () {
    const entry = yield* entryOf(status)
    yield* json ? printJson({ ok: true, plugin: entry }) : Console.log(`${verb} ${entry.id}`)
  })

const list = described(
  "list the registered plugins (syncing the folder first) and the folders used",
  Command.make("list", { ...locationOptions, json }, (args) =>
    withRegistry(args, (settings) => printEntries(args.json, settings))
  )
)

const rescan = described(
  "sync the plugins folder into the registry, then list",
  Command.make("rescan", { ...locationOptions, json }, (args) =>
    withRegistry(args, (settings) =>
      Effect.gen(function* () {
        yield* (yield* PluginManager.PluginManager).rescan
        yield* printEntries(args.json, settings)
      })
    )
  )
)

const enable = described(
  "enable a plugin (a running ndp serve loads it); --user/--all-users and --library/--all-libraries satisfy its permission gates; --allow-network grants it private networks; --allow-write lets it write to its library folders (--read-only takes that back)",
  Command.make(
    "enable",
    {
      ...locationOptions,
      json,
      id: pluginId,
      user: Options.text("user").pipe(
        Options.withPseudoName("NAME"),
        Options.repeated,
        Options.withDescription("allow exactly these users; replaces the plugin's list")
      ),
      allUsers: Options.boolean("all-users").pipe(Options.withDescription("allow every user")),
      // Text, parsed below: @effect/cli's repeated integer option rejects plain integers.
      library: Options.text("library").pipe(
        Options.withPseudoName("ID"),
        Options.repeated,
        Options.withDescription("allow exactly these library IDs; replaces the plugin's list")
      ),
      allLibraries: Options.boolean("all-libraries").pipe(Options.withDescription("allow every library")),
      allowNetwork: Options.text("allow-network").pipe(
        Options.withPseudoName("NET"),
        Options.repeated,
        Options.withDescription(
          "grant a network: a CIDR block (192.168.1.0/24), an IP address or a host name; replaces the plugin's grants"
        )
      ),
      noNetworks: Options.boolean("no-networks").pipe(Options.withDescription("remove every network grant")),
      allowWrite: Options.boolean("allow-write").pipe(
        Options.withDescription(
          "let the plugin write to the library folders it may see (library.filesystem); still jailed in each"
        )
      ),
      readOnly: Options.boolean("read-only").pipe(
        Options.withDescription("library folders read-only again (the default)")
      )
    },
    (args) =>
      withRegistry(args, () =>
        Effect.gen(function* () {
          if (args.allUsers && args.user.length > 0) {
            return yield* usageFailure("ConflictingOptions", "give either --all-users or --user, not both")
          }
          if (args.allLibraries && args.library.length > 0) {
            return yield* usageFailure(
              "ConflictingOptions",
              "give either --all-libraries or --library, not both"
            )
          }
          if (args.noNetworks && args.allowNetwork.length > 0) {
            return yield* usageFailure(
              "ConflictingOptions",
              "give either --no-networks or --allow-network, not both"
            )
          }
          if (args.allowWrite && args.readOnly) {
            return yield* usageFailure(
              "ConflictingOptions",
              "give either --allow-write or --read-only, not both"
            )
          }
          const libraryIds = args.library.map(Number)
          const bad = args.library.find(
            (text, i) => !/^\d+$/.test(text) || !Number.isSafeInteger(libraryIds[i])
          )
          if (bad !== undefined) {
            return yield* usageFailure(
              "InvalidLibrary",
              `--library takes a library ID (a whole number), got "${bad}"`
            )
          }
          const manager = yield* PluginManager.PluginManager
          // Networks first: the manager may refuse them, and then nothing has been written yet.
          if (args.noNetworks || args.allowNetwork.length > 0) {
            yield* manager.setNetworks(args.id, args.noNetworks ? [] : args.allowNetwork)
          }
          if (args.allUsers || args.user.length > 0) {
            yield* manager.setUsers(args.id, args.allUsers ? "all" : args.user)
          }
          if (args.allLibraries || args.library.length > 0) {
            yield* manager.setLibraries(args.id, args.allLibraries ? "all" : libraryIds)
          }
          if (args.allowWrite || args.readOnly) yield* manager.setAllowWrite(args.id, args.allowWrite)
          yield* printChanged(args.json, "enabled", yield* manager.enable(args.id))
        })
      )
  )
)

const disable = described(
  "disable a plugin (a running ndp serve unloads it)",
  Command.make("disable", { ...locationOptions, json, id: pluginId }, (args) =>
    withRegistry(args, () =>
      Effect.flatMap(PluginManager.PluginManager, (manager) =>
        Effect.flatMap(manager.disable(args.id), (status) => printChanged(args.json, "disabled", status))
      )
    )
  )
)

/** `key=value` → [key, value]; the value is JSON when it parses as JSON, else the text itself. */
export const parseSetPair = (pair: string): [string, unknown] | undefined => {
  const at = pair.indexOf("=")
  if (at <= 0) return undefined
  const text = pair.slice(at + 1)
  let value: unknown = text
  try {
    value = JSON.parse(text)
  } catch {
    // Not JSON: the text is the value.
  }
  return [pair.slice(0, at), value]
}

const config = described(
  "show a plugin's configuration, or change it with --set/--unset (validated against its manifest's schema)",
  Command.make(
    "config",
    {
      ...locationOptions,
      json,
      id: pluginId,
      set: Options.text("set").pipe(
        Options.withPseudoName("key=value"),
        Options.repeated,
        Options.withDescription("set a key; the value is parsed as JSON if it can be, else kept as text")
      ),
      unset: Options.text("unset").pipe(
        Options.withPseudoName("key"),
        Options.repeated,
        Options.withDescription("remove a key")
      ),
      replace: Options.boolean("replace").pipe(
        Options.withDescription("start from an empty configuration instead of the current one")
      )
    },
    (args) =>
      withRegistry(args, () =>
        Effect.gen(function* () {
          const manager = yield* PluginManager.PluginManager
          const current = yield* manager.get(args.id)
          if (args.set.length === 0 && args.unset.length === 0 && !args.replace) {
            return yield* args.json
              ? printJson({ ok: true, id: args.id, config: current.config })
              : Console.log(JSON.stringify(current.config, null, 2))
          }
          const next: Record<string, unknown> = args.replace ? {} : { ...current.config }
          for (const key of args.unset) delete next[key]
          for (const pair of args.set) {
            const parsed = parseSetPair(pair)
            if (parsed === undefined) {
              return yield* usageFailure("InvalidPair", `--set ${JSON.stringify(pair)} is not key=value`)
            }
            next[parsed[0]] = parsed[1]
          }
          yield* checkConfig(args.id, next)
          yield* printChanged(args.json, "configured", yield* manager.setConfig(args.id, next))
        })
      )
  )
)

// The manager validates too, but only this check keeps the per-field issues for printing.
const checkConfig = (id: string, config: ConfigObject) =>
  Effect.gen(function* () {
    const registry = yield* Registry.Registry
    const record = yield* registry.get(id)
    if (Option.isNone(record)) return
    const manifest = yield* Effect.option(decodeManifest(record.value.manifest))
    if (Option.isNone(manifest)) return
    const checked = yield* Effect.either(validateConfig(manifest.value, config))
    if (checked._tag === "Left") {
      return yield* new CommandFailure({
        code: ManagerExitCode.refused,
        tag: "ManagerError",
        reason: "InvalidConfig",
        message: `invalid configuration for plugin ${id}`,
        issues: checked.left.issues ?? [{ path: "", message: checked.left.message }]
      })
    }
  })

/** `ndp plugins …`. */
export const plugins = described(
  "list, enable, disable, configure and rescan the plugins of a folder",
  Command.make("plugins").pipe(
    Command.withSubcommands([list.command, enable.command, disable.command, config.command, rescan.command])
  ),
  [list.node, enable.node, disable.node, config.node, rescan.node]
)

/**
 * `ndp serve`: a long-running plugin host. It starts the engine, the registry and the manager on a
 * plugins folder, prints one status line per plugin whenever its state changes, follows the registry
 * (so `ndp plugins enable` in another shell takes effect) and, with auto-reload, the folder. On
 * SIGINT/SIGTERM it drains running calls, unloads everything, prints `stopped` and exits 0.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { existsSync } from "node:fs"
import * as Engine from "../Engine.js"
import { PluginLoader } from "../loader/PluginLoader.js"
import { type ManagerSettings, toOptions } from "../manager/ManagerConfig.js"
import * as PluginManager from "../manager/PluginManager.js"
import * as MetadataAgents from "../manager/MetadataAgents.js"
import * as Registry from "../manager/Registry.js"
import * as Scrobblers from "../manager/Scrobblers.js"
import { described } from "./Help.js"
import { loadSettings, LogLevelFlag, locationOptions, toFailure } from "./ServerOptions.js"

/** How often the status lines are refreshed. */
const STATUS_INTERVAL_MS = 500

/** The status line of one plugin, e.g. `agent-full: loaded (agent-full 1.0.0) [MetadataAgent]`. */
export const statusLine = (
  status: PluginManager.PluginStatus,
  capabilities: ReadonlyArray<string>
): string => {
  const state = status.loaded ? "loaded" : status.enabled ? "loading" : "disabled"
  const what = status.version === "" ? status.name : `${status.name} ${status.version}`
  const error = status.lastError === null ? "" : ` - last error: ${status.lastError}`
  return `${status.id}: ${state} (${what}) [${capabilities.join(", ")}]${error}`
}

/** Prints a line per plugin whose status changed since the last look, and one per removed plugin. */
const statusPrinter = Layer.scopedDiscard(
  Effect.gen(function* () {
    const manager = yield* PluginManager.PluginManager
    const loader = yield* PluginLoader
    const shown = new Map<string, string>()
    // By SHA-256: a package's capabilities never change, and inspecting compiles the module.
    const inspected = new Map<string, ReadonlyArray<string>>()

    const capabilitiesOf = (status: PluginManager.PluginStatus) =>
      status.loaded
        ? Effect.succeed(status.capabilities)
        : Effect.suspend(() => {
            const known = inspected.get(status.sha256)
            if (known !== undefined) return Effect.succeed(known)
            return loader.inspectFile(status.path).pipe(
              Effect.map((report) => report.capabilities),
              Effect.orElseSucceed((): ReadonlyArray<string> => []),
              Effect.tap((capabilities) => Effect.sync(() => inspected.set(status.sha256, capabilities)))
            )
          })

    const refresh = Effect.gen(function* () {
      const statuses = yield* manager.list
      const present = new Set<string>()
      for (const status of statuses) {
        present.add(status.id)
        const line = statusLine(status, yield* capabilitiesOf(status))
        if (shown.get(status.id) === line) continue
        shown.set(status.id, line)
        yield* Console.log(line)
      }
      for (const id of [...shown.keys()]) {
        if (present.has(id)) continue
        shown.delete(id)
        yield* Console.log(`${id}: removed`)
      }
      return statuses.length
    }).pipe(
      Effect.catchAll((error) => Effect.as(Effect.logWarning(`cannot list plugins: ${error.message}`), -1))
    )

    if ((yield* refresh) === 0) yield* Console.log("(no plugins yet)")
    yield* Effect.forkScoped(Effect.repeat(refresh, Schedule.spaced(STATUS_INTERVAL_MS)))
  })
)

/**
 * The whole server: engine, registry, manager (live), the metadata agents in their configured
 * order, scrobbling with its durable retry queue, and the status printer.
 */
export const serverLayer = (settings: ManagerSettings) => {
  const { engine, manager } = toOptions(settings, true)
  return statusPrinter.pipe(
    Layer.provideMerge(Layer.merge(MetadataAgents.layer({ agents: settings.agents }), Scrobblers.layer())),
    Layer.provideMerge(PluginManager.layer(manager)),
    Layer.provideMerge(Registry.layer),
    Layer.provideMerge(Engine.layer(engine))
  )
}

const header = (s: ManagerSettings) =>
  [
    `serving plugins from ${s.folder} (data ${s.dataFolder})`,
    `auto-reload ${s.autoReload ? `on (debounce ${s.debounceMs} ms)` : "off"}`,
    ...(s.agents.length > 0 ? [`agents ${s.agents.join(", ")}`] : [])
  ].join("; ")

/** `ndp serve`. */
export const serve = described(
  "run the plugins of a folder, print their status as it changes, until stopped",
  Command.make(
    "serve",
    {
      ...locationOptions,
      autoReload: Options.boolean("auto-reload").pipe(
        Options.withDescription("watch the folder and act on new, changed and removed packages")
      )
    },
    (args) =>
      Effect.gen(function* () {
        const settings = yield* loadSettings(args, args.autoReload ? { AutoReload: "true" } : {})
        if (!settings.enabled) {
          yield* Console.error(
            "plugins are disabled in the settings (Plugins.Enabled = false): nothing to serve"
          )
          return
        }
        // Checked before the manager starts: with auto-reload it creates the folder.
        if (!existsSync(settings.folder)) {
          yield* Console.error(
            `warning: the plugins folder ${settings.folder} does not exist; ${
              settings.autoReload
                ? "it is created and watched: copy .ndp files into it"
                : "create it, put .ndp files in it and run ndp plugins rescan (or pass --folder, or --auto-reload)"
            }`
          )
        }
        yield* Console.log(header(settings))
        // --log-level on the command line wins over the LogLevel setting.
        const level = Option.getOrElse(yield* LogLevelFlag, () => settings.logLevel)
        yield* Layer.launch(serverLayer(settings)).pipe(
          // Runs once the layer's scope has closed: calls drained, plugins unloaded, workers stopped.
          // The stop is serve's normal end: the entry exits 0 for it (`exitCodeOf`).
          Effect.onInterrupt(() => Console.log("stopped")),
          Logger.withMinimumLogLevel(level)
        )
      }).pipe(Effect.mapError(toFailure))
  )
)

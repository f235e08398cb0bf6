/**
 * `ndp serve`: a long-running plugin host. It starts the engine, the registry and the manager on a
 * plugins folder, prints one status line per plugin whenever its state changes, follows the registry
 * (so `ndp plugins enable` in another shell takes effect) and, with auto-reload, the folder. On
 * SIGINT/SIGTERM it drains running calls, unloads everything, prints `stopped` and exits 0.
 */
import * as Command from "@effect/cli/Command"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import { existsSync } from "node:fs"
import * as AdminAuth from "../admin/AdminAuth.js"
import * as AdminHttp from "../admin/AdminHttp.js"
import * as PluginLogs from "../admin/PluginLogs.js"
import * as Cluster from "../cluster/Cluster.js"
import * as Engine from "../Engine.js"
import * as OtlpExport from "../metrics/OtlpExport.js"
import { PluginLoader } from "../loader/PluginLoader.js"
import { type ManagerSettings, toOptions } from "../manager/ManagerConfig.js"
import * as PluginManager from "../manager/PluginManager.js"
import * as MetadataAgents from "../manager/MetadataAgents.js"
import * as Registry from "../manager/Registry.js"
import * as Scrobblers from "../manager/Scrobblers.js"
import { described } from "./Help.js"
import {
  CommandFailure,
  loadSettings,
  LogLevelFlag,
  locationOptions,
  ManagerExitCode,
  toFailure,
  usageFailure
} from "./ServerOptions.js"

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
  // With a Database, this process is one node of a cluster on it (docs/cluster.md).
  const engineLayer =
    settings.database === undefined
      ? Engine.layer(engine)
      : Engine.layer(engine).pipe(
          Layer.provide(
            Cluster.layerPostgres(settings.database).pipe(
              Layer.mapError(
                (error) =>
                  new CommandFailure({
                    code: ManagerExitCode.usage,
                    tag: error._tag,
                    reason: "Database",
                    message: error.message
                  })
              )
            )
          )
        )
  return statusPrinter.pipe(
    Layer.provideMerge(Layer.merge(MetadataAgents.layer({ agents: settings.agents }), Scrobblers.layer())),
    Layer.provideMerge(PluginManager.layer(manager)),
    Layer.provideMerge(Registry.layer),
    Layer.provideMerge(engineLayer)
  )
}

/** `--http`: `PORT` (on 127.0.0.1), `HOST:PORT` or `[IPv6]:PORT`. */
export const parseListen = (text: string): AdminHttp.Listen | undefined => {
  const match = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):)?(\d{1,5})$/.exec(text.trim())
  if (match === null) return undefined
  const port = Number(match[3])
  if (port > 65_535) return undefined
  return { host: match[1] ?? match[2] ?? "127.0.0.1", port }
}

/** The environment variable an operator sets to choose the admin token. */
export const adminTokenVariable = "NDP_ADMIN_TOKEN"

/** Prints where the admin module listens and, at its first start only, the token it generated. */
const announceAdmin = (dataFolder: string) =>
  Layer.effectDiscard(
    Effect.gen(function* () {
      const server = yield* HttpServer.HttpServer
      const auth = yield* AdminAuth.AdminAuth
      const address =
        server.address._tag === "TcpAddress"
          ? `http://${server.address.hostname.includes(":") ? `[${server.address.hostname}]` : server.address.hostname}:${server.address.port}/`
          : `unix:${server.address.path}`
      yield* Console.log(`admin: ${address}`)
      yield* Option.match(auth.generated, {
        onNone: () => Effect.void,
        onSome: (token) =>
          Console.log(
            `admin token (shown once; only its hash is kept in ${AdminAuth.tokenFile(dataFolder)}): ${Redacted.value(token)}`
          )
      })
    })
  )

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
      ),
      http: Options.text("http").pipe(
        Options.withPseudoName("[HOST:]PORT"),
        Options.optional,
        Options.withDescription(
          `serve the admin API, web page and /metrics there (host 127.0.0.1 when only a port is given); token from ${adminTokenVariable}, else generated once`
        )
      ),
      database: Options.text("database").pipe(
        Options.withPseudoName("URL"),
        Options.optional,
        Options.withDescription(
          "a postgres:// URL: run as one node of a cluster sharing it (docs/cluster.md)"
        )
      ),
      otlpEndpoint: Options.text("otlp-endpoint").pipe(
        Options.withPseudoName("URL"),
        Options.optional,
        Options.withDescription(
          `send metrics and spans to this OpenTelemetry collector (OTLP/HTTP); default ${OtlpExport.endpointVariable}, else off`
        )
      )
    },
    (args) =>
      Effect.gen(function* () {
        const settings = yield* loadSettings(args, {
          ...(args.autoReload ? { AutoReload: "true" } : {}),
          ...Option.match(args.database, { onNone: () => ({}), onSome: (Database) => ({ Database }) })
        })
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
        const listen = Option.map(args.http, (text) => ({ text, parsed: parseListen(text) }))
        if (Option.isSome(listen) && listen.value.parsed === undefined) {
          return yield* usageFailure(
            "InvalidListen",
            `--http takes PORT, HOST:PORT or [IPv6]:PORT, got "${listen.value.text}"`
          )
        }
        yield* Console.log(header(settings))
        // --log-level on the command line wins over the LogLevel setting.
        const level = Option.getOrElse(yield* LogLevelFlag, () => settings.logLevel)
        const logs = yield* PluginLogs.make()
        const token = process.env[adminTokenVariable]
        const served: Layer.Layer<never, Layer.Layer.Error<ReturnType<typeof serverLayer>> | CommandFailure> =
          Option.match(
            Option.flatMap(listen, (l) => Option.fromNullable(l.parsed)),
            {
              onNone: () =>
                serverLayer(settings).pipe(Layer.provide(Layer.succeed(PluginLogs.PluginLogs, logs))),
              onSome: (at) =>
                announceAdmin(settings.dataFolder).pipe(
                  Layer.provideMerge(
                    AdminHttp.serve({
                      ...at,
                      dataFolder: settings.dataFolder,
                      token: token === undefined || token === "" ? undefined : Redacted.make(token)
                    })
                  ),
                  Layer.provideMerge(serverLayer(settings)),
                  Layer.provide(Layer.succeed(PluginLogs.PluginLogs, logs)),
                  Layer.mapError((error) =>
                    error._tag === "ServeError" || error._tag === "AdminAuthError"
                      ? new CommandFailure({
                          code: ManagerExitCode.usage,
                          tag: error._tag,
                          reason: "AdminHttp",
                          message:
                            error._tag === "ServeError"
                              ? `cannot serve the admin module on ${at.host}:${at.port} (${String(error.cause)}); choose another --http address`
                              : error.message
                        })
                      : error
                  )
                )
            }
          )
        const otlpEndpoint = Option.orElse(args.otlpEndpoint, () =>
          Option.filter(Option.fromNullable(process.env[OtlpExport.endpointVariable]), (url) => url !== "")
        )
        const telemetry = Option.match(otlpEndpoint, {
          onNone: () => Layer.empty,
          onSome: (endpoint) =>
            OtlpExport.layer({ endpoint }).pipe(
              Layer.mapError(
                (error) =>
                  new CommandFailure({
                    code: ManagerExitCode.usage,
                    tag: error._tag,
                    reason: "OtlpEndpoint",
                    message: error.message
                  })
              )
            )
        })
        yield* Layer.launch(Layer.provide(served, telemetry)).pipe(
          Effect.provide(Logger.add(logs.logger)),
          // Runs once the layer's scope has closed: calls drained, plugins unloaded, workers stopped.
          // The stop is serve's normal end: the entry exits 0 for it (`exitCodeOf`).
          Effect.onInterrupt(() => Console.log("stopped")),
          Logger.withMinimumLogLevel(level)
        )
      }).pipe(Effect.mapError(toFailure))
  )
)

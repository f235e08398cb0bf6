/**
 * The admin API's handlers. Every change goes through the `PluginManager` operations `ndp plugins`
 * uses, so the registry stays the one source of truth: a change made from the CLI while the server
 * runs is what the next request reads.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type { AccessList } from "../host/HostFunctions.js"
import { PluginLoader } from "../loader/PluginLoader.js"
import { type ManagerError, PluginManager, type PluginStatus } from "../manager/PluginManager.js"
import { Registry, type RegistryError } from "../manager/Registry.js"
import { decodeManifest, type Manifest } from "../manifest/Manifest.js"
import { validateConfig } from "../manifest/PluginConfig.js"
import * as PluginMetrics from "../metrics/PluginMetrics.js"
import { WasmRuntime } from "../runtime/WasmRuntime.js"
import {
  AdminApi,
  AdminAuthorization,
  AdminFailure,
  CallFailed,
  type Grants,
  InvalidConfig,
  InvalidGrant,
  type PluginView,
  PluginNotFound,
  Refused,
  Unauthorized
} from "./AdminApi.js"
import { AdminAuth } from "./AdminAuth.js"
import { PluginLogs } from "./PluginLogs.js"

/** Characters of a call's output the API returns; the rest is cut (`truncated`). */
export const outputLimitChars = 64 * 1024

type ApiError = PluginNotFound | Refused | InvalidConfig | InvalidGrant | AdminFailure

const fromManager = (error: ManagerError): ApiError => {
  switch (error.reason) {
    case "NotFound":
      return new PluginNotFound({ pluginId: error.pluginId, message: error.message })
    case "InvalidConfig":
      return new InvalidConfig({
        pluginId: error.pluginId,
        message: error.message,
        issues: [{ path: "", message: error.message }]
      })
    case "InvalidNetwork":
      return new InvalidGrant({ pluginId: error.pluginId, field: "networks", message: error.message })
    case "Registry":
    case "Watch":
      return new AdminFailure({ message: error.message })
    default:
      return new Refused({ pluginId: error.pluginId, reason: error.reason, message: error.message })
  }
}

const fromRegistry = (error: RegistryError) => new AdminFailure({ message: error.message })

/** The bearer-token check in front of every endpoint. */
export const authorizationLayer = Layer.effect(
  AdminAuthorization,
  Effect.map(AdminAuth, (auth) =>
    AdminAuthorization.of({
      bearer: (token) =>
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          const from = `${Option.getOrElse(request.remoteAddress, () => "an unknown address")} (${request.method} ${request.url})`
          if (!(yield* auth.verify(token, from))) {
            return yield* new Unauthorized({
              message: "a valid admin token is required: send it as Authorization: Bearer <token>"
            })
          }
        })
    })
  )
)

const stateOf = (s: PluginStatus): PluginView["state"] =>
  s.loaded ? "loaded" : s.enabled ? "loading" : s.lastError !== null ? "error" : "disabled"

const permissionsOf = (manifest: Option.Option<Manifest>): PluginView["permissions"] =>
  Option.match(manifest, {
    onNone: () => [],
    onSome: (m) =>
      Object.entries(m.permissions).flatMap(([name, block]) => {
        if (block === undefined) return []
        const { reason, ...details } = block as { readonly reason?: string }
        return [{ name, reason: reason ?? null, details }]
      })
  })

export const pluginsLayer = HttpApiBuilder.group(AdminApi, "plugins", (handlers) =>
  Effect.gen(function* () {
    const manager = yield* PluginManager
    const registry = yield* Registry
    const loader = yield* PluginLoader
    const runtime = yield* WasmRuntime
    const logs = yield* PluginLogs
    // By SHA-256: a package's capabilities never change, and inspecting compiles the module.
    const inspected = new Map<string, ReadonlyArray<string>>()

    const capabilitiesOf = (s: PluginStatus) =>
      s.loaded
        ? Effect.succeed<ReadonlyArray<string>>(s.capabilities)
        : Effect.suspend(() => {
            const known = inspected.get(s.sha256)
            if (known !== undefined) return Effect.succeed(known)
            return loader.inspectFile(s.path).pipe(
              Effect.map((report): ReadonlyArray<string> => report.capabilities),
              Effect.orElseSucceed((): ReadonlyArray<string> => []),
              Effect.tap((found) => Effect.sync(() => inspected.set(s.sha256, found)))
            )
          })

    const manifestOf = (id: string) =>
      registry.get(id).pipe(
        Effect.mapError(fromRegistry),
        Effect.flatMap(
          Option.match({
            onNone: () =>
              Effect.fail(new PluginNotFound({ pluginId: id, message: `no plugin ${id} is registered` })),
            onSome: (r) =>
              Effect.map(Effect.option(decodeManifest(r.manifest)), (m) => ({ record: r, manifest: m }))
          })
        )
      )

    const viewOf = (s: PluginStatus) =>
      Effect.gen(function* () {
        const { manifest } = yield* manifestOf(s.id)
        const view: PluginView = {
          id: s.id,
          name: s.name,
          version: s.version,
          author: Option.match(manifest, { onNone: () => "", onSome: (m) => m.author }),
          description: Option.match(manifest, { onNone: () => "", onSome: (m) => m.description ?? "" }),
          state: stateOf(s),
          enabled: s.enabled,
          loaded: s.loaded,
          sha256: s.sha256,
          path: s.path,
          capabilities: yield* capabilitiesOf(s),
          permissions: permissionsOf(manifest),
          users: s.users,
          libraries: s.libraries,
          networks: s.allowedNetworks,
          lastError: s.lastError,
          hasConfig: Option.match(manifest, { onNone: () => false, onSome: (m) => m.config !== undefined })
        }
        return view
      })

    const listViews = Effect.flatMap(Effect.mapError(manager.list, fromManager), (all) =>
      Effect.forEach(all, viewOf)
    )

    /** Grants in the CLI's order: networks first, since the manager may refuse them before anything is written. */
    const applyGrants = (id: string, grants: typeof Grants.Type) =>
      Effect.gen(function* () {
        if (grants.networks !== undefined) yield* manager.setNetworks(id, grants.networks)
        if (grants.users !== undefined) yield* manager.setUsers(id, grants.users as AccessList<string>)
        if (grants.libraries !== undefined)
          yield* manager.setLibraries(id, grants.libraries as AccessList<number>)
      })

    /** Validates first (for the per-field issues), then lets the manager store and apply it. */
    const setConfig = (id: string, config: Readonly<Record<string, unknown>>) =>
      Effect.gen(function* () {
        const { manifest } = yield* manifestOf(id)
        if (Option.isSome(manifest)) {
          const checked = yield* Effect.either(validateConfig(manifest.value, config))
          if (checked._tag === "Left") {
            return yield* new InvalidConfig({
              pluginId: id,
              message: `invalid configuration for plugin ${id}; nothing was changed`,
              issues: checked.left.issues ?? [{ path: "", message: checked.left.message }]
            })
          }
        }
        return yield* viewOf(yield* Effect.mapError(manager.setConfig(id, config), fromManager))
      })

    const existing = (id: string) => Effect.mapError(manager.get(id), fromManager)

    return handlers
      .handle("list", () => listViews.pipe(Effect.withSpan("AdminApi.list")))
      .handle("get", ({ path }) =>
        Effect.gen(function* () {
          const status = yield* existing(path.id)
          const { manifest, record } = yield* manifestOf(path.id)
          return {
            ...(yield* viewOf(status)),
            manifest: Option.getOrElse(
              Option.map(manifest, (m): unknown => m),
              () => record.manifest
            ),
            configSchema: Option.getOrNull(
              Option.flatMap(manifest, (m) => Option.fromNullable(m.config?.schema))
            ),
            uiSchema: Option.getOrNull(
              Option.flatMap(manifest, (m) => Option.fromNullable(m.config?.uiSchema))
            ),
            config: status.config
          }
        }).pipe(Effect.withSpan("AdminApi.get", { attributes: { id: path.id } }))
      )
      .handle("enable", ({ path, payload }) =>
        Effect.gen(function* () {
          yield* applyGrants(path.id, payload)
          return yield* manager.enable(path.id)
        }).pipe(
          Effect.mapError(fromManager),
          Effect.flatMap(viewOf),
          Effect.withSpan("AdminApi.enable", { attributes: { id: path.id } })
        )
      )
      .handle("disable", ({ path }) =>
        manager
          .disable(path.id)
          .pipe(
            Effect.mapError(fromManager),
            Effect.flatMap(viewOf),
            Effect.withSpan("AdminApi.disable", { attributes: { id: path.id } })
          )
      )
      .handle("grants", ({ path, payload }) =>
        Effect.gen(function* () {
          yield* existing(path.id)
          yield* Effect.mapError(applyGrants(path.id, payload), fromManager)
          return yield* viewOf(yield* existing(path.id))
        }).pipe(Effect.withSpan("AdminApi.grants", { attributes: { id: path.id } }))
      )
      .handle("getConfig", ({ path }) => Effect.map(existing(path.id), (s) => ({ config: s.config })))
      .handle("replaceConfig", ({ path, payload }) =>
        Effect.gen(function* () {
          yield* existing(path.id)
          return yield* setConfig(path.id, payload.config)
        }).pipe(Effect.withSpan("AdminApi.replaceConfig", { attributes: { id: path.id } }))
      )
      .handle("patchConfig", ({ path, payload }) =>
        Effect.gen(function* () {
          const next: Record<string, unknown> = { ...(yield* existing(path.id)).config }
          for (const key of payload.unset ?? []) delete next[key]
          Object.assign(next, payload.set ?? {})
          return yield* setConfig(path.id, next)
        }).pipe(Effect.withSpan("AdminApi.patchConfig", { attributes: { id: path.id } }))
      )
      .handle("rescan", () =>
        Effect.zipRight(Effect.mapError(manager.rescan, fromManager), listViews).pipe(
          Effect.withSpan("AdminApi.rescan")
        )
      )
      .handle("logs", ({ path, urlParams }) =>
        Effect.zipRight(
          existing(path.id),
          logs.recent(path.id, { level: urlParams.level, limit: urlParams.limit })
        )
      )
      .handle("call", ({ path, payload }) =>
        Effect.gen(function* () {
          yield* existing(path.id)
          const started = yield* Clock.currentTimeMillis
          const output = yield* manager
            .use(path.id, (plugin) =>
              plugin.call(payload.export, payload.input, { timeoutMs: payload.timeoutMs })
            )
            .pipe(
              Effect.mapError((error) =>
                error._tag === "ManagerError"
                  ? fromManager(error)
                  : new CallFailed({ pluginId: path.id, error: error._tag, message: error.message })
              )
            )
          const durationMs = (yield* Clock.currentTimeMillis) - started
          const text = output === null ? null : new TextDecoder().decode(output)
          return {
            output: text === null ? null : text.slice(0, outputLimitChars),
            truncated: text !== null && text.length > outputLimitChars,
            durationMs
          }
        }).pipe(Effect.withSpan("AdminApi.call", { attributes: { id: path.id, export: payload.export } }))
      )
      .handle("metrics", ({ urlParams }) =>
        Effect.zipRight(refreshPoolGauges(runtime), PluginMetrics.samples(urlParams.plugin))
      )
  })
)

/** The pool's live figures become gauges just before a snapshot. */
export const refreshPoolGauges = (runtime: WasmRuntime["Type"]) =>
  Effect.flatMap(runtime.poolStats, (stats) =>
    Effect.all([
      Metric.set(PluginMetrics.queuedCalls, stats.queued),
      Metric.set(PluginMetrics.busyWorkers, stats.busy)
    ])
  )

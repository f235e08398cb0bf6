/**
 * The host-function registry: which `extism:host/user` functions exist, which permission grants
 * each, and which services provide them. Gating is at link time (contract §3): a plugin gets only
 * the functions its manifest's permissions grant, and a module importing anything else fails to
 * load with an error naming the import and the permission.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { Manifest, PermissionName } from "../manifest/Manifest.js"
import type { PluginCallError } from "../runtime/PluginError.js"
import type { Mount } from "../runtime/worker/protocol.js"
import type { HostFunctionHandler } from "./HostCodec.js"
import type { NetworkGrant } from "./network/NetworkPolicy.js"
import * as ConfigService from "./config/ConfigService.js"

/** Who or what the administrator allowed a plugin to see: everything, or a list. */
export type AccessList<A> = "all" | ReadonlyArray<A>

/** Whether `item` is within `access`. */
export const isAllowed = <A>(access: AccessList<A>, item: A): boolean =>
  access === "all" || access.includes(item)

/** What a host service knows about the plugin it serves. */
export interface PluginContext {
  readonly pluginId: string
  readonly manifest: Manifest
  /** The flattened configuration, as the guest sees it. */
  readonly config: Readonly<Record<string, string>>
  /** The engine's data folder; per-plugin data lives under `plugins/<pluginId>/`. */
  readonly dataFolder: string
  /** The users the administrator allowed for this plugin (user names). */
  readonly users: AccessList<string>
  /** The libraries the administrator allowed for this plugin (library IDs). */
  readonly libraries: AccessList<number>
  /**
   * The private networks the operator granted this plugin (decoded `LoadOptions.allowedNetworks`);
   * absent or empty: none, every non-public address is refused.
   */
  readonly allowedNetworks?: ReadonlyArray<NetworkGrant> | undefined
  /**
   * Calls one of the plugin's own exports (for callbacks: scheduler, WebSocket). Waits until the
   * plugin has finished loading. Never use it to wait inside a host call: fork the callback.
   */
  readonly callPlugin: (
    exportName: string,
    input: string
  ) => Effect.Effect<Uint8Array | null, PluginCallError>
}

/** A permission, or `config`, which every plugin has. */
export type Grant = PermissionName | "config"

/** One host service: the functions it provides under a grant, made per plugin in the plugin's scope. */
export interface HostServiceProvider {
  readonly grant: Grant
  readonly functions: ReadonlyArray<string>
  readonly make: (
    context: PluginContext
  ) => Effect.Effect<Record<string, HostFunctionHandler>, never, Scope.Scope>
  /** Host folders this service makes visible to the plugin's WASI filesystem. */
  readonly mounts?: (context: PluginContext) => Effect.Effect<ReadonlyArray<Mount>>
}

/** Every known host function name and the grant it needs, whether or not a provider is installed. */
export const hostFunctionCatalog: ReadonlyMap<string, Grant> = new Map<string, Grant>([
  ...(["config_get", "config_getint", "config_keys"] as const).map((n) => [n, "config"] as const),
  ...[
    "cache_setstring",
    "cache_getstring",
    "cache_setint",
    "cache_getint",
    "cache_setfloat",
    "cache_getfloat",
    "cache_setbytes",
    "cache_getbytes",
    "cache_has",
    "cache_remove"
  ].map((n) => [n, "cache"] as const),
  ...[
    "kvstore_set",
    "kvstore_get",
    "kvstore_delete",
    "kvstore_has",
    "kvstore_list",
    "kvstore_getstorageused",
    "kvstore_setwithttl",
    "kvstore_getmany",
    "kvstore_deletebyprefix"
  ].map((n) => [n, "kvstore"] as const),
  ...["scheduler_scheduleonetime", "scheduler_schedulerecurring", "scheduler_cancelschedule"].map(
    (n) => [n, "scheduler"] as const
  ),
  ...[
    "websocket_connect",
    "websocket_sendtext",
    "websocket_sendbinary",
    "websocket_closeconnection",
    "websocket_close"
  ].map((n) => [n, "websocket"] as const),
  ...["library_getlibrary", "library_getalllibraries"].map((n) => [n, "library"] as const),
  ...["artwork_getartisturl", "artwork_getalbumurl", "artwork_gettrackurl", "artwork_getplaylisturl"].map(
    (n) => [n, "artwork"] as const
  ),
  ...["users_getusers", "users_getadmins"].map((n) => [n, "users"] as const),
  ...["subsonicapi_call", "subsonicapi_callraw"].map((n) => [n, "subsonicapi"] as const),
  ...[
    "scrobbleretriever_getfirsttimestamp",
    "scrobbleretriever_getlasttimestamp",
    "scrobbleretriever_getscrobbles",
    "scrobbleretriever_getscrobblecount"
  ].map((n) => [n, "scrobbleRetriever"] as const),
  ["http_send", "http"]
])

/** The installed host services and where they keep data. */
export class HostFunctions extends Context.Tag("ndp-engine/HostFunctions")<
  HostFunctions,
  { readonly providers: ReadonlyArray<HostServiceProvider>; readonly dataFolder: string }
>() {}

/** Whether the manifest grants `grant`. */
export const isGranted = (manifest: Manifest, grant: Grant): boolean =>
  grant === "config" || manifest.permissions[grant] !== undefined

/**
 * Builds the handlers a plugin may call: only functions it imports, from providers whose grant the
 * manifest declares. Unrequested services are never instantiated.
 */
export const makeHandlers = (
  providers: ReadonlyArray<HostServiceProvider>,
  context: PluginContext,
  imported: ReadonlySet<string>
): Effect.Effect<Record<string, HostFunctionHandler>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const handlers: Record<string, HostFunctionHandler> = {}
    for (const provider of providers) {
      if (!isGranted(context.manifest, provider.grant)) continue
      if (!provider.functions.some((name) => imported.has(name))) continue
      Object.assign(handlers, yield* provider.make(context))
    }
    return handlers
  })

/** The WASI mounts every granted provider offers the plugin. */
export const collectMounts = (
  providers: ReadonlyArray<HostServiceProvider>,
  context: PluginContext
): Effect.Effect<ReadonlyArray<Mount>> =>
  Effect.map(
    Effect.forEach(providers, (provider) =>
      provider.mounts !== undefined && isGranted(context.manifest, provider.grant)
        ? provider.mounts(context)
        : Effect.succeed<ReadonlyArray<Mount>>([])
    ),
    (lists) => lists.flat()
  )

/** A registry with exactly these providers (Config is always added). */
export const layerWith = (
  dataFolder: string,
  providers: ReadonlyArray<HostServiceProvider>
): Layer.Layer<HostFunctions> =>
  Layer.succeed(HostFunctions, { dataFolder, providers: [ConfigService.provider, ...providers] })

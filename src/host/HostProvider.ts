/**
 * The shape every host service shares, and what it knows about the plugin it serves. This module
 * imports no service, so services and the registry (`HostFunctions`) can both depend on it
 * without a cycle.
 */
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Manifest, PermissionName } from "../manifest/Manifest.js"
import type { PluginCallError } from "../runtime/PluginError.js"
import type { Mount } from "../runtime/abi/protocol.js"
import type { HostFunctionHandler } from "./HostCodec.js"
import type { NetworkGrant } from "./network/NetworkPolicy.js"

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
  /** Whether the administrator lets the plugin write to its library folders (default read-only). */
  readonly allowLibraryWrite?: boolean | undefined
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

/** Whether the manifest grants `grant`. */
export const isGranted = (manifest: Manifest, grant: Grant): boolean =>
  grant === "config" || manifest.permissions[grant] !== undefined

/**
 * What a service module declares about itself, statically: the grant its functions need and their
 * names. The link-time catalogue is built from these, so a name is written once, in its service.
 */
export interface HostServiceDefinition<Name extends string = string> {
  readonly grant: Grant
  readonly functions: ReadonlyArray<Name>
}

/** One host service: the functions it provides under a grant, made per plugin in the plugin's scope. */
export interface HostServiceProvider extends HostServiceDefinition {
  readonly make: (
    context: PluginContext
  ) => Effect.Effect<Record<string, HostFunctionHandler>, never, Scope.Scope>
  /** Host folders this service makes visible to the plugin's WASI filesystem. */
  readonly mounts?: (context: PluginContext) => Effect.Effect<ReadonlyArray<Mount>>
}

/** Names a service's definition, keeping its function names as literal types. */
export const define = <const Name extends string>(definition: {
  readonly grant: Grant
  readonly functions: ReadonlyArray<Name>
}): HostServiceDefinition<Name> => definition

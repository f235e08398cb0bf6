/**
 * The host-function registry: the installed host services and where they keep data. Gating is at
 * link time (contract §3): a plugin gets only the functions its manifest's permissions grant, and
 * a module importing anything else fails to load with an error naming the import and the
 * permission. The shape of a service is in `HostProvider`; the catalogue of every known function
 * in `HostCatalog`; the assembly of all services in `HostServices`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { Mount } from "../runtime/abi/protocol.js"
import type { HostFunctionHandler } from "./HostCodec.js"
import * as ConfigService from "./config/ConfigService.js"
import { type HostServiceProvider, isGranted, type PluginContext } from "./HostProvider.js"

export {
  type AccessList,
  type Grant,
  type HostServiceProvider,
  isAllowed,
  isGranted,
  type PluginContext
} from "./HostProvider.js"
export { hostFunctionCatalog } from "./HostCatalog.js"

/** The installed host services and where they keep data. */
export class HostFunctions extends Context.Tag("ndp-engine/HostFunctions")<
  HostFunctions,
  { readonly providers: ReadonlyArray<HostServiceProvider>; readonly dataFolder: string }
>() {}

/**
 * Builds the handlers a plugin may call: only functions it imports, from providers whose grant the
 * manifest declares. Unrequested services are never instantiated.
 */
export const makeHandlers = Effect.fn("HostFunctions.makeHandlers")(function* (
  providers: ReadonlyArray<HostServiceProvider>,
  context: PluginContext,
  imported: ReadonlySet<string>
): Effect.fn.Return<Record<string, HostFunctionHandler>, never, Scope.Scope> {
  const handlers: Record<string, HostFunctionHandler> = {}
  for (const provider of providers) {
    if (!isGranted(context.manifest, provider.grant)) continue
    if (!provider.functions.some((name) => imported.has(name))) continue
    Object.assign(handlers, yield* provider.make(context))
  }
  return handlers
})

/** The WASI mounts every granted provider offers the plugin. */
export const collectMounts = Effect.fn("HostFunctions.collectMounts")(
  (
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
)

/** A registry with exactly these providers (Config is always added). */
export const layerWith = (
  dataFolder: string,
  providers: ReadonlyArray<HostServiceProvider>
): Layer.Layer<HostFunctions> =>
  Layer.succeed(HostFunctions, { dataFolder, providers: [ConfigService.provider, ...providers] })

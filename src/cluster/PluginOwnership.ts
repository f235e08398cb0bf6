/**
 * Who runs a plugin's background work. On one node (the default, no service provided) every
 * loaded plugin is its own owner: `nd_on_init` runs at load and every schedule fires. On a cluster
 * (`Cluster.layer`) each plugin is a singleton of `@effect/cluster`: its `nd_on_init` runs on the
 * node holding the plugin's shard, and a schedule fires only there, once its tick is claimed in the
 * database (decision 0038).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

export interface PluginOwnershipShape {
  /**
   * Runs `work` (the plugin's background work, e.g. `nd_on_init`) wherever the plugin's owner is,
   * for as long as the current scope (the loaded plugin's) is open. Never fails.
   */
  readonly background: (
    pluginId: string,
    work: Effect.Effect<void>
  ) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Whether this node may fire the plugin's schedule `scheduleId` at `tick` (ms since the epoch):
   * it owns the plugin and no node fired this schedule after `notBefore`. True claims the tick.
   */
  readonly claimTick: (
    pluginId: string,
    scheduleId: string,
    tick: number,
    notBefore: number
  ) => Effect.Effect<boolean>
}

/** The ownership of plugins' background work; absent = a single node that owns everything. */
export class PluginOwnership extends Context.Tag("ndp/PluginOwnership")<
  PluginOwnership,
  PluginOwnershipShape
>() {}

/** One node: background work runs at once, in the caller's fiber; every tick fires. */
export const single: PluginOwnershipShape = {
  background: (_pluginId, work) => work,
  claimTick: () => Effect.succeed(true)
}

/** The ownership in context, or `single` when none is provided. */
export const current: Effect.Effect<PluginOwnershipShape> = Effect.map(
  Effect.serviceOption(PluginOwnership),
  (found) => (found._tag === "Some" ? found.value : single)
)

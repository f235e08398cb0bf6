/**
 * The Lifecycle capability: `nd_on_init` runs once after every load. Its failure is logged and
 * the plugin stays loaded (contract §4), because a plugin may still serve without its init step.
 */
import * as Effect from "effect/Effect"
import type { CapabilityTarget } from "./Capabilities.js"

/** Calls `nd_on_init {}`; never fails. */
export const runInit: (plugin: Pick<CapabilityTarget, "id" | "call">) => Effect.Effect<void> = Effect.fn(
  "Lifecycle.runInit"
)((plugin: Pick<CapabilityTarget, "id" | "call">) =>
  plugin.call("nd_on_init", "{}").pipe(
    Effect.tap(() => Effect.logDebug("nd_on_init completed")),
    Effect.catchTag("PluginNotImplementedError", () => Effect.void),
    Effect.catchAll((error) =>
      Effect.logError(`nd_on_init failed; the plugin stays loaded: ${error.message}`).pipe(
        Effect.annotateLogs("error", error._tag)
      )
    ),
    Effect.annotateLogs("plugin", plugin.id),
    Effect.asVoid
  )
)

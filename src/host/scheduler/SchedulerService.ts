/** The Scheduler host service (being written: provides nothing yet, so its imports fail to link). */
import * as Effect from "effect/Effect"
import type { HostServiceProvider } from "../HostFunctions.js"

export const provider: HostServiceProvider = {
  grant: "scheduler",
  functions: [],
  make: () => Effect.succeed({})
}

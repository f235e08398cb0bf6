/** The KV store host service (being written: provides nothing yet, so kvstore imports fail to link). */
import * as Effect from "effect/Effect"
import type { HostServiceProvider } from "../HostFunctions.js"

export const provider: HostServiceProvider = {
  grant: "kvstore",
  functions: [],
  make: () => Effect.succeed({})
}

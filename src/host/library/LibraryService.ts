/** The Library host service (being written: provides nothing yet, so its imports fail to link). */
import * as Effect from "effect/Effect"
import type { HostServiceProvider } from "../HostFunctions.js"
import type { LibraryCatalog } from "./LibraryCatalog.js"

export const provider = (_catalog: LibraryCatalog["Type"]): HostServiceProvider => ({
  grant: "library",
  functions: [],
  make: () => Effect.succeed({})
})

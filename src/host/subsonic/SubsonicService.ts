/** The Subsonic API host service (being written: provides nothing yet, so its imports fail to link). */
import * as Effect from "effect/Effect"
import type { HostServiceProvider } from "../HostFunctions.js"
import type { UserDirectory } from "../users/UserDirectory.js"
import type { SubsonicRouter } from "./SubsonicRouter.js"

export const provider = (
  _router: SubsonicRouter["Type"],
  _directory: UserDirectory["Type"]
): HostServiceProvider => ({
  grant: "subsonicapi",
  functions: [],
  make: () => Effect.succeed({})
})

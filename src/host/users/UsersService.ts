/**
 * The Users host service (`users`): `users_getusers` and `users_getadmins`, both limited to the
 * users the administrator allowed for the plugin.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { hostFunction } from "../HostCodec.js"
import { type HostServiceProvider, isAllowed } from "../HostFunctions.js"
import type { UserDirectory } from "../../server/UserDirectory.js"

const NoRequest = Schema.Unknown

export const provider = (directory: UserDirectory["Type"]): HostServiceProvider => ({
  grant: "users",
  functions: ["users_getusers", "users_getadmins"],
  make: (context) => {
    const allowed = directory.list.pipe(
      Effect.map((users) => users.filter((user) => isAllowed(context.users, user.userName)))
    )
    return Effect.succeed({
      users_getusers: hostFunction("users_getusers", NoRequest, () =>
        Effect.map(allowed, (result) => ({ result }))
      ),
      users_getadmins: hostFunction("users_getadmins", NoRequest, () =>
        Effect.map(allowed, (users) => ({ result: users.filter((user) => user.isAdmin) }))
      )
    })
  }
})

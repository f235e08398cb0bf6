/**
 * The Users host service (`users`): `users_getusers` and `users_getadmins`, both limited to the
 * users the administrator allowed for the plugin. It has no error of its own: listing the server's
 * users cannot fail, and a malformed request is answered by the codec.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { hostFunction } from "../HostCodec.js"
import { define, type HostServiceProvider, isAllowed } from "../HostProvider.js"
import { UserDirectory } from "../../server/UserDirectory.js"

/** The functions of the Users service and the permission they need. */
export const definition = define({ grant: "users", functions: ["users_getusers", "users_getadmins"] })

const NoRequest = Schema.Unknown

/** The Users provider over the server's user directory. */
export const provider = (directory: UserDirectory["Type"]): HostServiceProvider => ({
  ...definition,
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

/** The Users host service; it reads the embedding server's `UserDirectory`. */
export class UsersService extends Context.Tag("ndp-engine/host/UsersService")<
  UsersService,
  HostServiceProvider
>() {}

/** The Users service over the server's `UserDirectory`, taken once. */
export const make: Effect.Effect<HostServiceProvider, never, UserDirectory> = Effect.map(
  UserDirectory,
  provider
).pipe(Effect.withSpan("UsersService.make"))

/** The Users service as a layer. */
export const layer: Layer.Layer<UsersService, never, UserDirectory> = Layer.effect(UsersService, make)

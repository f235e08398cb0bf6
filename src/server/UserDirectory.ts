/**
 * The server's users, as the Users host service and user checks see them. The embedding server
 * provides its own directory as a layer; `EmbeddedDatabase` offers a SQLite-backed default with
 * demo users.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"

/** A user of the server, in the wire form plugins see. */
export interface User {
  readonly userName: string
  readonly name: string
  readonly isAdmin: boolean
}

export class UserDirectory extends Context.Tag("ndp-engine/UserDirectory")<
  UserDirectory,
  {
    /** Every user of the server, sorted by user name. */
    readonly list: Effect.Effect<ReadonlyArray<User>>
  }
>() {}

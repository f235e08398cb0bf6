/**
 * Tables in the engine's storage used when the embedding server does not provide its own services:
 * a user directory seeded with demo users, and the artwork signing secret (generated once, so
 * artwork URLs stay valid across restarts). On a cluster both live in its shared database
 * (`sharedOrOwn`): every node lists the same users and signs artwork with the same secret.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { randomBytes } from "node:crypto"
import type { Dialect } from "../../storage/Dialect.js"
import { sharedOrOwn, type Storage } from "../../storage/Storage.js"
import { ArtworkSettings } from "../ArtworkSettings.js"
import { type User, UserDirectory } from "../UserDirectory.js"

/** Users every fresh embedded database starts with. */
export const demoUsers: ReadonlyArray<User> = [
  { userName: "admin", name: "Administrator", isAdmin: true },
  { userName: "alice", name: "Alice Liddell", isAdmin: false },
  { userName: "bob", name: "Bob Dylan", isAdmin: false }
]

/** The users and settings tables' migrations (numbered in `storage/Migrations.ts`). */
export const migrations = {
  users: (sql: SqlClient.SqlClient, _dialect: Dialect) =>
    Effect.gen(function* () {
      yield* sql`CREATE TABLE users (user_name TEXT PRIMARY KEY, name TEXT NOT NULL, is_admin INTEGER NOT NULL)`
      for (const u of demoUsers) {
        yield* sql`INSERT INTO users (user_name, name, is_admin) VALUES (${u.userName}, ${u.name}, ${u.isAdmin ? 1 : 0})`
      }
    }),
  settings: (sql: SqlClient.SqlClient, _dialect: Dialect) =>
    sql`CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)`.pipe(Effect.asVoid)
}

/** Settings of the embedded defaults. */
export interface EmbeddedOptions {
  /** The base URL artwork links point at. */
  readonly baseUrl?: string | undefined
}

type Row = { readonly user_name: string; readonly name: string; readonly is_admin: number }

/** A user directory over the embedded database. */
export const userDirectory: Layer.Layer<UserDirectory, never, Storage> = Layer.effect(
  UserDirectory,
  Effect.gen(function* () {
    const { sql } = yield* sharedOrOwn
    return {
      list: sql<Row>`SELECT user_name, name, is_admin FROM users ORDER BY user_name`.pipe(
        Effect.map((rows) =>
          rows.map((r) => ({ userName: r.user_name, name: r.name, isAdmin: r.is_admin === 1 }))
        ),
        Effect.orDie,
        Effect.withSpan("EmbeddedDatabase.listUsers")
      )
    }
  })
)

/** Adds or updates users in the embedded directory (for `ndp call --user/--admin`). */
export const upsertUsers = Effect.fn("EmbeddedDatabase.upsertUsers")(function* (users: ReadonlyArray<User>) {
  const { sql } = yield* sharedOrOwn
  for (const u of users) {
    yield* sql`INSERT INTO users (user_name, name, is_admin) VALUES (${u.userName}, ${u.name}, ${u.isAdmin ? 1 : 0})
        ON CONFLICT (user_name) DO UPDATE SET name = excluded.name, is_admin = excluded.is_admin`.pipe(
      Effect.orDie
    )
  }
})

/** Artwork settings with a signing secret generated on first use and kept in the database. */
export const artworkSettings = (baseUrl: string): Layer.Layer<ArtworkSettings, never, Storage> =>
  Layer.effect(
    ArtworkSettings,
    Effect.gen(function* () {
      const { sql } = yield* sharedOrOwn
      // Nodes starting together each offer a secret; the first insert wins and all read it back.
      const fresh = randomBytes(32).toString("hex")
      yield* sql`INSERT INTO settings (key, value) VALUES ('artwork_secret', ${fresh}) ON CONFLICT (key) DO NOTHING`
      const rows = yield* sql<{ value: string }>`SELECT value FROM settings WHERE key = 'artwork_secret'`
      const secret = rows[0]?.value
      if (secret === undefined)
        return yield* Effect.dieMessage("the artwork secret vanished as it was written")
      return { baseUrl, secret: Redacted.make(secret) }
    }).pipe(Effect.orDie)
  )

/** The embedded users and artwork settings, in the engine's storage. */
export const layer = (
  options: EmbeddedOptions = {}
): Layer.Layer<UserDirectory | ArtworkSettings, never, Storage> =>
  Layer.merge(userDirectory, artworkSettings(options.baseUrl ?? "http://localhost:4533"))

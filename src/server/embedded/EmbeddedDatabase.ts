/**
 * The engine's own SQLite database, `<dataFolder>/ndp.db`, used when the embedding server does not
 * provide its own services: a user directory seeded with demo users, and the artwork signing
 * secret (generated once, so artwork URLs stay valid across restarts).
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import { migrate } from "../../internal/migrate.js"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { randomBytes } from "node:crypto"
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { ArtworkSettings } from "../ArtworkSettings.js"
import { type User, UserDirectory } from "../UserDirectory.js"

/** Users every fresh embedded database starts with. */
export const demoUsers: ReadonlyArray<User> = [
  { userName: "admin", name: "Administrator", isAdmin: true },
  { userName: "alice", name: "Alice Liddell", isAdmin: false },
  { userName: "bob", name: "Bob Dylan", isAdmin: false }
]

const migrations = Migrator.fromRecord({
  "0001_users": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE users (user_name TEXT PRIMARY KEY, name TEXT NOT NULL, is_admin INTEGER NOT NULL)`
    for (const u of demoUsers) {
      yield* sql`INSERT INTO users (user_name, name, is_admin) VALUES (${u.userName}, ${u.name}, ${u.isAdmin ? 1 : 0})`
    }
  }),
  "0002_settings": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)`
  })
})

/** Settings of the embedded database. */
export interface EmbeddedOptions {
  readonly dataFolder: string
  /** The base URL artwork links point at. */
  readonly baseUrl?: string | undefined
}

/** The embedded database's SQL client, migrated. */
export const sqlLayer = (dataFolder: string): Layer.Layer<SqlClient.SqlClient> =>
  Layer.effectDiscard(migrate("ndp_migrations", migrations)).pipe(
    Layer.provideMerge(
      Layer.unwrapEffect(
        Effect.sync(() => {
          mkdirSync(dataFolder, { recursive: true })
          return SqliteClient.layer({ filename: join(dataFolder, "ndp.db") })
        })
      )
    ),
    Layer.orDie
  )

type Row = { readonly user_name: string; readonly name: string; readonly is_admin: number }

/** A user directory over the embedded database. */
export const userDirectory: Layer.Layer<UserDirectory, never, SqlClient.SqlClient> = Layer.effect(
  UserDirectory,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return {
      list: sql<Row>`SELECT user_name, name, is_admin FROM users ORDER BY user_name`.pipe(
        Effect.map((rows) =>
          rows.map((r) => ({ userName: r.user_name, name: r.name, isAdmin: r.is_admin === 1 }))
        ),
        Effect.orDie
      )
    }
  })
)

/** Adds or updates users in the embedded directory (for `ndp call --user/--admin`). */
export const upsertUsers = (users: ReadonlyArray<User>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    for (const u of users) {
      yield* sql`INSERT INTO users (user_name, name, is_admin) VALUES (${u.userName}, ${u.name}, ${u.isAdmin ? 1 : 0})
        ON CONFLICT (user_name) DO UPDATE SET name = excluded.name, is_admin = excluded.is_admin`
    }
  }).pipe(Effect.orDie)

/** Artwork settings with a signing secret generated on first use and kept in the database. */
export const artworkSettings = (baseUrl: string): Layer.Layer<ArtworkSettings, never, SqlClient.SqlClient> =>
  Layer.effect(
    ArtworkSettings,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const fresh = randomBytes(32).toString("hex")
      yield* sql`INSERT INTO settings (key, value) VALUES ('artwork_secret', ${fresh}) ON CONFLICT (key) DO NOTHING`
      const rows = yield* sql<{ value: string }>`SELECT value FROM settings WHERE key = 'artwork_secret'`
      return { baseUrl, secret: Redacted.make(rows[0]?.value ?? fresh) }
    }).pipe(Effect.orDie)
  )

/** The embedded defaults for everything the embedding server would otherwise supply. */
export const layer = (
  options: EmbeddedOptions
): Layer.Layer<UserDirectory | ArtworkSettings | SqlClient.SqlClient> =>
  Layer.mergeAll(userDirectory, artworkSettings(options.baseUrl ?? "http://localhost:4533")).pipe(
    Layer.provideMerge(sqlLayer(options.dataFolder))
  )

import { describe, expect, it } from "@effect/vitest"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { postgresServer } from "../support/postgres.js"

describe("test PostgreSQL server", () => {
  it.scoped("starts on loopback, answers queries, and gives out fresh databases", () =>
    Effect.gen(function* () {
      const server = yield* postgresServer
      const url = yield* server.createDatabase("fresh")
      const sql = yield* PgClient.make({ url: Redacted.make(url) })
      const rows = yield* sql<{ db: string }>`select current_database() as db`
      expect(rows[0]?.db).toBe("fresh")
    }).pipe(Effect.provide(Reactivity.layer))
  )
})

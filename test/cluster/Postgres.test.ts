import { describe, expect, it } from "@effect/vitest"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Layer from "effect/Layer"
import * as Cluster from "../../src/cluster/Cluster.js"
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

describe("Cluster.layerPostgres", () => {
  it.scoped(
    "refuses a URL that is not postgres:// and a server that is not there, saying what to check",
    () =>
      Effect.gen(function* () {
        const notPg = yield* Effect.flip(Layer.build(Cluster.layerPostgres("mysql://user:secret@host/db")))
        expect(notPg._tag).toBe("ClusterError")
        expect(notPg.message).toContain("must be a postgres:// URL")
        // The password is not echoed back.
        expect(notPg.message).not.toContain("secret")
        const server = yield* postgresServer
        const gone = yield* Effect.flip(
          Layer.build(Cluster.layerPostgres(`postgres://postgres@127.0.0.1:${server.port + 1}/none`))
        )
        expect(gone.message).toContain("check the Database URL and that the server is up")
      })
  )
})

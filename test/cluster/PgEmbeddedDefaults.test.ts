/**
 * The embedded defaults on a cluster's PostgreSQL database: nodes are `Engine.layer` (embedded
 * users, artwork settings, scrobble history) over their own data folders, given
 * `Cluster.layerPostgres` as `ndp serve --database` gives it (one with the manager and `Scrobblers`
 * too). An artwork URL a plugin gets from one node verifies on the other, a scrobble given to one is
 * read by a plugin on the other, and nodes started together agree on one secret.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { jwtVerify } from "jose"
import * as Cluster from "../../src/cluster/Cluster.js"
import * as Engine from "../../src/Engine.js"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import * as Scrobblers from "../../src/manager/Scrobblers.js"
import { ArtworkSettings } from "../../src/server/ArtworkSettings.js"
import { upsertUsers } from "../../src/server/embedded/EmbeddedDatabase.js"
import { ScrobbleHistory } from "../../src/server/ScrobbleHistory.js"
import { TrackCatalog } from "../../src/server/TrackCatalog.js"
import { UserDirectory } from "../../src/server/UserDirectory.js"
import * as Dialect from "../../src/storage/Dialect.js"
import * as Migrations from "../../src/storage/Migrations.js"
import * as PgStorage from "../../src/storage/PgStorage.js"
import { sharedAsStorage, SharedStorage, Storage } from "../../src/storage/Storage.js"
import { tempDataFolder } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { makeFolders, managerLayer } from "../support/manager.js"
import { postgresServer } from "../support/postgres.js"
import { sampleTrack } from "../support/tracks.js"

const decoder = new TextDecoder()
const baseUrl = "https://music.example.org/"

/** One node: the engine with its embedded defaults in its own data folder, on the cluster at `url`. */
const node = (url: string, index: number) =>
  Effect.gen(function* () {
    const dataFolder = yield* tempDataFolder
    return yield* Layer.build(
      Engine.layer({ dataFolder, runtime: { poolSize: 1 }, artworkBaseUrl: baseUrl }).pipe(
        Layer.provide(Cluster.layerPostgres(url, { nodeHost: "127.0.0.1", nodePort: 40_000 + index })),
        Layer.orDie
      )
    )
  })

/** A node as `ndp serve --database` builds it: the manager, and `Scrobblers` over the shared queue. */
const scrobblingNode = (url: string, index: number) =>
  Effect.gen(function* () {
    const folders = yield* makeFolders()
    return yield* Layer.build(
      Scrobblers.layer({ tick: "1 hour" }).pipe(
        Layer.provide(sharedAsStorage),
        Layer.provideMerge(managerLayer(folders, { pollMs: 86_400_000 }, 1)),
        Layer.provide(Cluster.layerPostgres(url, { nodeHost: "127.0.0.1", nodePort: 40_000 + index })),
        Layer.orDie
      )
    )
  })

/** A single server without a database, for contrast. */
const alone = Effect.flatMap(tempDataFolder, (dataFolder) =>
  Layer.build(
    Engine.layer({ dataFolder, runtime: { poolSize: 1 }, artworkBaseUrl: baseUrl }).pipe(Layer.orDie)
  )
)

/** Calls `fn` of fixture `id` loaded on the node `context`, for `users`. */
const caller =
  (context: Context.Context<PluginLoader>, id: string, users: ReadonlyArray<string> = []) =>
  (fn: string, request: unknown) =>
    Effect.gen(function* () {
      const plugin = yield* Context.get(context, PluginLoader).loadFile(fixture(id), { users })
      const out = yield* plugin.call(fn, JSON.stringify(request))
      return JSON.parse(decoder.decode(out ?? new Uint8Array())) as unknown
    })

const artworkUrl = (context: Context.Context<PluginLoader>) =>
  Effect.map(
    caller(context, "host-artwork")("call_artwork_getalbumurl", { id: "42", size: 300 }),
    (answer) => (answer as { url: string }).url
  )

const tokenOf = (url: string) => /\/share\/img\/([^?]+)/.exec(url)![1]!

const verifies = (url: string, secret: Redacted.Redacted<string>) =>
  Effect.promise(() =>
    jwtVerify(tokenOf(url), new TextEncoder().encode(Redacted.value(secret))).then(
      () => true,
      () => false
    )
  )

describe("the embedded defaults on a cluster's PostgreSQL database", () => {
  it.scopedLive(
    "an artwork URL from one node verifies on the other; a scrobble recorded by one, or a user added, is read by the other",
    () =>
      Effect.gen(function* () {
        const server = yield* postgresServer
        const url = yield* server.createDatabase("embedded")
        const a = yield* scrobblingNode(url, 1)
        const b = yield* node(url, 2)
        const single = yield* alone

        // One secret: the same id gives the same token on both nodes, and B verifies the URL A gave.
        const fromA = yield* artworkUrl(a)
        const fromB = yield* artworkUrl(b)
        // The base URL is each node's setting (A keeps the default); the signed token is the cluster's.
        expect(fromA).toMatch(/^http:\/\/localhost:4533\/share\/img\/[^?]+\?size=300$/)
        expect(fromB).toMatch(/^https:\/\/music\.example\.org\/share\/img\/[^?]+\?size=300$/)
        expect(tokenOf(fromB)).toBe(tokenOf(fromA))
        expect(yield* verifies(fromA, Context.get(b, ArtworkSettings).secret)).toBe(true)
        // A server of its own generates its own secret: the URL differs and does not verify there.
        const fromSingle = yield* artworkUrl(single)
        expect(tokenOf(fromSingle)).not.toBe(tokenOf(fromA))
        expect(yield* verifies(fromA, Context.get(single, ArtworkSettings).secret)).toBe(false)

        // Scrobbles given to node A are in the history a plugin reads through node B.
        const scrobblers = Context.get(a, Scrobblers.Scrobblers)
        yield* scrobblers.scrobble("alice", { ...sampleTrack, id: "mf-from-a" }, 1_700_000_000)
        yield* scrobblers.scrobble("alice", { ...sampleTrack, id: "mf-from-a-too" }, 1_700_000_060)
        const onB = caller(b, "host-scrobbleretriever", ["alice"])
        expect(yield* onB("page_all", { username: "alice", options: { maxItems: 1 } })).toEqual({
          pages: 2,
          ids: ["mf-from-a", "mf-from-a-too"]
        })
        expect(yield* onB("call_scrobbleretriever_getscrobblecount", { username: "alice" })).toEqual({
          result: 2
        })
        expect(yield* onB("call_scrobbleretriever_getlasttimestamp", { username: "alice" })).toEqual({
          result: 1_700_000_060
        })
        // Node B's track catalogue counts the plays too (its songs are its own, the history shared).
        const playsOnB = yield* Context.get(b, TrackCatalog).userData("alice", ["mf-from-a", "mf-other"])
        expect(Option.map(playsOnB, (data) => data.get("mf-from-a")?.playCount)).toEqual(Option.some(1))
        // Not in B's own file: the rows are the cluster's.
        const ownB = Context.get(b, Storage).sql
        expect(yield* ownB<{ n: number }>`SELECT COUNT(*) AS n FROM scrobble_history`).toEqual([{ n: 0 }])

        // A user added on the cluster's database (by `upsertUsers` with it in context, as any process
        // on it) is listed by both nodes; a server of its own does not see it.
        const shared = yield* Layer.build(PgStorage.layerUrl(url))
        yield* upsertUsers([{ userName: "carol", name: "Carol", isAdmin: false }]).pipe(
          Effect.provide(Context.merge(a, shared))
        )
        const listedOnA = yield* Context.get(a, UserDirectory).list
        expect(listedOnA.map((user) => user.userName)).toEqual(["admin", "alice", "bob", "carol"])
        const listedOnB = yield* Context.get(b, UserDirectory).list
        expect(listedOnB.map((user) => user.userName)).toEqual(["admin", "alice", "bob", "carol"])
        const listedAlone = yield* Context.get(single, UserDirectory).list
        expect(listedAlone.map((user) => user.userName)).toEqual(["admin", "alice", "bob"])
      })
  )

  it.scopedLive("nodes started together on a fresh database end with one artwork secret", () =>
    Effect.gen(function* () {
      const server = yield* postgresServer
      const url = yield* server.createDatabase("together")
      const nodes = yield* Effect.all(
        [1, 2, 3].map((index) => node(url, index)),
        { concurrency: "unbounded" }
      )
      const secrets = new Set(nodes.map((n) => Redacted.value(Context.get(n, ArtworkSettings).secret)))
      expect(secrets.size).toBe(1)
      const shared = Context.get(yield* Layer.build(PgStorage.layerUrl(url)), SharedStorage).sql
      const rows = yield* shared<{ value: string }>`SELECT value FROM settings WHERE key = 'artwork_secret'`
      expect(rows.map((row) => row.value)).toEqual([...secrets])
      // The demo users were seeded once, not once per node.
      expect(yield* shared<{ n: string }>`SELECT COUNT(*) AS n FROM users`).toEqual([{ n: "3" }])
    })
  )

  it.scopedLive("a cluster database made before the embedded tables were shared gains them on upgrade", () =>
    Effect.gen(function* () {
      const server = yield* postgresServer
      const url = yield* server.createDatabase("upgraded")
      // The database as the previous release left it: the shared migrations up to 0010.
      const before = new Set([...Migrations.shared].filter((key) => Migrations.idOf(key) <= 10))
      const sql = Context.get(
        yield* Layer.build(PgClient.layer({ url: Redacted.make(url) })),
        SqlClient.SqlClient
      )
      yield* Migrations.migrate(sql, Dialect.postgres(sql), Effect.void, before)
      const tables = yield* Dialect.postgres(sql).tables
      expect(tables).toContain("plugins")
      expect(tables).not.toContain("users")

      const a = yield* node(url, 1)
      const recorded = yield* sql<{ migration_id: number }>`SELECT migration_id FROM ${sql(
        Migrations.MIGRATIONS_TABLE
      )} ORDER BY migration_id`
      expect(recorded.map((row) => row.migration_id)).toEqual([...Migrations.shared].map(Migrations.idOf))
      const users = yield* Context.get(a, UserDirectory).list
      expect(users.map((user) => user.userName)).toEqual(["admin", "alice", "bob"])
      yield* Context.get(a, ScrobbleHistory).record("bob", "mf-1", 1)
      expect(yield* sql<{ username: string }>`SELECT username FROM scrobble_history`).toEqual([
        { username: "bob" }
      ])
    })
  )
})

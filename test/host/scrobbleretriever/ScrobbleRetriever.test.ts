import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import { ScrobbleHistory } from "../../../src/server/ScrobbleHistory.js"
import { testEngine } from "../../support/engine.js"
import { fixture } from "../../support/fixtures.js"
import { repackage } from "../../support/repackage.js"

const decoder = new TextDecoder()

const load = Effect.flatMap(PluginLoader, (loader) =>
  loader.loadFile(fixture("host-scrobbleretriever"), { users: ["alice", "admin"] })
)

const call = (
  plugin: { call: (name: string, input: string) => Effect.Effect<Uint8Array | null, unknown> },
  name: string,
  request: unknown
) =>
  Effect.map(
    plugin.call(name, JSON.stringify(request)),
    (bytes) => JSON.parse(decoder.decode(bytes ?? new Uint8Array())) as unknown
  )

// Alice's history: ties longer than a page; bob's and admin's interleaved.
const times = [100, 100, 100, 100, 100, 100, 200, 300, 300, 300, 300, 400]

layer(testEngine({ runtime: { poolSize: 2 } }), { excludeTestServices: true })("ScrobbleRetriever", (it) => {
  it.scoped("paging from inside Wasm visits every scrobble once, ties included, both ways", () =>
    Effect.gen(function* () {
      const history = yield* ScrobbleHistory
      for (const [i, t] of times.entries()) {
        yield* history.record("alice", `mf-${i}`, t)
        yield* history.record("bob", `bob-${i}`, t)
      }
      const plugin = yield* load
      const ids = times.map((_, i) => `mf-${i}`)
      expect(yield* call(plugin, "page_all", { username: "alice", options: { maxItems: 4 } })).toEqual({
        pages: 3,
        ids
      })
      expect(
        yield* call(plugin, "page_all", { username: "alice", options: { maxItems: 5, descending: true } })
      ).toEqual({ pages: 3, ids: [...ids].reverse() })
      expect(
        yield* call(plugin, "page_all", {
          username: "alice",
          options: { maxItems: 2, fromTimestamp: 200, toTimestamp: 300 }
        })
      ).toEqual({ pages: 3, ids: ["mf-6", "mf-7", "mf-8", "mf-9", "mf-10"] })
      expect(
        yield* call(plugin, "call_scrobbleretriever_getscrobblecount", {
          username: "alice",
          options: { fromTimestamp: 100, toTimestamp: 300 }
        })
      ).toEqual({ result: 11 })
      expect(yield* call(plugin, "call_scrobbleretriever_getfirsttimestamp", { username: "alice" })).toEqual({
        result: 100
      })
      expect(yield* call(plugin, "call_scrobbleretriever_getlasttimestamp", { username: "alice" })).toEqual({
        result: 400
      })
      // An allowed user without scrobbles: no timestamp, a zero count.
      expect(yield* call(plugin, "call_scrobbleretriever_getfirsttimestamp", { username: "admin" })).toEqual(
        {}
      )
      expect(yield* call(plugin, "call_scrobbleretriever_getscrobblecount", { username: "admin" })).toEqual(
        {}
      )
    })
  )

  it.scoped("a user not allowed and a user that does not exist get the same answer", () =>
    Effect.gen(function* () {
      const plugin = yield* load
      const errorOf = (username: string) =>
        Effect.map(call(plugin, "call_scrobbleretriever_getscrobbles", { username, options: {} }), (r) =>
          (r as { error: string }).error.replace(JSON.stringify(username), "<user>")
        )
      const notAllowed = yield* errorOf("bob")
      expect(notAllowed).toContain("is not available to this plugin")
      expect(yield* errorOf("nobody-at-all")).toBe(notAllowed)
    })
  )

  it.scoped("maxItems is clamped to 5000 per page", () =>
    Effect.gen(function* () {
      const history = yield* ScrobbleHistory
      for (let i = 0; i < 5001; i++) yield* history.record("admin", `bulk-${i}`, 1_000 + i)
      const plugin = yield* load
      const page = (yield* call(plugin, "call_scrobbleretriever_getscrobbles", {
        username: "admin",
        options: { maxItems: 1_000_000 }
      })) as { scrobbles: ReadonlyArray<unknown>; next?: { maxItems: number; fromTimestamp: number } }
      expect(page.scrobbles).toHaveLength(5000)
      expect(page.next).toMatchObject({ maxItems: 5000, fromTimestamp: 5999 })
    })
  )

  it.scoped("the permission is checked at link time and requires users", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const without = yield* Effect.flip(
        loader.loadBytes(
          "no-retriever",
          repackage("host-scrobbleretriever", (m) => ({ ...m, permissions: { users: {} } })),
          { users: "all" }
        )
      )
      expect(without).toMatchObject({ reason: "Link", permission: "scrobbleRetriever" })
      const noUsers = yield* Effect.flip(
        loader.loadBytes(
          "no-users",
          repackage("host-scrobbleretriever", (m) => ({ ...m, permissions: { scrobbleRetriever: {} } }))
        )
      )
      expect(noUsers.message).toContain('requires the "users" permission')
    })
  )
})

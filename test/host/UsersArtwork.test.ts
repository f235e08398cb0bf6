import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { jwtVerify } from "jose"
import { readFileSync } from "node:fs"
import { ArtworkSettings } from "../../src/server/ArtworkSettings.js"
import type { AccessList } from "../../src/host/HostFunctions.js"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import * as Redacted from "effect/Redacted"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"
import { repackage } from "../support/repackage.js"

const decoder = new TextDecoder()

const driver = (id: string, users?: AccessList<string>) =>
  Effect.gen(function* () {
    const loader = yield* PluginLoader
    const plugin = yield* loader.loadBytes(
      `${id}-${Math.random().toString(36).slice(2)}`,
      readFileSync(fixture(id)),
      {
        users
      }
    )
    return (fn: string, request: unknown = {}) =>
      Effect.map(
        plugin.call(`call_${fn}`, JSON.stringify(request)),
        (b) => JSON.parse(decoder.decode(b!)) as unknown
      )
  })

layer(testEngine({ runtime: { poolSize: 2 }, artworkBaseUrl: "https://music.example.org/" }))(
  "Users and Artwork",
  (it) => {
    it.scoped("users_getusers and users_getadmins list only the users allowed for the plugin", () =>
      Effect.gen(function* () {
        const all = yield* driver("host-users", "all")
        expect(yield* all("users_getusers")).toEqual({
          result: [
            { userName: "admin", name: "Administrator", isAdmin: true },
            { userName: "alice", name: "Alice Liddell" },
            { userName: "bob", name: "Bob Dylan" }
          ]
        })
        expect(yield* all("users_getadmins")).toEqual({
          result: [{ userName: "admin", name: "Administrator", isAdmin: true }]
        })

        const onlyAlice = yield* driver("host-users", ["alice"])
        expect(yield* onlyAlice("users_getusers")).toEqual({
          result: [{ userName: "alice", name: "Alice Liddell" }]
        })
        expect(yield* onlyAlice("users_getadmins")).toEqual({})

        const nobody = yield* driver("host-users")
        expect(yield* nobody("users_getusers")).toEqual({})
      })
    )

    it.scoped("artwork URLs carry an HS256 token the server's secret verifies", () =>
      Effect.gen(function* () {
        const settings = yield* ArtworkSettings
        const call = yield* driver("host-artwork")
        const key = new TextEncoder().encode(Redacted.value(settings.secret))
        for (const [fn, prefix] of [
          ["artwork_getartisturl", "ar"],
          ["artwork_getalbumurl", "al"],
          ["artwork_gettrackurl", "mf"],
          ["artwork_getplaylisturl", "pl"]
        ] as const) {
          const { url } = (yield* call(fn, { id: "42", size: 300 })) as { url: string }
          const match = /^https:\/\/music\.example\.org\/share\/img\/([^?]+)\?size=300$/.exec(url)
          expect(match, url).not.toBeNull()
          const { payload, protectedHeader } = yield* Effect.promise(() => jwtVerify(match![1]!, key))
          expect(protectedHeader.alg).toBe("HS256")
          expect(payload).toMatchObject({ iss: "ND", id: `${prefix}-42` })
          const wrongKey = new TextEncoder().encode("not the secret")
          expect((yield* Effect.either(Effect.tryPromise(() => jwtVerify(match![1]!, wrongKey))))._tag).toBe(
            "Left"
          )
        }
        const { url } = (yield* call("artwork_getalbumurl", { id: "7" })) as { url: string }
        expect(url).not.toContain("?size")
        expect(((yield* call("artwork_getalbumurl", { id: "" })) as { error: string }).error).toContain("id")
      })
    )

    it.scoped("without the permission the functions cannot be imported", () =>
      Effect.gen(function* () {
        const loader = yield* PluginLoader
        for (const [id, permission] of [
          ["host-users", "users"],
          ["host-artwork", "artwork"]
        ] as const) {
          const bytes = repackage(id, (m) => ({ ...m, permissions: {} }))
          const error = yield* Effect.flip(loader.loadBytes(`${id}-denied`, bytes))
          expect(error).toMatchObject({ _tag: "PluginLoadError", reason: "Link", permission })
        }
      })
    )
  }
)

import { describe, expect, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { readFileSync } from "node:fs"
import { demoUsers } from "../../../src/server/embedded/EmbeddedDatabase.js"
import * as Engine from "../../../src/Engine.js"
import { ArtworkSettings } from "../../../src/server/ArtworkSettings.js"
import { LibraryCatalog } from "../../../src/server/LibraryCatalog.js"
import { SubsonicRouter, type SubsonicRequest } from "../../../src/server/SubsonicRouter.js"
import { parseUri } from "../../../src/host/subsonic/SubsonicService.js"
import { UserDirectory } from "../../../src/server/UserDirectory.js"
import { PluginLoader } from "../../../src/loader/PluginLoader.js"
import { tempDataFolder } from "../../support/engine.js"
import { fixture } from "../../support/fixtures.js"

const decoder = new TextDecoder()
const encoder = new TextEncoder()

/** What the recording router saw, in order. */
const received: Array<SubsonicRequest> = []

/** A server of our own: demo users, no libraries, and a router that records every request. */
const server = Layer.mergeAll(
  Layer.succeed(UserDirectory, { list: Effect.succeed(demoUsers) }),
  Layer.succeed(ArtworkSettings, { baseUrl: "http://localhost:4533", secret: Redacted.make("secret") }),
  Layer.succeed(LibraryCatalog, { list: Effect.succeed([]) }),
  Layer.succeed(SubsonicRouter, {
    handle: (request) =>
      Effect.sync(() => {
        received.push(request)
        return request.endpoint === "stream"
          ? { contentType: "audio/mpeg", body: Uint8Array.from([0xff, 0xfb, 0x90, 0x00]) }
          : request.endpoint === "empty"
            ? { contentType: "application/octet-stream", body: new Uint8Array(0) }
            : { contentType: "application/json", body: encoder.encode(`{"echo":"${request.endpoint}"}`) }
      })
  })
)

const engine = Layer.unwrapScoped(
  Effect.map(tempDataFolder, (dataFolder) =>
    Engine.layerWithServer({ dataFolder, runtime: { poolSize: 1 } }).pipe(Layer.provide(server))
  )
)

layer(engine)("SubsonicService with the server's own router", (it) => {
  it.scoped("the host forces c, v and (call only) f, drops credentials, and keeps the rest in order", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const plugin = yield* loader.loadBytes("my-subsonic-plugin", readFileSync(fixture("host-subsonic")), {
        users: "all"
      })
      const call = (fn: "call" | "callraw", uri: string) =>
        Effect.map(
          plugin.call(`call_subsonicapi_${fn}`, JSON.stringify({ uri })),
          (bytes) => JSON.parse(decoder.decode(bytes!)) as Record<string, unknown>
        )
      received.length = 0

      const uri =
        "/rest/search3.view?u=alice&query=a+b%26c&c=impostor&v=1.0.0&f=xml&p=hunter2&t=tok&s=salt&id=1&id=2"
      expect(yield* call("call", uri)).toEqual({ responseJson: '{"echo":"search3"}' })
      expect(received[0]).toEqual({
        endpoint: "search3",
        params: [
          ["query", "a b&c"],
          ["id", "1"],
          ["id", "2"],
          ["u", "alice"],
          ["c", "my-subsonic-plugin"],
          ["v", "1.16.1"],
          ["f", "json"]
        ],
        user: { userName: "alice", name: "Alice Liddell", isAdmin: false }
      })

      // callraw passes f through and adds none.
      expect(yield* call("callraw", "getCoverArt?u=ADMIN&id=al-1&f=xml&apiKey=k")).toEqual({
        contentType: "application/json",
        data: Buffer.from('{"echo":"getCoverArt"}').toString("base64")
      })
      expect(received[1]).toEqual({
        endpoint: "getCoverArt",
        params: [
          ["id", "al-1"],
          ["f", "xml"],
          ["u", "admin"],
          ["c", "my-subsonic-plugin"],
          ["v", "1.16.1"]
        ],
        user: { userName: "admin", name: "Administrator", isAdmin: true }
      })
      expect((yield* call("callraw", "stream?u=bob&id=1")).data).toBe(
        Buffer.from([0xff, 0xfb, 0x90, 0x00]).toString("base64")
      )
      // An empty body is an empty answer, whatever its type.
      expect(yield* call("call", "empty?u=bob")).toEqual({})
      expect(yield* call("callraw", "empty?u=bob")).toEqual({ contentType: "application/octet-stream" })
      // Refused calls never reach the router.
      const before = received.length
      expect((yield* call("call", "ping?u=nobody")).error).toContain("not found or not allowed")
      expect((yield* call("call", "ping")).error).toBe("missing required parameter 'u' (username)")
      expect(received.length).toBe(before)
    })
  )
})

describe("parseUri", () => {
  it("takes the last path segment without .view as the endpoint, from any URI form", () => {
    for (const uri of [
      "/rest/getAlbum.view?id=1",
      "/rest/getAlbum?id=1",
      "getAlbum?id=1",
      "getAlbum.view?id=1",
      "http://music.example.org:4533/rest/getAlbum.view?id=1",
      "/rest/getAlbum.view/?id=1"
    ]) {
      expect(parseUri(uri), uri).toEqual(Either.right({ endpoint: "getAlbum", params: [["id", "1"]] }))
    }
    expect(parseUri("/rest/ping.view")).toEqual(Either.right({ endpoint: "ping", params: [] }))
    expect(parseUri("ping?q=%E6%9D%B1%E4%BA%AC&x=1+2&x=3")).toEqual(
      Either.right({
        endpoint: "ping",
        params: [
          ["q", "東京"],
          ["x", "1 2"],
          ["x", "3"]
        ]
      })
    )
    expect(Either.isLeft(parseUri(""))).toBe(true)
    expect(Either.isLeft(parseUri("?u=alice"))).toBe(true)
    expect(Either.isLeft(parseUri("/rest/%E0%A4%A.view"))).toBe(true)
  })
})

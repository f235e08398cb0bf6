import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as NetworkPolicy from "../../../src/host/network/NetworkPolicy.js"
import {
  checkTarget,
  generateConnectionId,
  isValidCloseCode
} from "../../../src/host/websocket/WebSocketService.js"

// Host matching and address classification are NetworkPolicy's (test/host/network/NetworkPolicy.test.ts).
describe("WebSocket targets", () => {
  it.effect("URLs are checked for scheme, host and literal private addresses before connecting", () =>
    Effect.gen(function* () {
      const policy = (grants: ReadonlyArray<string>) =>
        NetworkPolicy.make({
          permission: "websocket",
          requiredHosts: ["*.example.com", "127.0.0.1", "*"],
          grants: Effect.runSync(NetworkPolicy.decodeGrants(grants))
        })
      const reason = (url: string, grants: ReadonlyArray<string> = []) =>
        checkTarget(url, policy(grants)).pipe(
          Effect.match({ onFailure: (e) => `${e.reason}: ${e.message}`, onSuccess: () => "ok" })
        )
      expect(yield* reason("wss://a.example.com/feed")).toBe("ok")
      // Listed exactly is not enough for a loopback literal: the operator must grant it.
      expect(yield* reason("ws://127.0.0.1:9000/")).toBe(
        'Forbidden: websocket host "127.0.0.1" is a loopback address; plugins may not reach private networks unless the operator grants it with --allow-network 127.0.0.1/32'
      )
      expect(yield* reason("ws://127.0.0.1:9000/", ["127.0.0.1/32"])).toBe("ok")
      expect(yield* reason("ws://127.0.0.2:9000/", ["127.0.0.1/32"])).toMatch(/^Forbidden/)
      expect(yield* reason("ws://192.168.1.7/", ["192.168.1.0/24"])).toBe("ok")
      expect(yield* reason("ws://[::1]/", ["::1/128"])).toBe("ok")
      expect(yield* reason("http://a.example.com/")).toMatch(/^Scheme/)
      expect(yield* reason("ws+unix:///tmp/socket")).toMatch(/^Scheme/)
      expect(yield* reason("nonsense")).toMatch(/^BadRequest/)
      // Without a grant every private literal is refused.
      expect(yield* reason("ws://10.1.2.3/")).toMatch(/^Forbidden: .* is a private address/)
      expect(yield* reason("ws://[::1]:80/")).toMatch(/^Forbidden: .* is a loopback address.*::1\/128$/)
      expect(yield* reason("ws://[fe80::1]/")).toMatch(/^Forbidden/)
      expect(yield* reason("ws://192.168.1.1/")).toMatch(/^Forbidden/)
      expect(yield* reason("ws://8.8.8.8/")).toBe("ok")
    })
  )

  it("generated IDs are 22 base62 characters; close codes follow RFC 6455", () => {
    const ids = new Set(Array.from({ length: 200 }, generateConnectionId))
    expect(ids.size).toBe(200)
    for (const id of ids) expect(id).toMatch(/^[0-9A-Za-z]{22}$/)
    expect([1000, 1001, 1011, 3000, 4999].every(isValidCloseCode)).toBe(true)
    expect([0, 999, 1004, 1005, 1006, 1015, 2999, 5000].some(isValidCloseCode)).toBe(false)
  })
})

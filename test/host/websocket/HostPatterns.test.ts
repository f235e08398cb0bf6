import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import {
  isHostAllowed,
  isListedExactly,
  matchesPattern,
  parseHostPatterns
} from "../../../src/host/websocket/HostPatterns.js"
import {
  checkTarget,
  generateConnectionId,
  isValidCloseCode
} from "../../../src/host/websocket/WebSocketService.js"

describe("WebSocket host patterns", () => {
  it("`*.suffix` matches subdomains at any depth but not the bare suffix", () => {
    const hosts = parseHostPatterns(["*.example.com"])
    expect(isHostAllowed(hosts, "a.example.com")).toBe(true)
    expect(isHostAllowed(hosts, "a.b.c.example.com")).toBe(true)
    expect(isHostAllowed(hosts, "example.com")).toBe(false)
    expect(isHostAllowed(hosts, "badexample.com")).toBe(false)
    expect(isHostAllowed(hosts, "example.com.evil.net")).toBe(false)
    expect(isHostAllowed(hosts, ".example.com")).toBe(false)
  })

  it("exact entries match only themselves, case-insensitively, whatever the port", () => {
    const hosts = parseHostPatterns(["Feed.Example.COM", "localhost:8080", "[::1]", "127.0.0.1"])
    expect(isHostAllowed(hosts, "feed.example.com")).toBe(true)
    expect(isHostAllowed(hosts, "FEED.example.com.")).toBe(true)
    expect(isHostAllowed(hosts, "x.feed.example.com")).toBe(false)
    expect(isHostAllowed(hosts, "localhost")).toBe(true)
    expect(isHostAllowed(hosts, "[::1]")).toBe(true)
    expect(isHostAllowed(hosts, "127.0.0.1")).toBe(true)
    expect(isHostAllowed(hosts, "127.0.0.2")).toBe(false)
    expect(isListedExactly(hosts, "localhost")).toBe(true)
  })

  it("`*` matches every host, but lists none exactly", () => {
    const hosts = parseHostPatterns(["*"])
    expect(isHostAllowed(hosts, "anything.at.all")).toBe(true)
    expect(isHostAllowed(hosts, "10.0.0.1")).toBe(true)
    expect(isListedExactly(hosts, "10.0.0.1")).toBe(false)
    expect(isHostAllowed(parseHostPatterns([]), "example.com")).toBe(false)
  })

  it("a wildcard only counts as a leading `*.` label", () => {
    expect(matchesPattern("api.*.com", "api.x.com")).toBe(false)
    expect(matchesPattern("*example.com", "badexample.com")).toBe(false)
    expect(isListedExactly(parseHostPatterns(["*.example.com"]), "a.example.com")).toBe(false)
  })

  it.effect("URLs are checked for scheme, host and literal private addresses before connecting", () =>
    Effect.gen(function* () {
      const hosts = parseHostPatterns(["*.example.com", "127.0.0.1", "*"])
      const reason = (url: string) =>
        checkTarget(url, hosts).pipe(
          Effect.match({
            onFailure: (e) => e.reason,
            onSuccess: (t) => (t.mayReachPrivate ? "private ok" : "ok")
          })
        )
      expect(yield* reason("wss://a.example.com/feed")).toBe("ok")
      expect(yield* reason("ws://127.0.0.1:9000/")).toBe("private ok")
      expect(yield* reason("http://a.example.com/")).toBe("Scheme")
      expect(yield* reason("ws+unix:///tmp/socket")).toBe("Scheme")
      expect(yield* reason("nonsense")).toBe("BadRequest")
      // Allowed by `*`, but not listed exactly: private literals are refused.
      expect(yield* reason("ws://10.1.2.3/")).toBe("Forbidden")
      expect(yield* reason("ws://[::1]:80/")).toBe("Forbidden")
      expect(yield* reason("ws://[fe80::1]/")).toBe("Forbidden")
      expect(yield* reason("ws://192.168.1.1/")).toBe("Forbidden")
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

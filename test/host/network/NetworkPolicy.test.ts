import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import type { LookupFunction } from "node:net"
import { canonicalHeaderName } from "../../../src/host/http/HttpClient.js"
import {
  type AddressKind,
  AddressRefused,
  checkHost,
  classifyAddress,
  decodeGrants,
  globMatch,
  guardedLookup,
  isHostListed,
  isPublicAddress,
  make,
  normaliseEntry,
  type Permission,
  refusedKind
} from "../../../src/host/network/NetworkPolicy.js"

const policy = (
  requiredHosts: ReadonlyArray<string>,
  grants: ReadonlyArray<string> = [],
  permission: Permission = "http"
) => make({ permission, requiredHosts, grants: Effect.runSync(decodeGrants(grants)) })

describe("host matcher", () => {
  const list = policy([
    "*.example.com",
    "api.*.org",
    "Exact.Host.net",
    "localhost:8080",
    "[::1]",
    "127.1",
    "Bücher.de"
  ])

  it("matches globs where * crosses dots, case-insensitively, ignoring the port", () => {
    for (const host of ["a.example.com", "a.b.c.example.com", "A.EXAMPLE.COM", "api.x.org", "api.x.y.org"]) {
      expect(isHostListed(list, host), host).toBe(true)
    }
    for (const host of [
      "example.com",
      ".example.com",
      "aexample.com",
      "example.com.evil.net",
      "api.org",
      "api..org",
      "xapi.x.org.net",
      ""
    ]) {
      expect(isHostListed(list, host), host).toBe(false)
    }
  })

  it("compares exact entries in URL form: case, ports, brackets, IPv4 shorthand, IDN, trailing dots", () => {
    for (const host of [
      "exact.host.net",
      "EXACT.HOST.NET.",
      "localhost",
      "[::1]",
      "127.0.0.1",
      "xn--bcher-kva.de"
    ]) {
      expect(isHostListed(list, host), host).toBe(true)
    }
    expect(isHostListed(list, "x.exact.host.net")).toBe(false)
    expect(isHostListed(list, "127.0.0.2")).toBe(false)
    expect(normaliseEntry("https://API.example.com:443/path")).toBe("api.example.com")
    expect(normaliseEntry("0:0:0:0:0:0:0:1")).toBe("::1")
  })

  it("* alone matches every host; an empty list matches nothing", () => {
    expect(isHostListed(policy(["*"]), "127.0.0.1")).toBe(true)
    expect(isHostListed(policy(["*"]), "a.b.c")).toBe(true)
    expect(isHostListed(policy([]), "example.com")).toBe(false)
  })

  it.prop(
    "globMatch agrees with an equivalent regular expression (* is one or more characters)",
    [FastCheck.stringMatching(/^[ab.*]{0,8}$/), FastCheck.stringMatching(/^[ab.]{0,12}$/)],
    ([pattern, text]) => {
      const regex = new RegExp(`^${pattern.replace(/\./g, "\\.").replace(/\*/g, ".+")}$`)
      expect(globMatch(pattern, text)).toBe(regex.test(text))
    }
  )

  it("globMatch stays fast on adversarial patterns", () => {
    const pattern = `${"*a".repeat(50)}b`
    expect(globMatch(pattern, "a".repeat(5000))).toBe(false)
  })
})

describe("address classifier", () => {
  const cases: ReadonlyArray<readonly [string, AddressKind]> = [
    ["8.8.8.8", "public"],
    ["93.184.216.34", "public"],
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["10.0.0.1", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["172.32.0.1", "public"],
    ["172.15.0.1", "public"],
    ["192.168.1.1", "private"],
    ["169.254.169.254", "linkLocal"],
    ["100.64.0.1", "sharedCgnat"],
    ["100.127.255.255", "sharedCgnat"],
    ["100.128.0.1", "public"],
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["224.0.0.1", "multicast"],
    ["255.255.255.255", "broadcast"],
    ["240.0.0.1", "reserved"],
    ["192.0.2.10", "documentation"],
    ["198.51.100.1", "documentation"],
    ["203.0.113.255", "documentation"],
    ["198.18.0.1", "benchmarking"],
    ["198.19.255.255", "benchmarking"],
    ["198.20.0.1", "public"],
    ["192.0.0.8", "reserved"],
    ["192.88.99.1", "reserved"],
    ["2001:db8::1", "documentation"],
    ["3fff::1", "documentation"],
    ["2001::1", "reserved"],
    ["100::1", "reserved"],
    ["64:ff9b:1::1", "reserved"],
    ["2002:c0a8:0101::1", "private"],
    ["2002:0808:0808::1", "public"],
    ["4000::1", "reserved"],
    ["::ffff:255.255.255.255", "broadcast"],
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["[::1]", "loopback"],
    ["0:0:0:0:0:0:0:1", "loopback"],
    ["fe80::1", "linkLocal"],
    ["fe80::1%eth0", "linkLocal"],
    ["febf::1", "linkLocal"],
    ["fc00::1", "uniqueLocal"],
    ["fd12:3456::1", "uniqueLocal"],
    ["fec0::1", "private"],
    ["ff02::1", "multicast"],
    ["2001:4860:4860::8888", "public"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::ffff:10.1.2.3", "private"],
    ["::ffff:169.254.1.1", "linkLocal"],
    ["::ffff:8.8.8.8", "public"],
    ["::ffff:0:192.168.0.1", "private"],
    ["::127.0.0.1", "loopback"],
    ["64:ff9b::10.0.0.1", "private"],
    ["64:ff9b::8.8.8.8", "public"],
    ["localhost", "invalid"],
    ["127.1", "invalid"],
    ["", "invalid"],
    ["1::2::3", "invalid"]
  ]

  it("classifies addresses", () => {
    for (const [address, kind] of cases) expect(classifyAddress(address), address).toBe(kind)
    expect(isPublicAddress("8.8.8.8")).toBe(true)
    expect(isPublicAddress("::ffff:127.0.0.1")).toBe(false)
  })

  it.prop(
    "classification never throws on arbitrary strings",
    [FastCheck.string({ maxLength: 60 })],
    ([text]) => {
      expect(typeof classifyAddress(text)).toBe("string")
    }
  )

  it.prop(
    "every IPv4 address classifies the same as its IPv4-mapped IPv6 form",
    [FastCheck.ipV4()],
    ([address]) => {
      expect(classifyAddress(`::ffff:${address}`)).toBe(classifyAddress(address))
    }
  )

  it.prop("every IPv6 address is classified", [FastCheck.ipV6()], ([address]) => {
    expect(classifyAddress(address)).not.toBe("invalid")
  })
})

describe("operator grants", () => {
  const decode = (entries: ReadonlyArray<string>) => Effect.runSync(Effect.either(decodeGrants(entries)))

  it("decode CIDRs, addresses and host names", () => {
    const grants = Effect.runSync(
      decodeGrants([
        "192.168.1.0/24",
        "127.0.0.1",
        "::1/128",
        " NAS.Home.Arpa. ",
        "::ffff:10.0.0.0/104",
        "0.0.0.0/0"
      ])
    )
    expect(grants.map((g) => (g._tag === "Host" ? `host ${g.host}` : `${g.text} → /${g.prefix}`))).toEqual([
      "192.168.1.0/24 → /24",
      "127.0.0.1 → /32",
      "::1/128 → /128",
      "host nas.home.arpa",
      "::ffff:a00:0/104 → /8",
      "0.0.0.0/0 → /0"
    ])
  })

  it("refuse anything else with a typed error naming the entry and what to write", () => {
    const cases: ReadonlyArray<readonly [string, RegExp]> = [
      ["10.0.0.0/33", /prefix length must be 0–32 for an IPv4 network/],
      ["::/129", /prefix length must be 0–128 for an IPv6 network/],
      ["10.0.0.0/x", /prefix length "x" is not a number/],
      ["10.0.0.1/8", /bits set after the first 8; write the network address/],
      ["300.1.1.1/8", /"300.1.1.1" is not an IP address/],
      ["127.1/32", /"127.1" is not an IP address/],
      ["*.lan", /wildcards are not allowed/],
      ["", /it is empty/],
      ["host:80", /has a port; a grant covers every port/],
      ["300.1.1.1", /looks like an IPv4 address but is not a valid one/],
      ["https://nas.local/", /is a URL/],
      ["a b", /contains white space/]
    ]
    for (const [entry, message] of cases) {
      const result = decode(["127.0.0.1/32", entry])
      if (Either.isRight(result)) throw new Error(`${entry} was accepted`)
      expect(result.left._tag).toBe("NetworkGrantError")
      expect(result.left.grant).toBe(entry)
      expect(result.left.message, entry).toMatch(message)
      expect(result.left.message).toContain(`allowed network ${JSON.stringify(entry)} is not valid`)
    }
  })
})

describe("policy", () => {
  it("an exactly listed private host is refused without a grant, and allowed with one", () => {
    const refused = checkHost(policy(["127.0.0.1", "localhost"]), "127.0.0.1")
    expect(refused).toEqual(
      Either.left(
        'host "127.0.0.1" is a loopback address; plugins may not reach private networks unless the operator grants it with --allow-network 127.0.0.1/32'
      )
    )
    expect(checkHost(policy(["127.0.0.1"], ["127.0.0.1/32"]), "127.0.0.1")).toEqual(Either.right("127.0.0.1"))
    // A grant does not widen the manifest's list.
    expect(Either.isLeft(checkHost(policy(["example.com"], ["127.0.0.1/32"]), "127.0.0.1"))).toBe(true)
    // Wildcard manifests take grants too.
    expect(checkHost(policy(["*"], ["10.0.0.0/8"]), "10.1.2.3")).toEqual(Either.right("10.1.2.3"))
    expect(Either.isLeft(checkHost(policy(["*"], ["10.0.0.0/8"]), "192.168.0.1"))).toBe(true)
  })

  it("decides every resolved address: public always, private only inside a grant or for a granted name", () => {
    const p = policy(["*"], ["192.168.1.0/24", "::1/128", "nas.lan"])
    expect(refusedKind(p, "x.test", "8.8.8.8")).toBeUndefined()
    expect(refusedKind(p, "x.test", "192.168.1.20")).toBeUndefined()
    expect(refusedKind(p, "x.test", "::ffff:192.168.1.20")).toBeUndefined()
    expect(refusedKind(p, "x.test", "192.168.2.20")).toBe("private")
    expect(refusedKind(p, "x.test", "::1")).toBeUndefined()
    expect(refusedKind(p, "x.test", "127.0.0.1")).toBe("loopback")
    expect(refusedKind(p, "NAS.lan", "10.9.9.9")).toBeUndefined()
    expect(refusedKind(p, "other.lan", "10.9.9.9")).toBe("private")
  })

  it.effect("the guarded lookup refuses a name with any refused address and never names the address", () =>
    Effect.gen(function* () {
      const answers: Record<string, ReadonlyArray<string>> = {
        "mixed.test": ["93.184.216.34", "10.0.0.7"],
        "inside.test": ["192.168.1.9"]
      }
      const resolve: LookupFunction = (hostname, _options, callback) =>
        callback(
          null,
          (answers[hostname] ?? []).map((address) => ({ address, family: address.includes(":") ? 6 : 4 }))
        )
      const run = (p: ReturnType<typeof policy>, host: string) =>
        Effect.async<string>((resume) =>
          guardedLookup(p, host, resolve)(host, { all: true }, (error, found) =>
            resume(
              Effect.succeed(
                error === null
                  ? JSON.stringify(found)
                  : error instanceof AddressRefused
                    ? `refused ${error.message} [${error.address} ${error.kind}]`
                    : `error ${error.message}`
              )
            )
          )
        )
      const mixed = yield* run(policy(["*.test"], [], "websocket"), "mixed.test")
      expect(mixed).toBe(
        'refused websocket host "mixed.test" resolves to a private/loopback address; plugins may not reach private networks unless the operator grants it with --allow-network mixed.test [10.0.0.7 private]'
      )
      expect(mixed.split("[")[0]).not.toContain("10.0.0.7")
      expect(yield* run(policy(["*.test"], ["10.0.0.0/24"]), "mixed.test")).toContain("93.184.216.34")
      expect(yield* run(policy(["*.test"], ["inside.test"]), "inside.test")).toContain("192.168.1.9")
      expect(yield* run(policy(["*.test"]), "nothing.test")).toBe("error no address found for nothing.test")
    })
  )
})

describe("response header names", () => {
  it("take Go's canonical form", () => {
    expect(canonicalHeaderName("content-type")).toBe("Content-Type")
    expect(canonicalHeaderName("X-MULTI-part")).toBe("X-Multi-Part")
    expect(canonicalHeaderName("www-authenticate")).toBe("Www-Authenticate")
    expect(canonicalHeaderName("x_under")).toBe("X_under")
    expect(canonicalHeaderName("bad name")).toBe("bad name")
  })
})

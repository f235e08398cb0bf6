import { describe, expect, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { canonicalHeaderName } from "../../../src/host/http/HttpClient.js"
import {
  type AddressKind,
  classifyAddress,
  globMatch,
  isListedExactly,
  isPublicAddress,
  matchesAllowList,
  normaliseEntry,
  parseAllowList
} from "../../../src/host/http/HostPolicy.js"

describe("host matcher", () => {
  const list = parseAllowList([
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
      expect(matchesAllowList(list, host), host).toBe(true)
    }
    for (const host of ["example.com", "aexample.com", "example.com.evil.net", "api.org", "xapi.x.org.net"]) {
      expect(matchesAllowList(list, host), host).toBe(false)
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
      expect(matchesAllowList(list, host), host).toBe(true)
      expect(isListedExactly(list, host), host).toBe(true)
    }
    expect(isListedExactly(list, "a.example.com")).toBe(false)
    expect([...list.exact].sort()).toEqual([
      "127.0.0.1",
      "::1",
      "exact.host.net",
      "localhost",
      "xn--bcher-kva.de"
    ])
    expect(normaliseEntry("https://API.example.com:443/path")).toBe("api.example.com")
    expect(normaliseEntry("0:0:0:0:0:0:0:1")).toBe("::1")
  })

  it("* alone matches every host but lists none exactly; an empty list matches nothing", () => {
    const star = parseAllowList(["*"])
    expect(matchesAllowList(star, "127.0.0.1")).toBe(true)
    expect(isListedExactly(star, "127.0.0.1")).toBe(false)
    expect(matchesAllowList(parseAllowList([]), "example.com")).toBe(false)
  })

  it.prop(
    "globMatch agrees with an equivalent regular expression",
    [FastCheck.stringMatching(/^[ab.*]{0,8}$/), FastCheck.stringMatching(/^[ab.]{0,12}$/)],
    ([pattern, text]) => {
      const regex = new RegExp(`^${pattern.replace(/\./g, "\\.").replace(/\*/g, ".*")}$`)
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
    ["255.255.255.255", "reserved"],
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

describe("response header names", () => {
  it("take Go's canonical form", () => {
    expect(canonicalHeaderName("content-type")).toBe("Content-Type")
    expect(canonicalHeaderName("X-MULTI-part")).toBe("X-Multi-Part")
    expect(canonicalHeaderName("www-authenticate")).toBe("Www-Authenticate")
    expect(canonicalHeaderName("x_under")).toBe("X_under")
    expect(canonicalHeaderName("bad name")).toBe("bad name")
  })
})

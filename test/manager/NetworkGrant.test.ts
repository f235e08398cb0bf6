/** The operator's network grants: what is accepted (and its canonical form), what is refused and why. */
import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import { decodeNetworkGrants } from "../../src/manager/NetworkGrant.js"

describe("NetworkGrant", () => {
  it("accepts addresses, CIDR blocks and host names, in canonical form", () => {
    const cases: ReadonlyArray<[string, string]> = [
      ["192.168.1.0/24", "192.168.1.0/24"],
      ["10.0.0.5", "10.0.0.5"],
      ["0.0.0.0/0", "0.0.0.0/0"],
      [" 172.16.0.0/12 ", "172.16.0.0/12"],
      ["FD00:0::/8", "fd00::/8"],
      ["[::1]", "::1"],
      ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
      ["::ffff:10.0.0.0/104", "::ffff:a00:0/104"],
      ["NAS.Local", "nas.local"],
      ["media.example.org.", "media.example.org"],
      ["bücher.de", "xn--bcher-kva.de"]
    ]
    for (const [entry, canonical] of cases) {
      expect(decodeNetworkGrants([entry]), entry).toEqual(Either.right([canonical]))
    }
    expect(decodeNetworkGrants(["a.org", "A.org", "10.0.0.0/8"])).toEqual(
      Either.right(["a.org", "10.0.0.0/8"])
    )
  })

  it("refuses anything else, saying what is wrong with the first bad entry", () => {
    const cases: ReadonlyArray<[string, string]> = [
      ["192.168.1.7/24", "has bits set after the /24 prefix; the block is 192.168.1.0/24"],
      ["fd00::1/8", "the block is fd00::/8"],
      ["1.2.3.4/33", "prefix length over 32"],
      ["::/129", "prefix length over 128"],
      ["10.0.0.0/x", 'prefix length "x" that is not a number'],
      ["nas/24", "not an IPv4 or IPv6 address"],
      ["nas.local:8080", "has a port"],
      ["10.0.0.1:80", "has a port"],
      ["https://nas.local/", "is a URL"],
      ["", "is empty; give a CIDR block"],
      ["nas local", "white space"],
      ["300.1.1.1", "neither an IP address, a CIDR block nor a valid host name"],
      ["-bad.example", "neither an IP address"],
      ["a.*.example", "has a wildcard"],
      ["*.example.org", "has a wildcard"]
    ]
    for (const [entry, why] of cases) {
      const message = Either.match(decodeNetworkGrants(["10.0.0.0/8", entry]), {
        onLeft: (m) => m,
        onRight: () => "accepted"
      })
      expect(message, entry).toContain(`"${entry}" `)
      expect(message, entry).toContain(why)
    }
  })
})

/**
 * The operator's network grants as the manager stores them: what is accepted (and its canonical
 * form), what is refused and why. The parser is `NetworkPolicy`'s, the one the loader uses too.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import { decodeNetworkGrants } from "../../src/host/network/NetworkPolicy.js"

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
      [
        "192.168.1.7/24",
        "has bits set after the first 24; write the network address instead: the block is 192.168.1.0/24"
      ],
      ["fd00::1/8", "the block is fd00::/8"],
      ["::ffff:10.0.0.1/104", "the block is ::ffff:a00:0/104"],
      ["1.2.3.4/33", "the prefix length must be 0–32 for an IPv4 network"],
      ["::/129", "the prefix length must be 0–128 for an IPv6 network"],
      ["10.0.0.0/x", 'the prefix length "x" is not a number'],
      ["nas/24", '"nas" is not an IP address'],
      ["fe80::1%eth0/64", '"fe80::1%eth0" is not an IP address'],
      ["nas.local:8080", "has a port"],
      ["10.0.0.1:80", "has a port"],
      ["https://nas.local/", "is a URL"],
      ["", "it is empty; give a CIDR"],
      ["nas local", "white space"],
      ["300.1.1.1", "looks like an IPv4 address but is not a valid one"],
      ["127.1", "looks like an IPv4 address but is not a valid one"],
      ["-bad.example", "not a CIDR, an address or a host name"],
      ["a.*.example", "wildcards are not allowed"],
      ["*.example.org", "wildcards are not allowed"]
    ]
    for (const [entry, why] of cases) {
      const message = Either.match(decodeNetworkGrants(["10.0.0.0/8", entry]), {
        onLeft: (m) => m,
        onRight: () => "accepted"
      })
      expect(message, entry).toContain(`allowed network ${JSON.stringify(entry)} is not valid: `)
      expect(message, entry).toContain(why)
    }
  })
})

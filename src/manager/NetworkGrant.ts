/**
 * The networks an operator grants one plugin (`ndp plugins enable <id> --allow-network …`): IP
 * addresses, CIDR blocks and host names, decoded with `effect/Schema` where they enter the manager
 * so that the registry and the loader only ever see well-formed, canonical entries.
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { isIPv4, isIPv6 } from "node:net"
import { domainToASCII } from "node:url"

const examples =
  "a CIDR block (192.168.1.0/24, fd00::/8), an IP address (10.0.0.5) or a host name (nas.local)"

/** Why `text` is not a grant, or its canonical form. */
const parse = (text: string): Either.Either<string, string> => {
  const entry = text.trim()
  if (entry.length === 0) return Either.left(`is empty; give ${examples}`)
  if (/\s/.test(entry)) return Either.left("contains white space")
  if (entry.includes("://"))
    return Either.left("is a URL; give only the host or network, without scheme or path")
  const slash = entry.indexOf("/")
  if (slash >= 0) return parseCidr(entry.slice(0, slash), entry.slice(slash + 1))
  const bare = entry.startsWith("[") && entry.endsWith("]") ? entry.slice(1, -1) : entry
  if (isIPv4(bare)) return Either.right(bare)
  if (isIPv6(bare)) return Either.right(canonicalIPv6(bare))
  return parseHost(entry)
}

const parseCidr = (address: string, prefixText: string): Either.Either<string, string> => {
  if (!/^\d{1,3}$/.test(prefixText))
    return Either.left(`has a prefix length "${prefixText}" that is not a number`)
  const prefix = Number(prefixText)
  if (isIPv4(address)) {
    if (prefix > 32) return Either.left("has an IPv4 prefix length over 32")
    return checkHostBits(ipv4Bits(address), 32, prefix, (bits) => `${ipv4Text(bits)}/${prefix}`)
  }
  if (isIPv6(address)) {
    if (prefix > 128) return Either.left("has an IPv6 prefix length over 128")
    const bits = ipv6Bits(address)
    if (bits === undefined) return Either.left("is not a valid IPv6 address")
    return checkHostBits(bits, 128, prefix, (network) => `${ipv6Text(network)}/${prefix}`)
  }
  return Either.left(
    `has "${address}" before the "/", which is not an IPv4 or IPv6 address; a block looks like 192.168.1.0/24`
  )
}

// A block whose address has bits set past the prefix is most likely a typo for a narrower grant
// (192.168.1.7/24 meant as /32): refuse it and name the block it would have granted.
const checkHostBits = (
  bits: bigint,
  width: number,
  prefix: number,
  show: (network: bigint) => string
): Either.Either<string, string> => {
  const hostMask = (1n << BigInt(width - prefix)) - 1n
  const network = bits & ~hostMask
  return network === bits
    ? Either.right(show(bits))
    : Either.left(`has bits set after the /${prefix} prefix; the block is ${show(network)}`)
}

const ipv4Bits = (address: string): bigint =>
  address.split(".").reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n)

const ipv4Text = (bits: bigint): string =>
  [24n, 16n, 8n, 0n].map((shift) => ((bits >> shift) & 0xffn).toString()).join(".")

/** The 128 bits of an IPv6 address (zone not allowed; an embedded IPv4 tail expanded). */
const ipv6Bits = (address: string): bigint | undefined => {
  let text = address
  const lastColon = text.lastIndexOf(":")
  const tail = text.slice(lastColon + 1)
  if (tail.includes(".")) {
    if (!isIPv4(tail)) return undefined
    const v4 = ipv4Bits(tail)
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`
  }
  const [head = "", rest] = text.split("::")
  const front = head.length > 0 ? head.split(":") : []
  const back = rest === undefined || rest.length === 0 ? [] : rest.split(":")
  const gap = rest === undefined ? 0 : 8 - front.length - back.length
  const groups = [...front, ...Array.from({ length: Math.max(gap, 0) }, () => "0"), ...back]
  if (groups.length !== 8 || !groups.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return undefined
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n)
}

const ipv6Text = (bits: bigint): string =>
  canonicalIPv6(
    Array.from({ length: 8 }, (_, i) => ((bits >> BigInt(112 - i * 16)) & 0xffffn).toString(16)).join(":")
  )

// The WHATWG URL parser prints IPv6 in its RFC 5952 form (lower case, longest zero run as "::").
const canonicalIPv6 = (address: string): string => new URL(`http://[${address}]/`).hostname.slice(1, -1)

const label = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/

const parseHost = (entry: string): Either.Either<string, string> => {
  if (/:\d*$/.test(entry)) return Either.left("has a port; a grant covers every port: give the host alone")
  // The loader's network policy grants names exactly: a wildcard stored here would fail every load.
  if (entry.includes("*"))
    return Either.left("has a wildcard; grant each host name, or its network as a CIDR block")
  const name = entry.replace(/\.$/, "")
  const ascii = domainToASCII(name)
  if (ascii.length === 0 || ascii.length > 253 || !ascii.split(".").every((l) => label.test(l))) {
    return Either.left(`is neither an IP address, a CIDR block nor a valid host name; give ${examples}`)
  }
  if (/^[0-9.]+$/.test(ascii)) return Either.left("looks like an IPv4 address but is not a valid one")
  return Either.right(ascii)
}

/**
 * One network grant: an IPv4 or IPv6 address, a CIDR block (no bits set after the prefix), or a
 * host name (no wildcards, as the loader's policy grants names exactly). Decodes to the canonical text: host names in
 * lower-case ASCII (punycode), IPv6 in its RFC 5952 form.
 */
export const NetworkGrant = Schema.transformOrFail(Schema.String, Schema.String, {
  strict: true,
  decode: (text, _, ast) =>
    Either.match(parse(text), {
      onLeft: (why) => ParseResult.fail(new ParseResult.Type(ast, text, `"${text}" ${why}`)),
      onRight: ParseResult.succeed
    }),
  encode: ParseResult.succeed
}).annotations({ identifier: "NetworkGrant" })

/**
 * Decodes a list of grants: canonical entries, duplicates dropped, in the order given; or the
 * message of the first entry that is not one.
 */
export const decodeNetworkGrants = (
  entries: ReadonlyArray<string>
): Either.Either<ReadonlyArray<string>, string> => {
  const out: Array<string> = []
  for (const entry of entries) {
    const decoded = Schema.decodeUnknownEither(NetworkGrant)(entry)
    if (Either.isLeft(decoded)) {
      const [issue] = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
      return Either.left(issue?.message ?? `"${entry}" is not a network grant; give ${examples}`)
    }
    if (!out.includes(decoded.right)) out.push(decoded.right)
  }
  return Either.right(out)
}

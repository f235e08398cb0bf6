/**
 * Where a plugin's network services (HTTP and WebSocket) may connect. Two decisions, made by two
 * different people:
 *
 * - the plugin author's manifest lists the host names the plugin may reach (`requiredHosts`,
 *   globs where `*` stands for one or more characters, dots included; case-insensitive; port
 *   ignored);
 * - the operator decides which private networks a plugin may reach (`allowedNetworks`: CIDRs or
 *   host names). Without a grant, every address that is not ordinary public unicast (loopback,
 *   private, link-local, CGNAT, documentation, multicast, …) is refused after DNS resolution,
 *   whatever the manifest lists: whoever controls a listed name's DNS could otherwise point the
 *   plugin at the server's own network.
 *
 * Refusal messages never say what a name resolved to: a plugin must not learn the server's
 * internal addresses by probing names.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { LookupAddress, LookupOptions } from "node:dns"
import { isIP, type LookupFunction } from "node:net"

// ---------------------------------------------------------------------------------------------
// Host names and the manifest's allow-list

/** A URL hostname as compared: lower case, without IPv6 brackets or a trailing dot. */
export const normaliseHostname = (hostname: string): string => {
  let host = hostname.trim().toLowerCase()
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1)
  if (host.endsWith(".")) host = host.slice(0, -1)
  return host
}

/**
 * One entry in the form URL hostnames take: run through the WHATWG host parser, so `127.1`,
 * `[0:0::1]`, `Bücher.de` and `localhost:8080` compare equal to what a request URL gives.
 */
export const normaliseEntry = (entry: string): string => {
  const trimmed = entry.trim()
  const authority = isIP(trimmed) === 6 ? `[${trimmed}]` : trimmed
  try {
    return normaliseHostname(new URL(trimmed.includes("://") ? trimmed : `http://${authority}`).hostname)
  } catch {
    return normaliseHostname(trimmed)
  }
}

const STAR = 0x2a

/**
 * Whether `text` matches `pattern`, where `*` stands for one or more characters (dots included).
 * Linear time: on a mismatch it backtracks only to the most recent star.
 */
export const globMatch = (pattern: string, text: string): boolean => {
  let p = 0
  let t = 0
  let star = -1
  let resume = 0
  while (t < text.length) {
    const c = pattern.charCodeAt(p)
    if (p < pattern.length && c !== STAR && c === text.charCodeAt(t)) {
      p++
      t++
    } else if (p < pattern.length && c === STAR) {
      // The star takes one character now and may take more on backtracking.
      star = p++
      resume = ++t
    } else if (star >= 0) {
      p = star + 1
      t = ++resume
    } else {
      return false
    }
  }
  return p === pattern.length
}

// ---------------------------------------------------------------------------------------------
// Addresses

/** What an IP address is, for deciding whether a plugin may reach it. */
export type AddressKind =
  | "public"
  | "loopback"
  | "private"
  | "linkLocal"
  | "uniqueLocal"
  | "unspecified"
  | "sharedCgnat"
  | "multicast"
  | "broadcast"
  | "documentation"
  | "benchmarking"
  | "reserved"
  | "invalid"

const kindNames: Record<AddressKind, string> = {
  public: "public",
  loopback: "loopback",
  private: "private",
  linkLocal: "link-local",
  uniqueLocal: "unique-local",
  unspecified: "unspecified",
  sharedCgnat: "carrier-grade NAT",
  multicast: "multicast",
  broadcast: "broadcast",
  documentation: "documentation",
  benchmarking: "benchmarking",
  reserved: "reserved",
  invalid: "invalid"
}

/** A short human name of an address kind, for error messages. */
export const describeKind = (kind: AddressKind): string => kindNames[kind]

const parseIPv4Bytes = (text: string): Uint8Array | undefined =>
  isIP(text) === 4 ? Uint8Array.from(text.split(".").map(Number)) : undefined

const parseIPv6Bytes = (text: string): Uint8Array | undefined => {
  if (isIP(text) !== 6) return undefined
  let address = text
  const lastColon = address.lastIndexOf(":")
  const tail = address.slice(lastColon + 1)
  if (tail.includes(".")) {
    const [a = 0, b = 0, c = 0, d = 0] = parseIPv4Bytes(tail) ?? []
    address = `${address.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = "", rest] = address.split("::")
  const front = head.length > 0 ? head.split(":") : []
  const back = rest === undefined || rest.length === 0 ? [] : rest.split(":")
  const gap = rest === undefined ? 0 : 8 - front.length - back.length
  if (gap < 0) return undefined
  const groups = [...front, ...Array.from({ length: gap }, () => "0"), ...back].map((g) => parseInt(g, 16))
  if (groups.length !== 8 || !groups.every((g) => g >= 0 && g <= 0xffff)) return undefined
  return Uint8Array.from(groups.flatMap((g) => [g >> 8, g & 0xff]))
}

/**
 * An IP address as 4 or 16 bytes (brackets and an IPv6 zone dropped); IPv4-mapped IPv6
 * (`::ffff:a.b.c.d`) becomes its IPv4 address, the one the socket really reaches.
 */
export const parseAddress = (address: string): Uint8Array | undefined => {
  let bare = address.startsWith("[") && address.endsWith("]") ? address.slice(1, -1) : address
  const zone = bare.indexOf("%")
  if (zone >= 0) bare = bare.slice(0, zone)
  const v4 = parseIPv4Bytes(bare)
  if (v4 !== undefined) return v4
  const v6 = parseIPv6Bytes(bare)
  if (v6 === undefined) return undefined
  return v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff ? v6.slice(12) : v6
}

/** A network: the address bytes and how many leading bits count. */
interface Network {
  readonly bytes: Uint8Array
  readonly prefix: number
}

const inNetwork = (address: Uint8Array, network: Network): boolean => {
  if (address.length !== network.bytes.length) return false
  const whole = network.prefix >> 3
  for (let i = 0; i < whole; i++) if (address[i] !== network.bytes[i]) return false
  const rest = network.prefix & 7
  if (rest === 0) return true
  const mask = (0xff << (8 - rest)) & 0xff
  return ((address[whole] ?? 0) & mask) === ((network.bytes[whole] ?? 0) & mask)
}

const network = (cidr: string): Network => {
  const [address = "", prefix = ""] = cidr.split("/")
  const bytes = parseAddress(address)
  if (bytes === undefined) throw new Error(`bad built-in network ${cidr}`)
  return { bytes, prefix: Number(prefix) }
}

const table = (entries: ReadonlyArray<readonly [string, AddressKind]>) =>
  entries.map(([cidr, kind]) => ({ network: network(cidr), kind }))

// IANA's special-purpose registries (RFC 6890 and later). The first match wins.
const specialV4 = table([
  ["0.0.0.0/8", "unspecified"],
  ["10.0.0.0/8", "private"],
  ["100.64.0.0/10", "sharedCgnat"],
  ["127.0.0.0/8", "loopback"],
  ["169.254.0.0/16", "linkLocal"],
  ["172.16.0.0/12", "private"],
  ["192.0.0.0/24", "reserved"],
  ["192.0.2.0/24", "documentation"],
  ["192.88.99.0/24", "reserved"],
  ["192.168.0.0/16", "private"],
  ["198.18.0.0/15", "benchmarking"],
  ["198.51.100.0/24", "documentation"],
  ["203.0.113.0/24", "documentation"],
  ["224.0.0.0/4", "multicast"],
  ["255.255.255.255/32", "broadcast"],
  ["240.0.0.0/4", "reserved"]
])

const specialV6 = table([
  ["::/128", "unspecified"],
  ["::1/128", "loopback"],
  ["64:ff9b:1::/48", "reserved"],
  ["100::/64", "reserved"],
  ["2001::/23", "reserved"],
  ["2001:db8::/32", "documentation"],
  ["3fff::/20", "documentation"],
  ["fc00::/7", "uniqueLocal"],
  ["fe80::/10", "linkLocal"],
  ["fec0::/10", "private"],
  ["ff00::/8", "multicast"]
])

// IPv6 forms that lead to an IPv4 address, classified as that address: IPv4-translated
// (::ffff:0:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d); 6to4 carries it in bytes 2–5.
const embeddingV6 = [network("::ffff:0:0:0/96"), network("::/96"), network("64:ff9b::/96")]
const sixToFour = network("2002::/16")
const globalUnicast = network("2000::/3")

const classifyBytes = (bytes: Uint8Array): AddressKind => {
  if (bytes.length === 4) return specialV4.find((entry) => inNetwork(bytes, entry.network))?.kind ?? "public"
  const special = specialV6.find((entry) => inNetwork(bytes, entry.network))
  if (special !== undefined) return special.kind
  if (embeddingV6.some((n) => inNetwork(bytes, n))) return classifyBytes(bytes.slice(12))
  if (inNetwork(bytes, sixToFour)) return classifyBytes(bytes.slice(2, 6))
  // Outside 2000::/3 nothing is assigned for ordinary public use.
  return inNetwork(bytes, globalUnicast) ? "public" : "reserved"
}

/** Classifies an IP address (IPv4, or IPv6 with or without brackets and zone); anything else is `invalid`. */
export const classifyAddress = (address: string): AddressKind => {
  const bytes = parseAddress(address)
  return bytes === undefined ? "invalid" : classifyBytes(bytes)
}

/** Whether an IP address is an ordinary public one that any allowed host may resolve to. */
export const isPublicAddress = (address: string): boolean => classifyAddress(address) === "public"

// ---------------------------------------------------------------------------------------------
// The operator's grants

/** An `allowedNetworks` entry that is not a CIDR, an address or a host name. */
export class NetworkGrantError extends Schema.TaggedError<NetworkGrantError>()("NetworkGrantError", {
  grant: Schema.String,
  message: Schema.String
}) {}

/** One decoded grant: a network (an address is a /32 or /128), or a host name. */
export const NetworkGrant = Schema.Union(
  Schema.TaggedStruct("Network", {
    text: Schema.String,
    bytes: Schema.Uint8ArrayFromSelf,
    prefix: Schema.Int
  }),
  Schema.TaggedStruct("Host", { host: Schema.String })
)

/** A decoded grant. */
export type NetworkGrant = typeof NetworkGrant.Type

const HOST_NAME =
  /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/

const USAGE = "give a CIDR such as 192.168.1.0/24 or ::1/128, an address such as 127.0.0.1, or a host name"

// The WHATWG URL parser prints IPv6 in its RFC 5952 form (lower case, longest zero run as "::").
const canonicalIPv6 = (address: string): string => new URL(`http://[${address}]/`).hostname.slice(1, -1)

/** An address as canonical text: IPv4 dotted, IPv6 in RFC 5952 form; `mapped` writes 4 bytes as `::ffff:a.b.c.d`. */
const addressText = (bytes: Uint8Array, mapped: boolean): string => {
  if (bytes.length === 4) {
    const v4 = Array.from(bytes).join(".")
    return mapped ? canonicalIPv6(`::ffff:${v4}`) : v4
  }
  const groups = Array.from({ length: 8 }, (_, i) =>
    (((bytes[2 * i] ?? 0) << 8) | (bytes[2 * i + 1] ?? 0)).toString(16)
  )
  return canonicalIPv6(groups.join(":"))
}

/**
 * The one parser of operator grants, for the registry (canonical text) and the loader (bytes and
 * prefix) alike. Gives the grant with its canonical text, or why `raw` is not one.
 */
const parseGrant = (raw: string): Either.Either<NetworkGrant, string> => {
  const text = raw.trim()
  if (text.length === 0) return Either.left(`it is empty; ${USAGE}`)
  if (/\s/.test(text)) return Either.left(`it contains white space; ${USAGE}`)
  if (text.includes("://"))
    return Either.left("it is a URL; give only the host or network, without scheme or path")
  const slash = text.indexOf("/")
  const head = slash >= 0 ? text.slice(0, slash) : text
  const address = head.startsWith("[") && head.endsWith("]") ? head.slice(1, -1) : head
  if (slash >= 0 || isIP(address) !== 0) {
    const bytes = address.includes("%") ? undefined : parseAddress(address)
    if (bytes === undefined || isIP(address) === 0) {
      return Either.left(`${JSON.stringify(address)} is not an IP address; ${USAGE}`)
    }
    const bits = bytes.length * 8
    // An IPv4-mapped address was shortened to IPv4: its prefix counts from the IPv4 part.
    const mapped = isIP(address) === 6 && bytes.length === 4
    const shift = mapped ? 96 : 0
    const prefixText = slash >= 0 ? text.slice(slash + 1) : String(bits + shift)
    if (!/^\d{1,3}$/.test(prefixText)) {
      return Either.left(`the prefix length ${JSON.stringify(prefixText)} is not a number; ${USAGE}`)
    }
    const prefix = Number(prefixText) - shift
    if (prefix < 0 || prefix > bits) {
      return Either.left(
        `the prefix length must be ${shift}–${bits + shift} for ${bits === 32 ? "an IPv4" : "an IPv6"} network; ${USAGE}`
      )
    }
    const masked = Uint8Array.from(bytes, (b, i) => {
      const keep = Math.max(0, Math.min(8, prefix - i * 8))
      return b & ((0xff << (8 - keep)) & 0xff)
    })
    // Most likely a typo for a narrower grant (192.168.1.7/24 meant as /32): name the block instead.
    if (masked.some((b, i) => b !== bytes[i])) {
      return Either.left(
        `it has bits set after the first ${prefix + shift}; write the network address instead: ` +
          `the block is ${addressText(masked, mapped)}/${prefix + shift}`
      )
    }
    const canonical = addressText(bytes, mapped)
    return Either.right({
      _tag: "Network",
      text: slash >= 0 ? `${canonical}/${prefixText}` : canonical,
      bytes,
      prefix
    })
  }
  if (/:\d*$/.test(text))
    return Either.left("it has a port; a grant covers every port, so give the host alone")
  if (text.includes("*")) {
    return Either.left(`wildcards are not allowed in a grant; grant a network as a CIDR instead (${USAGE})`)
  }
  const host = normaliseEntry(text)
  if (!HOST_NAME.test(host) || /[/:@?#]/.test(text)) {
    return Either.left(`it is not a CIDR, an address or a host name; ${USAGE}`)
  }
  if (/^[0-9.]+$/.test(host)) {
    return Either.left(`it looks like an IPv4 address but is not a valid one; ${USAGE}`)
  }
  return Either.right({ _tag: "Host", host })
}

/** Why `entry` is not a grant, worded as every caller reports it. */
const grantMessage = (entry: string, why: string): string =>
  `allowed network ${JSON.stringify(entry)} is not valid: ${why}`

/** A grant as the operator writes it (`192.168.1.0/24`, `::1/128`, `127.0.0.1`, `nas.home.arpa`). */
export const NetworkGrantFromString = Schema.transformOrFail(Schema.String, NetworkGrant, {
  strict: true,
  decode: (text, _, ast) =>
    Either.match(parseGrant(text), {
      onLeft: (message) => ParseResult.fail(new ParseResult.Type(ast, text, message)),
      onRight: ParseResult.succeed
    }),
  encode: (grant) => ParseResult.succeed(grant._tag === "Host" ? grant.host : grant.text)
})

/** Decodes the operator's `allowedNetworks`; the first bad entry fails with a message naming it. */
export const decodeGrants: (
  entries: ReadonlyArray<string>
) => Effect.Effect<ReadonlyArray<NetworkGrant>, NetworkGrantError> = Effect.fn("NetworkPolicy.decodeGrants")(
  function* (entries: ReadonlyArray<string>) {
    return yield* Effect.forEach(entries, (entry) =>
      Schema.decode(NetworkGrantFromString)(entry).pipe(
        Effect.mapError((error) => {
          const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
          return new NetworkGrantError({
            grant: entry,
            message: grantMessage(entry, issue?.message ?? error.message)
          })
        })
      )
    )
  }
)

/**
 * One grant as the registry keeps it: decodes to its canonical text (host names in lower-case
 * ASCII, IPv6 in RFC 5952 form, a bare address stays bare), so equal grants compare equal.
 */
export const CanonicalNetworkGrant = Schema.transform(NetworkGrantFromString, Schema.String, {
  strict: true,
  decode: (grant) => (grant._tag === "Host" ? grant.host : grant.text),
  encode: (text) => ({ _tag: "Host" as const, host: text })
}).annotations({ identifier: "CanonicalNetworkGrant" })

/**
 * Canonical grants for the registry: duplicates dropped, in the order given; or the message of the
 * first entry that is not a grant.
 */
export const decodeNetworkGrants = (
  entries: ReadonlyArray<string>
): Either.Either<ReadonlyArray<string>, string> => {
  const out: Array<string> = []
  for (const entry of entries) {
    const parsed = parseGrant(entry)
    if (Either.isLeft(parsed)) return Either.left(grantMessage(entry, parsed.left))
    const canonical = parsed.right._tag === "Host" ? parsed.right.host : parsed.right.text
    if (!out.includes(canonical)) out.push(canonical)
  }
  return Either.right(out)
}

// ---------------------------------------------------------------------------------------------
// The policy of one plugin for one service

/** Which service a policy is for; it names the manifest list in messages. */
export type Permission = "http" | "websocket"

/** A plugin's rules for one service: the manifest's hosts and the operator's grants. */
export interface NetworkPolicy {
  readonly permission: Permission
  /** `requiredHosts`, normalised. */
  readonly patterns: ReadonlyArray<string>
  readonly grantedHosts: ReadonlySet<string>
  readonly grantedNetworks: ReadonlyArray<Network>
  /** With an empty `requiredHosts`: `true` allows every host (addresses still checked), `false` none. */
  readonly emptyAllowsAny: boolean
}

/** The policy for a plugin's manifest list and the operator's grants. */
export const make = (options: {
  readonly permission: Permission
  readonly requiredHosts: ReadonlyArray<string>
  readonly grants?: ReadonlyArray<NetworkGrant> | undefined
  readonly emptyAllowsAny?: boolean | undefined
}): NetworkPolicy => {
  const grants = options.grants ?? []
  return {
    permission: options.permission,
    patterns: options.requiredHosts.map(normaliseEntry).filter((entry) => entry.length > 0),
    grantedHosts: new Set(grants.flatMap((g) => (g._tag === "Host" ? [g.host] : []))),
    grantedNetworks: grants.flatMap((g) =>
      g._tag === "Network" ? [{ bytes: g.bytes, prefix: g.prefix }] : []
    ),
    emptyAllowsAny: options.emptyAllowsAny ?? false
  }
}

/** Whether the manifest's list admits a URL hostname (the port is not part of the match). */
export const isHostListed = (policy: NetworkPolicy, hostname: string): boolean => {
  const host = normaliseHostname(hostname)
  return host.length > 0 && policy.patterns.some((pattern) => globMatch(pattern, host))
}

/**
 * Whether `host` may connect to `address`: public addresses always, others only inside a granted
 * network or for a granted host name. Returns the refused kind, or `undefined` when allowed.
 */
export const refusedKind = (
  policy: NetworkPolicy,
  host: string,
  address: string
): AddressKind | undefined => {
  const bytes = parseAddress(address)
  if (bytes === undefined) return "invalid"
  const kind = classifyBytes(bytes)
  if (kind === "public") return undefined
  if (policy.grantedHosts.has(normaliseHostname(host))) return undefined
  return policy.grantedNetworks.some((n) => inNetwork(bytes, n)) ? undefined : kind
}

const label = (policy: NetworkPolicy, host: string) =>
  `${policy.permission === "websocket" ? "websocket host" : "host"} ${JSON.stringify(host)}`

/** The grant that would admit a literal address: the address itself as a /32 or /128. */
const literalGrant = (address: string) => {
  const bytes = parseAddress(address)
  return bytes === undefined ? address : `${address}/${isIP(address) === 6 ? 128 : 32}`
}

/** Why a literal address or a name's resolution was refused. Never contains a resolved address. */
export const addressRefusal = (policy: NetworkPolicy, host: string, kind: AddressKind): string =>
  isIP(host) !== 0
    ? `${label(policy, host)} is a ${describeKind(kind)} address; plugins may not reach private networks ` +
      `unless the operator grants it with --allow-network ${literalGrant(host)}`
    : `${label(policy, host)} resolves to a private/loopback address; plugins may not reach private networks ` +
      `unless the operator grants it with --allow-network ${host}`

/**
 * Checks a URL hostname before anything touches the network: the manifest's list, and for an IP
 * literal (Node connects to those without calling `lookup`) the address. Gives the normalised host,
 * or the refusal message.
 */
export const checkHost = (policy: NetworkPolicy, hostname: string): Either.Either<string, string> => {
  const host = normaliseHostname(hostname)
  const list = `${policy.permission}.requiredHosts`
  if (policy.patterns.length === 0) {
    if (!policy.emptyAllowsAny || host.length === 0) {
      return Either.left(`${label(policy, host)} is not allowed: the plugin's manifest lists no ${list}`)
    }
  } else if (!isHostListed(policy, host)) {
    return Either.left(`${label(policy, host)} is not allowed: it matches none of the plugin's ${list}`)
  }
  if (isIP(host) !== 0) {
    const kind = refusedKind(policy, host, host)
    if (kind !== undefined) return Either.left(addressRefusal(policy, host, kind))
  }
  return Either.right(host)
}

/**
 * A resolution refused by the policy, as the socket's `lookup` reports it. `message` is safe to show
 * the plugin; `address` and `kind` are for the operator's log only.
 */
export class AddressRefused extends Error {
  constructor(
    message: string,
    readonly address: string,
    readonly kind: AddressKind
  ) {
    super(message)
    this.name = "AddressRefused"
  }
}

/**
 * A `lookup` for node:http and ws that resolves every address of `host` and refuses the connection
 * when any of them is not allowed. It runs right before the socket connects, so a second DNS
 * answer cannot slip a private address past the check (no rebinding between check and connect).
 */
export const guardedLookup =
  (policy: NetworkPolicy, host: string, resolve: LookupFunction): LookupFunction =>
  (hostname: string, options: LookupOptions, callback) => {
    resolve(hostname, { ...options, all: true }, (error, found) => {
      if (error !== null) return callback(error, "")
      const addresses: Array<LookupAddress> =
        typeof found === "string" ? [{ address: found, family: isIP(found) }] : [...found]
      const [first] = addresses
      if (first === undefined) {
        return callback(
          Object.assign(new Error(`no address found for ${hostname}`), { code: "ENOTFOUND" }),
          ""
        )
      }
      for (const { address } of addresses) {
        const kind = refusedKind(policy, host, address)
        if (kind !== undefined) {
          return callback(new AddressRefused(addressRefusal(policy, host, kind), address, kind), "")
        }
      }
      if (options.all === true) callback(null, addresses)
      else callback(null, first.address, first.family)
    })
  }

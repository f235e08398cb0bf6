/**
 * Where a plugin may send HTTP requests: the manifest's host patterns (`http.requiredHosts`,
 * globs where `*` crosses dots, case-insensitive, port ignored) and the classification of IP
 * addresses that are refused after DNS resolution unless a host is listed exactly.
 */
import type { LookupAddress, LookupOptions } from "node:dns"
import { isIP, type LookupFunction } from "node:net"

/** A manifest's `requiredHosts`, normalised for matching. */
export interface HostAllowList {
  /** Every entry, globs included. */
  readonly patterns: ReadonlyArray<string>
  /** The entries without `*`: these hosts may resolve to private addresses. */
  readonly exact: ReadonlySet<string>
}

/** A URL hostname as compared: lower case, without IPv6 brackets or a trailing dot. */
export const normaliseHostname = (hostname: string): string => {
  let host = hostname.trim().toLowerCase()
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1)
  if (host.endsWith(".")) host = host.slice(0, -1)
  return host
}

/**
 * One manifest entry in the form URL hostnames take: run through the WHATWG host parser, so
 * `127.1`, `[0:0::1]`, `Bücher.de` and `localhost:8080` compare equal to what a request URL gives.
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

/** Parses a `requiredHosts` list. */
export const parseAllowList = (entries: ReadonlyArray<string>): HostAllowList => {
  const patterns = entries.map(normaliseEntry).filter((entry) => entry.length > 0)
  return { patterns, exact: new Set(patterns.filter((entry) => !entry.includes("*"))) }
}

/** Whether `text` matches `pattern`, where `*` stands for any run of characters (dots included). */
export const globMatch = (pattern: string, text: string): boolean => {
  // Linear-time wildcard matching: backtrack only to the most recent star.
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
      star = p++
      resume = t
    } else if (star >= 0) {
      p = star + 1
      t = ++resume
    } else {
      return false
    }
  }
  while (p < pattern.length && pattern.charCodeAt(p) === STAR) p++
  return p === pattern.length
}

const STAR = 0x2a

/** Whether a URL hostname matches any entry of the list (the port is not part of the match). */
export const matchesAllowList = (list: HostAllowList, hostname: string): boolean => {
  const host = normaliseHostname(hostname)
  return list.patterns.some((pattern) => globMatch(pattern, host))
}

/** Whether the list names this hostname exactly (not through a glob). */
export const isListedExactly = (list: HostAllowList, hostname: string): boolean =>
  list.exact.has(normaliseHostname(hostname))

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
  reserved: "reserved",
  invalid: "invalid"
}

/** A short human name of an address kind, for error messages. */
export const describeKind = (kind: AddressKind): string => kindNames[kind]

const parseIPv4 = (text: string): ReadonlyArray<number> | undefined => {
  if (isIP(text) !== 4) return undefined
  return text.split(".").map(Number)
}

const classifyIPv4 = ([a = 0, b = 0]: ReadonlyArray<number>): AddressKind => {
  if (a === 0) return "unspecified"
  if (a === 127) return "loopback"
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return "private"
  if (a === 169 && b === 254) return "linkLocal"
  if (a === 100 && b >= 64 && b <= 127) return "sharedCgnat"
  if (a >= 224 && a <= 239) return "multicast"
  if (a >= 240) return "reserved"
  return "public"
}

/** The eight 16-bit groups of an IPv6 address (zone dropped, embedded IPv4 expanded). */
const parseIPv6 = (text: string): ReadonlyArray<number> | undefined => {
  const zone = text.indexOf("%")
  let address = zone >= 0 ? text.slice(0, zone) : text
  if (isIP(address) !== 6) return undefined
  const lastColon = address.lastIndexOf(":")
  const tail = address.slice(lastColon + 1)
  if (tail.includes(".")) {
    const [a = 0, b = 0, c = 0, d = 0] = parseIPv4(tail) ?? []
    address = `${address.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = "", rest] = address.split("::")
  const front = head.length > 0 ? head.split(":") : []
  const back = rest === undefined || rest.length === 0 ? [] : rest.split(":")
  const gap = rest === undefined ? 0 : 8 - front.length - back.length
  if (gap < 0) return undefined
  const groups = [...front, ...Array.from({ length: gap }, () => "0"), ...back].map((g) => parseInt(g, 16))
  return groups.length === 8 && groups.every((g) => g >= 0 && g <= 0xffff) ? groups : undefined
}

const classifyIPv6 = (g: ReadonlyArray<number>): AddressKind => {
  const [g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0] = g
  const embedded = (): AddressKind => classifyIPv4([g6 >> 8, g6 & 0xff, g7 >> 8, g7 & 0xff])
  const zeroTo = (n: number) => g.slice(0, n).every((x) => x === 0)
  if (zeroTo(8)) return "unspecified"
  if (zeroTo(7) && g7 === 1) return "loopback"
  // IPv4-mapped (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d), IPv4-compatible
  // (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) addresses lead to the embedded IPv4 address.
  if (zeroTo(5) && g5 === 0xffff) return embedded()
  if (zeroTo(4) && g4 === 0xffff && g5 === 0) return embedded()
  if (zeroTo(6)) return embedded()
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return embedded()
  if ((g0 & 0xffc0) === 0xfe80) return "linkLocal"
  if ((g0 & 0xffc0) === 0xfec0) return "private" // deprecated site-local
  if ((g0 & 0xfe00) === 0xfc00) return "uniqueLocal"
  if ((g0 & 0xff00) === 0xff00) return "multicast"
  return "public"
}

/** Classifies an IP address (IPv4, or IPv6 with or without brackets and zone); anything else is `invalid`. */
export const classifyAddress = (address: string): AddressKind => {
  const bare = address.startsWith("[") && address.endsWith("]") ? address.slice(1, -1) : address
  const v4 = parseIPv4(bare)
  if (v4 !== undefined) return classifyIPv4(v4)
  const v6 = parseIPv6(bare)
  return v6 === undefined ? "invalid" : classifyIPv6(v6)
}

/** Whether an IP address is an ordinary public one that any allowed host may resolve to. */
export const isPublicAddress = (address: string): boolean => classifyAddress(address) === "public"

/**
 * A `lookup` for node:http and ws that resolves every address of the host and, unless the host may
 * reach private addresses, refuses the connection when any of them is not public. It runs right
 * before the socket connects, so a second DNS answer cannot slip a private address past the check.
 */
export const guardedLookup =
  (
    resolve: LookupFunction,
    mayReachPrivate: boolean,
    refuse: (address: string, kind: AddressKind) => Error
  ): LookupFunction =>
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
      if (!mayReachPrivate) {
        for (const { address } of addresses) {
          const kind = classifyAddress(address)
          if (kind !== "public") return callback(refuse(address, kind), "")
        }
      }
      if (options.all === true) callback(null, addresses)
      else callback(null, first.address, first.family)
    })
  }

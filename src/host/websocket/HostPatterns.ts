/**
 * Which hosts a plugin may open WebSockets to: the manifest's `websocket.requiredHosts`, where an
 * entry is an exact host, `*.suffix` (any subdomain at any depth, but not the bare suffix) or `*`.
 * Matching is case-insensitive and ignores the port. Only hosts listed exactly may resolve to
 * private, loopback, link-local or unique-local addresses.
 */
import { normaliseEntry, normaliseHostname } from "../http/HostPolicy.js"

/** A manifest's `websocket.requiredHosts`, normalised for matching. */
export interface HostPatterns {
  readonly patterns: ReadonlyArray<string>
  /** The entries without a wildcard: these hosts may resolve to private addresses. */
  readonly exact: ReadonlySet<string>
}

/** Parses a `requiredHosts` list (entries may carry a port or a scheme; both are dropped). */
export const parseHostPatterns = (entries: ReadonlyArray<string>): HostPatterns => {
  const patterns = entries.map(normaliseEntry).filter((entry) => entry.length > 0)
  return { patterns, exact: new Set(patterns.filter((entry) => !entry.includes("*"))) }
}

/** Whether one normalised pattern admits a normalised host. */
export const matchesPattern = (pattern: string, host: string): boolean => {
  if (pattern === "*") return true
  if (pattern.startsWith("*.")) {
    const suffix = pattern.slice(1)
    return host.length > suffix.length && host.endsWith(suffix)
  }
  return pattern === host
}

/** Whether a URL hostname is allowed by the patterns. */
export const isHostAllowed = (hosts: HostPatterns, hostname: string): boolean => {
  const host = normaliseHostname(hostname)
  return host.length > 0 && hosts.patterns.some((pattern) => matchesPattern(pattern, host))
}

/** Whether the patterns name this hostname exactly (not through a wildcard). */
export const isListedExactly = (hosts: HostPatterns, hostname: string): boolean =>
  hosts.exact.has(normaliseHostname(hostname))

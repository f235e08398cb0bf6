/** The HTTP host service (being written: provides nothing yet, so http imports fail to link). */
import * as Effect from "effect/Effect"
import type { HostServiceProvider } from "../HostFunctions.js"

/** Settings of the HTTP host service. */
export interface HttpOptions {
  /** Default per-request timeout. */
  readonly timeoutMs: number
  /** Response bodies are cut off beyond this many bytes. */
  readonly maxResponseBytes: number
  /** How many redirects are followed at most. */
  readonly maxRedirects: number
}

export const defaultHttpOptions: HttpOptions = {
  timeoutMs: 10_000,
  maxResponseBytes: 16 * 1024 * 1024,
  maxRedirects: 10
}

export const provider = (_options: HttpOptions): HostServiceProvider => ({
  grant: "http",
  functions: [],
  make: () => Effect.succeed({})
})

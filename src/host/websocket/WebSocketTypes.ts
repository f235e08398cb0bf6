/**
 * The WebSocket service's socket-level settings and inbound figures, apart from the socket
 * machinery (`WebSocketConnection.ts`): these are part of the public API, and keeping them here
 * keeps `ws`'s types out of the package's declarations (consumers need no `@types/ws`).
 */
import type { LookupFunction } from "node:net"
import type { InboundRateOptions } from "./InboundRate.js"

/** The socket-level settings (a part of `WebSocketOptions`). */
export interface ConnectionOptions extends InboundRateOptions {
  /** How long the opening handshake may take. */
  readonly handshakeTimeoutMs: number
  /** How long a send may wait for the socket to take the data. */
  readonly sendTimeoutMs: number
  /** How long closing a connection on unload may take, on_close callback included. */
  readonly closeTimeoutMs: number
  /**
   * The largest message (all its frames together) accepted from a server; a larger one closes the
   * connection with 1009. It reaches the plugin as its call input.
   */
  readonly maxPayloadBytes: number
  /** Received bytes one connection may hold for the plugin before its socket stops reading. */
  readonly maxBufferedBytesPerConnection: number
  /** Received bytes all of a plugin's connections may hold before they all stop reading. */
  readonly maxBufferedBytesPerPlugin: number
  /** The largest handshake response head (status line and headers) accepted from a server. */
  readonly maxHeaderBytes: number
  /** DNS resolution; every address it returns is checked before the socket connects. */
  readonly lookup: LookupFunction
}

/** One plugin's inbound WebSocket figures, kept up to date as data arrives and is delivered. */
export interface InboundFigures {
  /** Bytes received from servers and not yet delivered to the plugin, over all its connections. */
  buffered: number
  /** The most `buffered` has ever been. */
  peak: number
  /** The most one connection has ever held. */
  connectionPeak: number
  /** Connections whose socket is paused right now. */
  paused: number
  /** How many times a socket was paused. */
  pauses: number
  /** Messages that waited for the plugin's delivery rate (`inboundMessagesPerSecond`, `inboundBytesPerSecond`). */
  throttled: number
}

/** Figures of a plugin that has received nothing yet. */
export const noInbound = (): InboundFigures => ({
  buffered: 0,
  peak: 0,
  connectionPeak: 0,
  paused: 0,
  pauses: 0,
  throttled: 0
})

/** Where the service publishes each plugin's inbound figures, by plugin ID (the latest load wins). */
export class InboundMeter {
  readonly #plugins = new Map<string, InboundFigures>()
  /** The figures of a plugin (all zero before it connects anywhere). */
  of(pluginId: string): InboundFigures {
    return this.#plugins.get(pluginId) ?? noInbound()
  }
  /** Registers the live figures of a plugin's service. */
  track(pluginId: string, figures: InboundFigures): void {
    this.#plugins.set(pluginId, figures)
  }
}

/** Where a connection goes: the checked URL and the host name its lookup is guarded for. */
export interface Target {
  readonly url: URL
  readonly host: string
}

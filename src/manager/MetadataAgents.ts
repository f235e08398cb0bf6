/**
 * Metadata lookups across agents in the configured order (`Agents = "lastfm,spotify,my-plugin"`):
 * plugin IDs (loaded plugins with the MetadataAgent capability, called through the manager so reloads
 * drain) and agents the embedding server registers under a name. The first answer (`Some`) wins.
 *
 * Lookups never fail: an agent's error is logged at warn and the next agent is asked, because
 * another agent may well answer. An agent that times out several times in a row is backed off
 * (skipped) for a while instead of being hammered.
 */
import * as Context from "effect/Context"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as MetadataAgent from "../capabilities/MetadataAgent.js"
import type { LoadedPlugin } from "../loader/PluginLoader.js"
import { PluginManager } from "./PluginManager.js"

/** The lookup methods of an agent. */
export type MethodName = Exclude<keyof MetadataAgent.MetadataAgent, "pluginId">

/** The request of a lookup method. */
export type RequestOf<K extends MethodName> = Parameters<MetadataAgent.MetadataAgent[K]>[0]

/** What a lookup method finds. */
export type ValueOf<K extends MethodName> =
  Effect.Effect.Success<ReturnType<MetadataAgent.MetadataAgent[K]>> extends Option.Option<infer A> ? A : never

/** An answer and the agent that gave it. */
export interface Answer<A> {
  readonly agent: string
  readonly value: A
}

/** When an agent that keeps timing out is skipped. */
export interface BackoffOptions {
  /** Consecutive timeouts that start a backoff. */
  readonly afterTimeouts: number
  /** The first backoff; each further one (a timeout right after a backoff) doubles it. */
  readonly initial: Duration.DurationInput
  readonly max: Duration.DurationInput
}

export const defaultBackoff: BackoffOptions = { afterTimeouts: 3, initial: "1 minute", max: "10 minutes" }

export interface MetadataAgentsOptions {
  /** Agent names in the order they are asked: plugin IDs and names registered by the server. */
  readonly agents: ReadonlyArray<string>
  /** Agents provided by the embedding server, by name (they take precedence over a plugin of that ID). */
  readonly named?: Readonly<Record<string, MetadataAgent.MetadataAgent>>
  readonly backoff?: Partial<BackoffOptions>
}

/** Agent names from a comma-separated setting such as `"lastfm, spotify,my-plugin"`. */
export const parseAgents = (setting: string): ReadonlyArray<string> =>
  setting
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "")

type Lookups = {
  readonly [K in MethodName]: (request: RequestOf<K>) => Effect.Effect<Option.Option<ValueOf<K>>>
}

export class MetadataAgents extends Context.Tag("ndp-engine/MetadataAgents")<
  MetadataAgents,
  Lookups & {
    /** Asks the agents in order; the first answer and the name of the agent that gave it. */
    readonly ask: <K extends MethodName>(
      method: K,
      request: RequestOf<K>
    ) => Effect.Effect<Option.Option<Answer<ValueOf<K>>>>
    /** Registers (or replaces) a server agent; it is asked only if its name is in `agents`. */
    readonly register: (name: string, agent: MetadataAgent.MetadataAgent) => Effect.Effect<void>
    readonly unregister: (name: string) => Effect.Effect<void>
    /** The configured order. */
    readonly agents: ReadonlyArray<string>
  }
>() {}

interface Health {
  /** The agent (or plugin version) this applies to: a reload starts afresh. */
  readonly owner: object
  timeouts: number
  nextBackoffMs: number
  skipUntil: number
}

const make = (options: MetadataAgentsOptions) =>
  Effect.gen(function* () {
    const manager = yield* PluginManager
    const backoff = { ...defaultBackoff, ...options.backoff }
    const initialMs = Duration.toMillis(backoff.initial)
    const maxMs = Duration.toMillis(backoff.max)
    const named = new Map(Object.entries(options.named ?? {}))
    const health = new Map<string, Health>()
    const clients = new WeakMap<LoadedPlugin, MetadataAgent.MetadataAgent>()

    const clientOf = (plugin: LoadedPlugin) => {
      let client = clients.get(plugin)
      if (client === undefined) {
        client = MetadataAgent.fromPlugin(plugin)
        clients.set(plugin, client)
      }
      return client
    }

    /** Runs one agent's lookup, keeping its timeout streak; every failure becomes a logged miss. */
    const guarded = <A>(
      name: string,
      owner: object,
      method: MethodName,
      lookup: Effect.Effect<Option.Option<A>, MetadataAgent.MetadataAgentError>
    ) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        let state = health.get(name)
        if (state !== undefined && state.owner !== owner) {
          health.delete(name)
          state = undefined
        }
        if (state !== undefined && now < state.skipUntil) return Option.none<A>()
        const result = yield* Effect.either(lookup)
        if (result._tag === "Right") {
          health.delete(name)
          return result.right
        }
        const error = result.left
        if (error._tag !== "PluginTimeoutError") {
          health.delete(name)
          yield* Effect.logWarning(`metadata agent ${name} failed in ${method}: ${error.message}`)
          return Option.none<A>()
        }
        const current = state ?? { owner, timeouts: 0, nextBackoffMs: initialMs, skipUntil: 0 }
        health.set(name, current)
        current.timeouts++
        if (current.timeouts < backoff.afterTimeouts) {
          yield* Effect.logWarning(`metadata agent ${name} timed out in ${method}: ${error.message}`)
          return Option.none<A>()
        }
        // The streak is kept, so a timeout right after the backoff starts the next, longer one.
        const after = yield* Clock.currentTimeMillis
        current.skipUntil = after + current.nextBackoffMs
        yield* Effect.logWarning(
          `metadata agent ${name} timed out ${current.timeouts} times in a row; skipping it for ${Duration.format(current.nextBackoffMs)}`
        )
        current.nextBackoffMs = Math.min(current.nextBackoffMs * 2, maxMs)
        return Option.none<A>()
      }).pipe(
        Effect.catchAllDefect((defect) =>
          Effect.as(Effect.logError(`metadata agent ${name} crashed in ${method}`, defect), Option.none<A>())
        ),
        Effect.annotateLogs("agent", name)
      )

    const askOne = <K extends MethodName>(
      name: string,
      method: K,
      request: RequestOf<K>
    ): Effect.Effect<Option.Option<ValueOf<K>>> => {
      const call = (agent: MetadataAgent.MetadataAgent) =>
        (
          agent[method] as (
            request: RequestOf<K>
          ) => Effect.Effect<Option.Option<ValueOf<K>>, MetadataAgent.MetadataAgentError>
        )(request)
      const server = named.get(name)
      if (server !== undefined) return guarded(name, server, method, call(server))
      return manager
        .use(name, (plugin) =>
          plugin.capabilities.includes("MetadataAgent")
            ? guarded(name, plugin, method, call(clientOf(plugin)))
            : Effect.succeed(Option.none<ValueOf<K>>())
        )
        .pipe(Effect.orElseSucceed(() => Option.none<ValueOf<K>>()))
    }

    const ask = <K extends MethodName>(
      method: K,
      request: RequestOf<K>
    ): Effect.Effect<Option.Option<Answer<ValueOf<K>>>> =>
      Effect.gen(function* () {
        for (const agent of options.agents) {
          const found = yield* askOne(agent, method, request)
          if (Option.isSome(found)) return Option.some({ agent, value: found.value })
        }
        return Option.none()
      }).pipe(
        Effect.withSpan(`MetadataAgents.${method}`, { attributes: { agents: options.agents.join(",") } })
      )

    const lookup =
      <K extends MethodName>(method: K) =>
      (request: RequestOf<K>) =>
        Effect.map(
          ask(method, request),
          Option.map((answer) => answer.value)
        )

    return MetadataAgents.of({
      ask,
      register: (name, agent) => Effect.sync(() => void named.set(name, agent)),
      unregister: (name) => Effect.sync(() => void named.delete(name)),
      agents: options.agents,
      getArtistMBID: lookup("getArtistMBID"),
      getArtistURL: lookup("getArtistURL"),
      getArtistBiography: lookup("getArtistBiography"),
      getSimilarArtists: lookup("getSimilarArtists"),
      getArtistImages: lookup("getArtistImages"),
      getArtistTopSongs: lookup("getArtistTopSongs"),
      getAlbumInfo: lookup("getAlbumInfo"),
      getAlbumImages: lookup("getAlbumImages"),
      getSimilarSongsByTrack: lookup("getSimilarSongsByTrack"),
      getSimilarSongsByAlbum: lookup("getSimilarSongsByAlbum"),
      getSimilarSongsByArtist: lookup("getSimilarSongsByArtist")
    })
  })

/** Metadata lookups over the manager's plugins and the server's own agents. */
export const layer = (options: MetadataAgentsOptions): Layer.Layer<MetadataAgents, never, PluginManager> =>
  Layer.effect(MetadataAgents, make(options))

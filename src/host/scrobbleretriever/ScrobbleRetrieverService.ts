/**
 * The ScrobbleRetriever host service (`scrobbleRetriever`, which requires `users`): a user's
 * scrobble history from the server's `ScrobbleHistory`. Only users the administrator allowed for the
 * plugin; an unknown user and a user not allowed get the same error, so a plugin cannot probe which
 * accounts exist. `getscrobbles` returns at most `maxItems` (1–5000, default 5000) per page and a
 * `next` cursor that visits every scrobble once.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { type HostFunctionHandler, hostFunction } from "../HostCodec.js"
import { define, type HostServiceProvider, isAllowed, type PluginContext } from "../HostProvider.js"
import { getScrobbles, ScrobbleHistory } from "../../server/ScrobbleHistory.js"
import { ScrobbleRetrieverError } from "./ScrobbleRetrieverError.js"

/** The functions of the ScrobbleRetriever service and the permission they need. */
export const definition = define({
  grant: "scrobbleRetriever",
  functions: [
    "scrobbleretriever_getfirsttimestamp",
    "scrobbleretriever_getlasttimestamp",
    "scrobbleretriever_getscrobbles",
    "scrobbleretriever_getscrobblecount"
  ]
})

/** The most scrobbles one `getscrobbles` page returns (and the default). */
export const maxItemsLimit = 5000

const Timestamp = Schema.optionalWith(Schema.Number.pipe(Schema.int()), { nullable: true })

const CountOptions = Schema.Struct({ fromTimestamp: Timestamp, toTimestamp: Timestamp })

const PageOptions = Schema.Struct({
  fromTimestamp: Timestamp,
  toTimestamp: Timestamp,
  descending: Schema.optionalWith(Schema.Boolean, { nullable: true, default: () => false }),
  maxItems: Schema.optionalWith(Schema.Number.pipe(Schema.int()), { nullable: true, default: () => 0 }),
  offset: Schema.optionalWith(Schema.Number.pipe(Schema.int(), Schema.nonNegative()), {
    nullable: true,
    default: () => 0
  })
})

const UserRequest = Schema.Struct({ username: Schema.String })
const PageRequest = Schema.Struct({
  username: Schema.String,
  options: Schema.optionalWith(PageOptions, { nullable: true, default: () => PageOptions.make({}) })
})
const CountRequest = Schema.Struct({
  username: Schema.String,
  options: Schema.optionalWith(CountOptions, { nullable: true, default: () => ({}) })
})

/** The ScrobbleRetriever functions for one plugin over the server's scrobble history. */
export const functions = (
  history: ScrobbleHistory["Type"],
  context: PluginContext
): Record<(typeof definition.functions)[number], HostFunctionHandler> => {
  const user = (username: string) =>
    Effect.flatMap(
      isAllowed(context.users, username) ? history.hasUser(username) : Effect.succeed(false),
      (known) =>
        known
          ? Effect.succeed(username)
          : Effect.fail(
              new ScrobbleRetrieverError({
                reason: "UserNotAvailable",
                message: `user ${JSON.stringify(username)} is not available to this plugin: the administrator must allow them`
              })
            )
    )
  const timestamp = (found: Option.Option<number>) =>
    Option.match(found, { onNone: () => ({}), onSome: (result) => ({ result }) })
  return {
    scrobbleretriever_getfirsttimestamp: hostFunction(
      "scrobbleretriever_getfirsttimestamp",
      UserRequest,
      (r) => user(r.username).pipe(Effect.flatMap(history.firstTimestamp), Effect.map(timestamp))
    ),
    scrobbleretriever_getlasttimestamp: hostFunction("scrobbleretriever_getlasttimestamp", UserRequest, (r) =>
      user(r.username).pipe(Effect.flatMap(history.lastTimestamp), Effect.map(timestamp))
    ),
    scrobbleretriever_getscrobbles: hostFunction("scrobbleretriever_getscrobbles", PageRequest, (r) =>
      Effect.gen(function* () {
        const username = yield* user(r.username)
        const o = r.options
        // Go's zero value means "not given": the default, which is also the most allowed.
        const maxItems = o.maxItems <= 0 ? maxItemsLimit : Math.min(o.maxItems, maxItemsLimit)
        const page = yield* getScrobbles(history, username, {
          fromTimestamp: o.fromTimestamp,
          toTimestamp: o.toTimestamp,
          descending: o.descending,
          maxItems,
          offset: o.offset
        })
        return {
          ...(page.scrobbles.length === 0 ? {} : { scrobbles: page.scrobbles }),
          ...Option.match(page.next, {
            onNone: () => ({}),
            onSome: (next) => ({
              next: {
                ...(next.fromTimestamp === undefined ? {} : { fromTimestamp: next.fromTimestamp }),
                ...(next.toTimestamp === undefined ? {} : { toTimestamp: next.toTimestamp }),
                descending: next.descending,
                maxItems: next.maxItems,
                ...(next.offset ? { offset: next.offset } : {})
              }
            })
          })
        }
      })
    ),
    scrobbleretriever_getscrobblecount: hostFunction(
      "scrobbleretriever_getscrobblecount",
      CountRequest,
      (r) =>
        user(r.username).pipe(
          Effect.flatMap((username) => history.count(username, r.options)),
          Effect.map((result) => (result === 0 ? {} : { result }))
        )
    )
  }
}

/** The service over the server's scrobble history. */
export const provider = (history: ScrobbleHistory["Type"]): HostServiceProvider => ({
  ...definition,
  make: (context) => Effect.succeed(functions(history, context))
})

/** The ScrobbleRetriever host service; it reads the embedding server's `ScrobbleHistory`. */
export class ScrobbleRetrieverService extends Context.Tag("ndp-engine/host/ScrobbleRetrieverService")<
  ScrobbleRetrieverService,
  HostServiceProvider
>() {}

/** The ScrobbleRetriever service over the server's `ScrobbleHistory`, taken once. */
export const make: Effect.Effect<HostServiceProvider, never, ScrobbleHistory> = Effect.map(
  ScrobbleHistory,
  provider
).pipe(Effect.withSpan("ScrobbleRetrieverService.make"))

/** The ScrobbleRetriever service as a layer. */
export const layer: Layer.Layer<ScrobbleRetrieverService, never, ScrobbleHistory> = Layer.effect(
  ScrobbleRetrieverService,
  make
)

/**
 * The service when the context holds a `ScrobbleHistory`, else nothing: the history is optional so
 * servers written before it keep compiling, and without it plugins importing these functions fail
 * to load naming the missing service.
 */
export const layerIfHistory: Layer.Layer<never> = Layer.unwrapEffect(
  Effect.map(Effect.serviceOption(ScrobbleHistory), (history) =>
    Option.match(history, {
      onNone: () => Layer.empty,
      onSome: (found) => layer.pipe(Layer.provide(Layer.succeed(ScrobbleHistory, found)))
    })
  )
)

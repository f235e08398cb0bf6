/**
 * The Config host service (always granted): the plugin's flattened configuration, read-only.
 * `config_get {key} → {value?, exists?}`, `config_getint {key} → {value?, exists?}`,
 * `config_keys {prefix} → {keys?}`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { type HostFunctionHandler, hostFunction } from "../HostCodec.js"
import { define, type HostServiceProvider } from "../HostProvider.js"

/** The functions of the Config service; every plugin has them (grant `config`). */
export const definition = define({
  grant: "config",
  functions: ["config_get", "config_getint", "config_keys"]
})

const KeyRequest = Schema.Struct({ key: Schema.String })
const PrefixRequest = Schema.Struct({ prefix: Schema.optionalWith(Schema.String, { default: () => "" }) })

// Base-10 integers, as Go's strconv.ParseInt(s, 10, 64) accepts them; anything else reads as "not exists".
const INTEGER = /^[+-]?\d+$/
const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

const lookup = (config: Readonly<Record<string, string>>, key: string): string | undefined =>
  Object.prototype.hasOwnProperty.call(config, key) ? config[key] : undefined

/** The config functions over one plugin's flattened configuration. */
export const functions = (
  config: Readonly<Record<string, string>>
): Record<(typeof definition.functions)[number], HostFunctionHandler> => ({
  config_get: hostFunction("config_get", KeyRequest, ({ key }) => {
    const value = lookup(config, key)
    return Effect.succeed(value === undefined ? {} : { value, exists: true })
  }),
  config_getint: hostFunction("config_getint", KeyRequest, ({ key }) => {
    const value = lookup(config, key)
    if (value === undefined || !INTEGER.test(value)) return Effect.succeed({})
    const parsed = BigInt(value)
    // JSON numbers beyond 2^53 lose precision in JavaScript readers; Go reads them exactly.
    return Effect.succeed(
      parsed < INT64_MIN || parsed > INT64_MAX ? {} : { value: Number(parsed), exists: true }
    )
  }),
  config_keys: hostFunction("config_keys", PrefixRequest, ({ prefix }) =>
    Effect.succeed({
      keys: Object.keys(config)
        .filter((key) => key.startsWith(prefix))
        // Code-point order, as Go sorts strings.
        .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    })
  )
})

/**
 * The Config host service. It has no settings and no error of its own: reading a plugin's own
 * configuration cannot fail beyond a malformed request, which the codec answers.
 */
export class ConfigService extends Context.Tag("ndp-engine/host/ConfigService")<
  ConfigService,
  HostServiceProvider
>() {}

/** The Config provider: the functions over each plugin's flattened configuration. */
export const provider: HostServiceProvider = {
  ...definition,
  make: (context) => Effect.succeed(functions(context.config))
}

/** The Config service. */
export const make: Effect.Effect<HostServiceProvider> = Effect.succeed(provider)

/** The Config service as a layer. */
export const layer: Layer.Layer<ConfigService> = Layer.effect(ConfigService, make)

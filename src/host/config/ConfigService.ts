/**
 * The Config host service (always granted): the plugin's flattened configuration, read-only.
 * `config_get {key} → {value?, exists?}`, `config_getint {key} → {value?, exists?}`,
 * `config_keys {prefix} → {keys?}`.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { hostFunction } from "../HostCodec.js"
import type { HostServiceProvider } from "../HostFunctions.js"

const KeyRequest = Schema.Struct({ key: Schema.String })
const PrefixRequest = Schema.Struct({ prefix: Schema.optionalWith(Schema.String, { default: () => "" }) })

// Base-10 integers that fit an int64 exactly as a JS number; anything else reads as "not exists".
const INTEGER = /^[+-]?\d{1,16}$/

const lookup = (config: Readonly<Record<string, string>>, key: string): string | undefined =>
  Object.prototype.hasOwnProperty.call(config, key) ? config[key] : undefined

/** The config functions over one plugin's flattened configuration. */
export const functions = (config: Readonly<Record<string, string>>) => ({
  config_get: hostFunction("config_get", KeyRequest, ({ key }) => {
    const value = lookup(config, key)
    return Effect.succeed(value === undefined ? {} : { value, exists: true })
  }),
  config_getint: hostFunction("config_getint", KeyRequest, ({ key }) => {
    const value = lookup(config, key)?.trim()
    if (value === undefined || !INTEGER.test(value)) return Effect.succeed({})
    const parsed = Number.parseInt(value, 10)
    return Effect.succeed(Number.isSafeInteger(parsed) ? { value: parsed, exists: true } : {})
  }),
  config_keys: hostFunction("config_keys", PrefixRequest, ({ prefix }) =>
    Effect.succeed({
      keys: Object.keys(config)
        .filter((key) => key.startsWith(prefix))
        .sort()
    })
  )
})

export const provider: HostServiceProvider = {
  grant: "config",
  functions: ["config_get", "config_getint", "config_keys"],
  make: (context) => Effect.succeed(functions(context.config))
}

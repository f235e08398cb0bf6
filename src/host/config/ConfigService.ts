/**
 * The Config host service (always granted): the plugin's flattened configuration, read-only.
 * `config_get {key} → {value?, exists?}`, `config_getint {key} → {value?, exists?}`,
 * `config_keys {prefix} → {keys?}`.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { hostFunction } from "../HostCodec.js"
import type { HostServiceProvider } from "../HostFunctions.js"
import { configFunctionNames, configGet, configGetInt, configKeys } from "./ConfigLookup.js"

const KeyRequest = Schema.Struct({ key: Schema.String })
const PrefixRequest = Schema.Struct({ prefix: Schema.optionalWith(Schema.String, { default: () => "" }) })

/** The config functions over one plugin's flattened configuration. */
export const functions = (config: Readonly<Record<string, string>>) => ({
  config_get: hostFunction("config_get", KeyRequest, ({ key }) => Effect.succeed(configGet(config, key))),
  config_getint: hostFunction("config_getint", KeyRequest, ({ key }) =>
    Effect.succeed(configGetInt(config, key))
  ),
  config_keys: hostFunction("config_keys", PrefixRequest, ({ prefix }) =>
    Effect.succeed(configKeys(config, prefix))
  )
})

export const provider: HostServiceProvider = {
  grant: "config",
  functions: configFunctionNames,
  make: (context) => Effect.succeed(functions(context.config))
}

/**
 * Of the functions a plugin imports, those the execution worker may answer itself from the same
 * configuration: the config functions, unless an installed provider overrides them (the last
 * provider of a name is the one whose handler is used).
 */
export const servedInWorker = (
  providers: ReadonlyArray<HostServiceProvider>,
  imported: ReadonlyArray<string>
): ReadonlyArray<string> => {
  const owner = new Map<string, HostServiceProvider>()
  for (const candidate of providers) for (const name of candidate.functions) owner.set(name, candidate)
  return imported.filter((name) => owner.get(name) === provider)
}

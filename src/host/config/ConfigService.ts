/**
 * The Config host service (always granted): the plugin's flattened configuration, read-only.
 * `config_get {key} → {value?, exists?}`, `config_getint {key} → {value?, exists?}`,
 * `config_keys {prefix} → {keys?}`. The answers themselves are in `ConfigLookup.ts`, shared with
 * the execution worker, which answers well-formed requests without crossing threads.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { type HostFunctionHandler, hostFunction } from "../HostCodec.js"
import { define, type HostServiceProvider } from "../HostProvider.js"
import { configFunctionNames, configGet, configGetInt, configKeys } from "./ConfigLookup.js"

/** The functions of the Config service; every plugin has them (grant `config`). */
export const definition = define({
  grant: "config",
  functions: configFunctionNames
})

const KeyRequest = Schema.Struct({ key: Schema.String })
const PrefixRequest = Schema.Struct({ prefix: Schema.optionalWith(Schema.String, { default: () => "" }) })

/** The config functions over one plugin's flattened configuration. */
export const functions = (
  config: Readonly<Record<string, string>>
): Record<(typeof definition.functions)[number], HostFunctionHandler> => ({
  config_get: hostFunction("config_get", KeyRequest, ({ key }) => Effect.succeed(configGet(config, key))),
  config_getint: hostFunction("config_getint", KeyRequest, ({ key }) =>
    Effect.succeed(configGetInt(config, key))
  ),
  config_keys: hostFunction("config_keys", PrefixRequest, ({ prefix }) =>
    Effect.succeed(configKeys(config, prefix))
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

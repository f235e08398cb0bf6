/**
 * The Subsonic API host service (`subsonicapi`): `subsonicapi_call {uri} → {responseJson}` and
 * `subsonicapi_callraw {uri} → {contentType, data}`, served in process by the server's
 * `SubsonicRouter`. The plugin names the user it acts as with `u`; that user must exist, be allowed
 * for the plugin by the administrator, and fit the manifest's own limits (the README draft's
 * `allowedUsernames` and `allowAdmins`). The host sets `c` (the plugin ID), `v` (1.16.1) and, for
 * `call`, `f=json`, replacing whatever the plugin sent, and drops credentials (`p`, `t`, `s`,
 * `apiKey`): the host vouches for the user.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { hostFunction, toBase64 } from "../HostCodec.js"
import { define, type HostServiceProvider, isAllowed, type PluginContext } from "../HostProvider.js"
import { type User, UserDirectory } from "../../server/UserDirectory.js"
import { SUBSONIC_API_VERSION, type SubsonicRequest, SubsonicRouter } from "../../server/SubsonicRouter.js"
import { SubsonicError } from "./SubsonicError.js"

/** The functions of the Subsonic API service and the permission they need. */
export const definition = define({
  grant: "subsonicapi",
  functions: ["subsonicapi_call", "subsonicapi_callraw"]
})

const UriRequest = Schema.Struct({ uri: Schema.String })

/** A plugin's URI taken apart: the endpoint and the query parameters in order. */
export interface ParsedUri {
  readonly endpoint: string
  readonly params: ReadonlyArray<readonly [string, string]>
}

/**
 * Parses `/rest/getAlbum.view?id=1`, `getAlbum?id=1` or a full URL (whose scheme and host are
 * ignored): the endpoint is the last path segment without `.view`.
 */
export const parseUri = (uri: string): Either.Either<ParsedUri, string> => {
  let url: URL
  try {
    url = new URL(uri, "http://subsonic.invalid/")
  } catch {
    return Either.left(`invalid uri: ${uri}`)
  }
  const segment =
    url.pathname
      .split("/")
      .filter((part) => part !== "")
      .pop() ?? ""
  let endpoint: string
  try {
    endpoint = decodeURIComponent(segment)
  } catch {
    return Either.left(`invalid uri: ${uri}`)
  }
  if (endpoint.endsWith(".view")) endpoint = endpoint.slice(0, -".view".length)
  if (endpoint === "") return Either.left(`invalid uri: no endpoint in ${JSON.stringify(uri)}`)
  return Either.right({ endpoint, params: [...url.searchParams.entries()] })
}

/** Parameters the host sets itself, or drops because the host authenticates the call. */
const hostOwned = new Set(["u", "c", "v", "p", "t", "s", "apiKey"])

/** The parameters the router sees: the plugin's own, then `u`, `c`, `v` and (JSON calls) `f`. */
export const forcedParams = (
  params: ReadonlyArray<readonly [string, string]>,
  options: { readonly userName: string; readonly pluginId: string; readonly json: boolean }
): ReadonlyArray<readonly [string, string]> => [
  ...params.filter(([key]) => !hostOwned.has(key) && !(options.json && key === "f")),
  ["u", options.userName],
  ["c", options.pluginId],
  ["v", SUBSONIC_API_VERSION],
  ...(options.json ? ([["f", "json"]] as const) : [])
]

/**
 * Checks that the plugin may act as `userName`: a user the administrator allowed for the plugin
 * (one not allowed reads exactly like one that does not exist), within the manifest's
 * `allowedUsernames` (case-insensitive, as in the draft; empty = no limit) and not an
 * administrator when the manifest says `allowAdmins: false`.
 */
export const checkUser = (
  context: PluginContext,
  users: ReadonlyArray<User>,
  userName: string
): Either.Either<User, string> => {
  const lower = userName.toLowerCase()
  const user =
    users.find((u) => u.userName === userName) ?? users.find((u) => u.userName.toLowerCase() === lower)
  if (user === undefined || !isAllowed(context.users, user.userName)) {
    return Either.left(`user '${userName}' not found or not allowed for plugin ${context.pluginId}`)
  }
  const limits = context.manifest.permissions.subsonicapi
  const allowedNames = limits?.allowedUsernames ?? []
  if (
    allowedNames.length > 0 &&
    !allowedNames.some((name) => name.toLowerCase() === user.userName.toLowerCase())
  ) {
    return Either.left(`user '${userName}' is not allowed by the plugin's subsonicapi.allowedUsernames`)
  }
  if (limits?.allowAdmins === false && user.isAdmin) {
    return Either.left(
      `user '${userName}' is an administrator and the plugin's subsonicapi.allowAdmins is false`
    )
  }
  return Either.right(user)
}

const textual = (contentType: string): boolean =>
  /^(application\/([\w.+-]*\+)?(json|xml)|text\/)/i.test(contentType) || /javascript/i.test(contentType)

const decoder = new TextDecoder()

/** The Subsonic API provider over the server's router and user directory. */
export const provider = (
  router: SubsonicRouter["Type"],
  directory: UserDirectory["Type"]
): HostServiceProvider => ({
  ...definition,
  make: (context) => {
    const execute = (uri: string, json: boolean) =>
      Effect.gen(function* () {
        const parsed = parseUri(uri)
        if (Either.isLeft(parsed))
          return yield* new SubsonicError({ reason: "BadRequest", message: parsed.left })
        const { endpoint, params } = parsed.right
        const userName = params.find(([key]) => key === "u")?.[1] ?? ""
        if (userName === "") {
          return yield* new SubsonicError({
            reason: "BadRequest",
            message: "missing required parameter 'u' (username)"
          })
        }
        const checked = checkUser(context, yield* directory.list, userName)
        if (Either.isLeft(checked)) {
          yield* Effect.logWarning(`Subsonic API call refused: ${checked.left}`)
          return yield* new SubsonicError({ reason: "Forbidden", message: checked.left })
        }
        const request: SubsonicRequest = {
          endpoint,
          params: forcedParams(params, {
            userName: checked.right.userName,
            pluginId: context.pluginId,
            json
          }),
          user: checked.right
        }
        return yield* router.handle(request)
      }).pipe(Effect.withSpan("SubsonicService.call", { attributes: { plugin: context.pluginId, json } }))

    return Effect.succeed({
      subsonicapi_call: hostFunction("subsonicapi_call", UriRequest, ({ uri }) =>
        Effect.flatMap(execute(uri, true), (response) =>
          textual(response.contentType) || response.body.byteLength === 0
            ? Effect.succeed({ responseJson: decoder.decode(response.body) })
            : Effect.fail(
                new SubsonicError({
                  reason: "NotJson",
                  message: `the endpoint answered ${response.contentType}, not JSON; use subsonicapi_callraw for binary responses`
                })
              )
        )
      ),
      subsonicapi_callraw: hostFunction("subsonicapi_callraw", UriRequest, ({ uri }) =>
        Effect.map(execute(uri, false), (response) => ({
          contentType: response.contentType,
          data: toBase64(response.body)
        }))
      )
    })
  }
})

/** The Subsonic API host service; it answers through the embedding server's `SubsonicRouter`. */
export class SubsonicService extends Context.Tag("ndp-engine/host/SubsonicService")<
  SubsonicService,
  HostServiceProvider
>() {}

/** The Subsonic API service over the server's router and user directory, taken once. */
export const make = Effect.fn("SubsonicService.make")(function* () {
  return provider(yield* SubsonicRouter, yield* UserDirectory)
})

/** The Subsonic API service as a layer. */
export const layer: Layer.Layer<SubsonicService, never, SubsonicRouter | UserDirectory> = Layer.effect(
  SubsonicService,
  make()
)

/**
 * The Artwork host service (`artwork`): public artwork URLs for artists, albums, tracks and
 * playlists, `<baseUrl>/share/img/<token>[?size=N]`, where the token is an HS256 JWT
 * `{iss: "ND", id: "<ar|al|mf|pl>-<id>"}` signed with the server's secret.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { createHmac } from "node:crypto"
import { hostFunction } from "../HostCodec.js"
import { define, type HostServiceProvider } from "../HostProvider.js"
import { ArtworkSettings } from "../../server/ArtworkSettings.js"
import { ArtworkError } from "./ArtworkError.js"

const ArtworkRequest = Schema.Struct({
  id: Schema.String,
  size: Schema.optionalWith(Schema.Int, { default: () => 0 })
})

const base64url = (value: string | Buffer): string => Buffer.from(value).toString("base64url")

/** An HS256 JWT over `claims`, signed with `secret`. */
export const signToken = (claims: Record<string, unknown>, secret: string): string => {
  const body = `${base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${base64url(JSON.stringify(claims))}`
  return `${body}.${base64url(createHmac("sha256", secret).update(body).digest())}`
}

/** The functions of the Artwork service and the permission they need. */
export const definition = define({
  grant: "artwork",
  functions: ["artwork_getartisturl", "artwork_getalbumurl", "artwork_gettrackurl", "artwork_getplaylisturl"]
})

// The ID prefix Navidrome's share tokens use for each kind of item.
const kinds: Record<(typeof definition.functions)[number], string> = {
  artwork_getartisturl: "ar",
  artwork_getalbumurl: "al",
  artwork_gettrackurl: "mf",
  artwork_getplaylisturl: "pl"
}

/** The Artwork provider over the server's artwork settings (base URL and signing secret). */
export const provider = (settings: ArtworkSettings["Type"]): HostServiceProvider => {
  const base = settings.baseUrl.replace(/\/+$/, "")
  const url = (prefix: string) => (request: typeof ArtworkRequest.Type) =>
    request.id === ""
      ? Effect.fail(new ArtworkError({ reason: "BadRequest", message: "id is required" }))
      : Effect.succeed({
          url: `${base}/share/img/${signToken({ iss: "ND", id: `${prefix}-${request.id}` }, Redacted.value(settings.secret))}${request.size > 0 ? `?size=${request.size}` : ""}`
        })
  return {
    ...definition,
    make: () =>
      Effect.succeed(
        Object.fromEntries(
          Object.entries(kinds).map(([name, prefix]) => [
            name,
            hostFunction(name, ArtworkRequest, url(prefix))
          ])
        )
      )
  }
}

/** The Artwork host service; it signs with the embedding server's `ArtworkSettings`. */
export class ArtworkService extends Context.Tag("ndp-engine/host/ArtworkService")<
  ArtworkService,
  HostServiceProvider
>() {}

/** The Artwork service over the server's `ArtworkSettings`, read once. */
export const make: Effect.Effect<HostServiceProvider, never, ArtworkSettings> = Effect.map(
  ArtworkSettings,
  provider
).pipe(Effect.withSpan("ArtworkService.make"))

/** The Artwork service as a layer. */
export const layer: Layer.Layer<ArtworkService, never, ArtworkSettings> = Layer.effect(ArtworkService, make)

/**
 * The Artwork host service (`artwork`): public artwork URLs for artists, albums, tracks and
 * playlists, `<baseUrl>/share/img/<token>[?size=N]`, where the token is an HS256 JWT
 * `{iss: "ND", id: "<ar|al|mf|pl>-<id>"}` signed with the server's secret.
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { createHmac } from "node:crypto"
import { HostCallError, hostFunction } from "../HostCodec.js"
import type { HostServiceProvider } from "../HostFunctions.js"
import type { ArtworkSettings } from "../../server/ArtworkSettings.js"

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

const kinds = {
  artwork_getartisturl: "ar",
  artwork_getalbumurl: "al",
  artwork_gettrackurl: "mf",
  artwork_getplaylisturl: "pl"
}

export const provider = (settings: ArtworkSettings["Type"]): HostServiceProvider => {
  const base = settings.baseUrl.replace(/\/+$/, "")
  const url = (prefix: string) => (request: typeof ArtworkRequest.Type) =>
    request.id === ""
      ? Effect.fail(new HostCallError({ message: "id is required" }))
      : Effect.succeed({
          url: `${base}/share/img/${signToken({ iss: "ND", id: `${prefix}-${request.id}` }, Redacted.value(settings.secret))}${request.size > 0 ? `?size=${request.size}` : ""}`
        })
  return {
    grant: "artwork",
    functions: Object.keys(kinds),
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

/**
 * Where the server serves artwork and the secret its share tokens are signed with. The embedding
 * server provides these; `EmbeddedDatabase` offers a default with a secret kept in its database.
 */
import * as Context from "effect/Context"
import type * as Redacted from "effect/Redacted"

export class ArtworkSettings extends Context.Tag("ndp-engine/ArtworkSettings")<
  ArtworkSettings,
  {
    /** The server's public base URL, without a trailing slash, e.g. `https://music.example.org`. */
    readonly baseUrl: string
    /** The HS256 key that signs artwork tokens. */
    readonly secret: Redacted.Redacted<string>
  }
>() {}

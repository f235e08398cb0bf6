/**
 * The embedded library catalogue and Subsonic router (being written: an empty catalogue, and a
 * router that answers every request with a Subsonic "not implemented" error).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { LibraryCatalog } from "../host/library/LibraryCatalog.js"
import { SubsonicRouter } from "../host/subsonic/SubsonicRouter.js"

export interface EmbeddedLibraryOptions {
  readonly dataFolder: string
}

export const layer = (_options: EmbeddedLibraryOptions): Layer.Layer<LibraryCatalog | SubsonicRouter> =>
  Layer.mergeAll(
    Layer.succeed(LibraryCatalog, { list: Effect.succeed([]) }),
    Layer.succeed(SubsonicRouter, {
      handle: () =>
        Effect.succeed({
          contentType: "application/json",
          body: new TextEncoder().encode(
            JSON.stringify({
              "subsonic-response": {
                status: "failed",
                version: "1.16.1",
                error: { code: 0, message: "not implemented" }
              }
            })
          )
        })
    })
  )

/**
 * Assembles every host service of this engine version into the host-function registry. Services
 * that need something from the embedding server (its users, its artwork URLs) take it as a
 * requirement of this layer; `Engine.layer` supplies embedded defaults.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { ArtworkSettings } from "../server/ArtworkSettings.js"
import * as ArtworkService from "./artwork/ArtworkService.js"
import * as CacheService from "./cache/CacheService.js"
import type { HostFunctions } from "./HostFunctions.js"
import { layerWith } from "./HostFunctions.js"
import * as HttpService from "./http/HttpService.js"
import * as KvStoreService from "./kvstore/KvStoreService.js"
import { LibraryCatalog } from "../server/LibraryCatalog.js"
import * as LibraryService from "./library/LibraryService.js"
import * as SchedulerService from "./scheduler/SchedulerService.js"
import * as ScrobbleRetrieverService from "./scrobbleretriever/ScrobbleRetrieverService.js"
import { ScrobbleHistory } from "../server/ScrobbleHistory.js"
import * as SubsonicService from "./subsonic/SubsonicService.js"
import { SubsonicRouter } from "../server/SubsonicRouter.js"
import { UserDirectory } from "../server/UserDirectory.js"
import * as UsersService from "./users/UsersService.js"
import * as WebSocketService from "./websocket/WebSocketService.js"

/** Settings of the host services. */
export interface HostOptions {
  /** Where plugins' data lives (`<dataFolder>/plugins/<id>/…`). */
  readonly dataFolder: string
  readonly cache?: Partial<CacheService.CacheOptions> | undefined
  readonly http?: Partial<HttpService.HttpOptions> | undefined
  readonly kvstore?: Partial<KvStoreService.KvStoreServiceOptions> | undefined
  readonly scheduler?: Partial<SchedulerService.SchedulerOptions> | undefined
  readonly websocket?: Partial<WebSocketService.WebSocketOptions> | undefined
}

/**
 * What the embedding server supplies (or `Engine.layer` with its embedded defaults). A
 * `ScrobbleHistory` in the context is used when present (`Engine.layer` embeds one).
 */
export type ServerServices = UserDirectory | ArtworkSettings | LibraryCatalog | SubsonicRouter

/** The registry with all installed host services. */
export const layer = (options: HostOptions): Layer.Layer<HostFunctions, never, ServerServices> =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const directory = yield* UserDirectory
      const artwork = yield* ArtworkSettings
      const catalog = yield* LibraryCatalog
      const router = yield* SubsonicRouter
      // Optional, so servers written before it keep compiling: without it, the service is not
      // installed and plugins importing its functions fail to load, naming the missing service.
      const history = yield* Effect.serviceOption(ScrobbleHistory)
      return layerWith(options.dataFolder, [
        CacheService.provider({ ...CacheService.defaultCacheOptions, ...options.cache }),
        KvStoreService.providerWith(options.kvstore),
        HttpService.provider({ ...HttpService.defaultHttpOptions, ...options.http }),
        ArtworkService.provider(artwork),
        UsersService.provider(directory),
        SchedulerService.providerWith(options.scheduler),
        WebSocketService.makeProvider({ ...WebSocketService.defaultWebSocketOptions, ...options.websocket }),
        LibraryService.provider(catalog),
        SubsonicService.provider(router, directory),
        ...Option.toArray(Option.map(history, ScrobbleRetrieverService.provider))
      ])
    })
  )

/**
 * Assembles every host service of this engine version into the host-function registry: the merge
 * of each service's own layer. Services that need something from the embedding server (its users,
 * its artwork URLs) take it as a requirement of their layer; `Engine.layer` supplies embedded
 * defaults.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { ArtworkSettings } from "../server/ArtworkSettings.js"
import type { LibraryCatalog } from "../server/LibraryCatalog.js"
import type { SubsonicRouter } from "../server/SubsonicRouter.js"
import type { UserDirectory } from "../server/UserDirectory.js"
import * as ArtworkService from "./artwork/ArtworkService.js"
import * as CacheService from "./cache/CacheService.js"
import * as ConfigService from "./config/ConfigService.js"
import { HostFunctions } from "./HostFunctions.js"
import * as HttpService from "./http/HttpService.js"
import * as KvStoreService from "./kvstore/KvStoreService.js"
import * as LibraryService from "./library/LibraryService.js"
import * as MatcherService from "./matcher/MatcherService.js"
import * as SchedulerService from "./scheduler/SchedulerService.js"
import * as ScrobbleRetrieverService from "./scrobbleretriever/ScrobbleRetrieverService.js"
import * as StorageService from "./storage/StorageService.js"
import * as SubsonicService from "./subsonic/SubsonicService.js"
import * as TaskQueueService from "./taskqueue/TaskQueueService.js"
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
  readonly taskqueue?: Partial<TaskQueueService.TaskQueueOptions> | undefined
  readonly websocket?: Partial<WebSocketService.WebSocketOptions> | undefined
}

/**
 * What the embedding server supplies (or `Engine.layer` with its embedded defaults). A
 * `ScrobbleHistory` and a `TrackCatalog` in the context are used when present (`Engine.layer`
 * embeds both).
 */
export type ServerServices = UserDirectory | ArtworkSettings | LibraryCatalog | SubsonicRouter

/** Every host service, each from its own layer. */
export const servicesLayer = (options: Omit<HostOptions, "dataFolder">) =>
  Layer.mergeAll(
    ConfigService.layer,
    CacheService.layer(options.cache),
    KvStoreService.layer(options.kvstore),
    HttpService.layer(options.http),
    ArtworkService.layer,
    UsersService.layer,
    SchedulerService.layer(options.scheduler),
    WebSocketService.layer(options.websocket),
    LibraryService.layer,
    SubsonicService.layer,
    StorageService.layer,
    TaskQueueService.layer(options.taskqueue),
    ScrobbleRetrieverService.layerIfHistory,
    MatcherService.layerIfCatalog
  )

/** The registry over every host service's provider, in a fixed order. */
const registry = (dataFolder: string) =>
  Layer.effect(
    HostFunctions,
    Effect.zipWith(
      Effect.all([
        ConfigService.ConfigService,
        CacheService.CacheService,
        KvStoreService.KvStoreService,
        HttpService.HttpService,
        ArtworkService.ArtworkService,
        UsersService.UsersService,
        SchedulerService.SchedulerService,
        WebSocketService.WebSocketService,
        LibraryService.LibraryService,
        SubsonicService.SubsonicService,
        StorageService.StorageService,
        TaskQueueService.TaskQueueService
      ]),
      // Installed only over what the server supplies (see `layerIfHistory`, `layerIfCatalog`).
      Effect.all([
        Effect.serviceOption(ScrobbleRetrieverService.ScrobbleRetrieverService),
        Effect.serviceOption(MatcherService.MatcherService)
      ]),
      (providers, optional) => ({
        dataFolder,
        providers: [...providers, ...optional.flatMap(Option.toArray)]
      })
    )
  )

/** The registry with all installed host services. */
export const layer = (options: HostOptions): Layer.Layer<HostFunctions, never, ServerServices> =>
  registry(options.dataFolder).pipe(Layer.provide(servicesLayer(options)))

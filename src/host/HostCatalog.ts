/**
 * Every host function this engine knows and the grant it needs, whether or not its service is
 * installed: the linker tells "needs permission X" from "not installed" from "unknown" with it.
 * Built from each service's own `definition`, so a function name is written once, in its service.
 * A new service adds its definition here and its layer in `HostServices`.
 */
import { kernelHttpFunctionNames } from "../runtime/abi/Imports.js"
import * as ArtworkService from "./artwork/ArtworkService.js"
import * as CacheService from "./cache/CacheService.js"
import * as ConfigService from "./config/ConfigService.js"
import type { Grant, HostServiceDefinition } from "./HostProvider.js"
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

/** The definitions of every host service of this engine version. */
export const definitions: ReadonlyArray<HostServiceDefinition> = [
  ConfigService.definition,
  CacheService.definition,
  KvStoreService.definition,
  SchedulerService.definition,
  WebSocketService.definition,
  LibraryService.definition,
  ArtworkService.definition,
  UsersService.definition,
  SubsonicService.definition,
  ScrobbleRetrieverService.definition,
  MatcherService.definition,
  StorageService.definition,
  TaskQueueService.definition,
  HttpService.definition
]

/**
 * The `extism:host/user` catalogue over some definitions. Names Extism's kernel owns
 * (`http_request`, imported from `extism:host/env`) are answered by a service but are not user
 * functions, so they are left out. A name defined twice is our bug, caught by the tests.
 */
export const catalogOf = (list: ReadonlyArray<HostServiceDefinition>): ReadonlyMap<string, Grant> =>
  new Map(
    list.flatMap((definition) =>
      definition.functions
        .filter((name) => !kernelHttpFunctionNames.has(name))
        .map((name) => [name, definition.grant] as const)
    )
  )

/** Every known host function name and the grant it needs. */
export const hostFunctionCatalog: ReadonlyMap<string, Grant> = catalogOf(definitions)

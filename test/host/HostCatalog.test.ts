/**
 * The host-function catalogue is derived from each service's own definition: these tests pin the
 * contract's names and grants, and check that every installed service answers exactly the
 * functions it defines, so the derived catalogue cannot drift from what the services provide.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { catalogOf, definitions, hostFunctionCatalog } from "../../src/host/HostCatalog.js"
import { HostFunctions, type PluginContext } from "../../src/host/HostFunctions.js"
import { define } from "../../src/host/HostProvider.js"
import { decodeManifest } from "../../src/manifest/Manifest.js"
import { testEngine } from "../support/engine.js"

// The contract's `extism:host/user` functions (contract §3–§5), written out once here as the pin.
const contract: Record<string, ReadonlyArray<string>> = {
  config: ["config_get", "config_getint", "config_keys"],
  cache: [
    "cache_setstring",
    "cache_getstring",
    "cache_setint",
    "cache_getint",
    "cache_setfloat",
    "cache_getfloat",
    "cache_setbytes",
    "cache_getbytes",
    "cache_has",
    "cache_remove"
  ],
  kvstore: [
    "kvstore_set",
    "kvstore_get",
    "kvstore_delete",
    "kvstore_has",
    "kvstore_list",
    "kvstore_getstorageused",
    "kvstore_setwithttl",
    "kvstore_getmany",
    "kvstore_deletebyprefix"
  ],
  scheduler: ["scheduler_scheduleonetime", "scheduler_schedulerecurring", "scheduler_cancelschedule"],
  websocket: [
    "websocket_connect",
    "websocket_sendtext",
    "websocket_sendbinary",
    "websocket_closeconnection",
    "websocket_close"
  ],
  library: ["library_getlibrary", "library_getalllibraries"],
  artwork: ["artwork_getartisturl", "artwork_getalbumurl", "artwork_gettrackurl", "artwork_getplaylisturl"],
  users: ["users_getusers", "users_getadmins"],
  subsonicapi: ["subsonicapi_call", "subsonicapi_callraw"],
  matcher: ["matcher_matchsongs"],
  scrobbleRetriever: [
    "scrobbleretriever_getfirsttimestamp",
    "scrobbleretriever_getlasttimestamp",
    "scrobbleretriever_getscrobbles",
    "scrobbleretriever_getscrobblecount"
  ],
  http: ["http_send"],
  // Navidrome after v0.60 (docs/compatibility.md).
  storage: ["storage_getstoragepath"],
  taskqueue: ["task_createqueue", "task_enqueue", "task_get", "task_cancel", "task_clearqueue"]
}

describe("hostFunctionCatalog", () => {
  it("holds exactly the contract's user functions, each under its grant", () => {
    const expected = new Map(
      Object.entries(contract).flatMap(([grant, names]) => names.map((name) => [name, grant] as const))
    )
    expect(new Map(hostFunctionCatalog)).toEqual(expected)
  })

  it("leaves out Extism's own http_request, which the HTTP service answers from extism:host/env", () => {
    expect(hostFunctionCatalog.has("http_request")).toBe(false)
    expect(definitions.some((definition) => definition.functions.includes("http_request"))).toBe(true)
  })

  it("defines every name once", () => {
    const names = definitions.flatMap((definition) => definition.functions)
    expect(new Set(names).size).toBe(names.length)
  })

  it("catalogOf maps a new service's functions to its grant", () => {
    const catalog = catalogOf([define({ grant: "users", functions: ["users_extra"] })])
    expect([...catalog]).toEqual([["users_extra", "users"]])
  })
})

describe("installed host services", () => {
  it.scoped("every provider answers exactly the functions its definition names, and has one", () =>
    Effect.gen(function* () {
      const { dataFolder, providers } = yield* HostFunctions
      const manifest = yield* decodeManifest(
        JSON.stringify({ name: "catalog", author: "tests", version: "1", permissions: {} })
      )
      const context: PluginContext = {
        pluginId: "catalog",
        manifest,
        config: {},
        dataFolder,
        users: "all",
        libraries: "all",
        callPlugin: () => Effect.succeed(null)
      }
      expect(providers.map((provider) => provider.grant).sort()).toEqual(
        definitions.map((definition) => definition.grant).sort()
      )
      for (const provider of providers) {
        const definition = definitions.find((candidate) => candidate.grant === provider.grant)
        expect(provider.functions).toEqual(definition?.functions)
        const handlers = yield* provider.make(context)
        expect(Object.keys(handlers).sort()).toEqual([...provider.functions].sort())
      }
    }).pipe(Effect.provide(testEngine()))
  )
})

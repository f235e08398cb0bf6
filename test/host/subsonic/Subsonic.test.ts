import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { demoCatalogue } from "../../../src/server/embedded/DemoLibrary.js"
import { demoLibraryFolder } from "../../../src/server/embedded/EmbeddedLibrary.js"
import { HostFunctions } from "../../../src/host/HostFunctions.js"
import type { AccessList } from "../../../src/host/HostFunctions.js"
import { type LoadedPlugin, PluginLoader } from "../../../src/loader/PluginLoader.js"
import { testEngine } from "../../support/engine.js"
import { fixture } from "../../support/fixtures.js"
import { repackage } from "../../support/repackage.js"

const decoder = new TextDecoder()
let loaded = 0

type Json = Record<string, unknown>

const load = (users: AccessList<string> = "all", subsonicapi?: Json) =>
  Effect.flatMap(PluginLoader, (loader) =>
    loader.loadBytes(
      `host-subsonic-${++loaded}`,
      subsonicapi === undefined
        ? readFileSync(fixture("host-subsonic"))
        : repackage("host-subsonic", (m) => ({ ...m, permissions: { users: {}, subsonicapi } })),
      { users }
    )
  )

const hostCall = (plugin: LoadedPlugin, fn: "call" | "callraw", uri: string) =>
  Effect.map(
    plugin.call(`call_subsonicapi_${fn}`, JSON.stringify({ uri })),
    (bytes) => JSON.parse(decoder.decode(bytes!)) as Json
  )

/** `subsonicapi_call`, with the Subsonic document parsed; fails the test on a host error. */
const subsonic = (plugin: LoadedPlugin, uri: string) =>
  Effect.map(hostCall(plugin, "call", uri), (response) => {
    expect(response, uri).toHaveProperty("responseJson")
    return (JSON.parse(response.responseJson as string) as { "subsonic-response": Json })["subsonic-response"]
  })

const names = (items: unknown) =>
  (items as Array<{ name?: string; title?: string }>).map((i) => i.name ?? i.title)

layer(testEngine({ runtime: { poolSize: 2 } }))("Subsonic API over the embedded catalogue", (it) => {
  it.scoped("ping, getLicense, getNowPlaying: the Subsonic envelope", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      const envelope = {
        status: "ok",
        version: "1.16.1",
        type: "ndp-engine",
        serverVersion: expect.any(String),
        openSubsonic: true
      }
      expect(yield* subsonic(plugin, "/rest/ping.view?u=alice")).toEqual(envelope)
      expect(yield* subsonic(plugin, "getLicense?u=alice")).toEqual({ ...envelope, license: { valid: true } })
      expect(yield* subsonic(plugin, "/rest/getNowPlaying?u=alice")).toEqual({ ...envelope, nowPlaying: {} })
      // The URI's scheme and host are ignored.
      expect(yield* subsonic(plugin, "https://elsewhere.example/rest/ping.view?u=alice")).toEqual(envelope)
    })
  )

  it.scoped("getArtists, getArtist, getAlbum and getSong walk the demo catalogue", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      const { artists } = (yield* subsonic(plugin, "/rest/getArtists.view?u=alice")) as {
        artists: { ignoredArticles: string; index: Array<{ name: string; artist: Array<Json> }> }
      }
      expect(artists.ignoredArticles).toBe("The El La Los Las Le Les")
      expect(artists.index.map((i) => [i.name, names(i.artist)])).toEqual([
        ["N", ["Nadia Océano"]],
        ["Q", ["The Quiet Ensemble"]],
        ["Z", ["Zero Crossing"]]
      ])
      expect(artists.index[1]!.artist[0]).toMatchObject({ id: "ar-1", albumCount: 2, coverArt: "ar-1" })

      const { artist } = (yield* subsonic(plugin, "/rest/getArtist.view?u=alice&id=ar-1")) as {
        artist: Json & { album: Array<Json> }
      }
      expect(artist).toMatchObject({ id: "ar-1", name: "The Quiet Ensemble", albumCount: 2 })
      expect(names(artist.album)).toEqual(["Morning Rests", "Evening Rests"])

      const { album } = (yield* subsonic(plugin, "getAlbum.view?u=alice&id=al-1")) as {
        album: Json & { song: Array<Json> }
      }
      expect(album).toMatchObject({
        id: "al-1",
        name: "Morning Rests",
        artist: "The Quiet Ensemble",
        artistId: "ar-1",
        songCount: 3,
        duration: 9,
        year: 2019,
        genre: "Ambient",
        coverArt: "al-1"
      })
      expect(album.song.map((s) => [s.track, s.title, s.duration])).toEqual([
        [1, "Dawn Fermata", 3],
        [2, "Breakfast Pause", 2],
        [3, "Long Tacet", 4]
      ])
      expect(album.song[0]).toMatchObject({
        id: "mf-1",
        parent: "al-1",
        isDir: false,
        albumId: "al-1",
        artistId: "ar-1",
        contentType: "audio/wav",
        suffix: "wav",
        size: 44 + 3 * 8000,
        bitRate: 64,
        path: "The Quiet Ensemble/Morning Rests/01 - Dawn Fermata.wav",
        type: "music"
      })
      const { song } = (yield* subsonic(plugin, "/rest/getSong?u=alice&id=mf-8")) as { song: Json }
      expect(song).toMatchObject({ title: "Undertow", album: "Tidal Silence", artist: "Nadia Océano" })
    })
  )

  it.scoped("getAlbumList2: the list types, size and offset", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      const list = (query: string) =>
        Effect.map(subsonic(plugin, `/rest/getAlbumList2.view?u=alice&${query}`), (r) =>
          ((r.albumList2 as { album?: Array<Json> }).album ?? []).map((a) => a.name)
        )
      expect(yield* list("type=newest")).toEqual([
        "Flat Line",
        "Tidal Silence",
        "Evening Rests",
        "Morning Rests"
      ])
      expect(yield* list("type=alphabeticalByName")).toEqual([
        "Evening Rests",
        "Flat Line",
        "Morning Rests",
        "Tidal Silence"
      ])
      expect(yield* list("type=alphabeticalByArtist")).toEqual([
        "Tidal Silence",
        "Morning Rests",
        "Evening Rests",
        "Flat Line"
      ])
      expect(yield* list("type=alphabeticalByName&size=2&offset=1")).toEqual(["Flat Line", "Morning Rests"])
      expect(yield* list("type=byYear&fromYear=2020&toYear=2021")).toEqual(["Tidal Silence", "Evening Rests"])
      expect(yield* list("type=byYear&fromYear=2021&toYear=2020")).toEqual(["Evening Rests", "Tidal Silence"])
      expect(yield* list("type=byGenre&genre=Ambient")).toEqual(["Evening Rests", "Morning Rests"])
      expect(yield* list("type=starred")).toEqual([])
      const random = yield* list("type=random&size=3")
      expect(random).toHaveLength(3)
      expect(new Set(random).size).toBe(3)
      expect(yield* list("type=random")).toHaveLength(4)

      const missingType = yield* subsonic(plugin, "/rest/getAlbumList2.view?u=alice")
      expect(missingType).toMatchObject({ status: "failed", error: { code: 10 } })
      expect((missingType.error as { message: string }).message).toContain("type")
      expect(
        yield* subsonic(plugin, "/rest/getAlbumList2.view?u=alice&type=byYear&fromYear=2020")
      ).toMatchObject({
        status: "failed",
        error: { code: 10 }
      })
      expect(yield* subsonic(plugin, "/rest/getAlbumList2.view?u=alice&type=sideways")).toMatchObject({
        status: "failed",
        error: { code: 0, message: "type 'sideways' not implemented" }
      })
    })
  )

  it.scoped("search3 looks through artists, albums and songs; getRandomSongs; getGenres", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      const search = (query: string) =>
        Effect.map(
          subsonic(plugin, `/rest/search3.view?u=alice&${query}`),
          (r) => r.searchResult3 as { artist?: Array<Json>; album?: Array<Json>; song?: Array<Json> }
        )
      expect(yield* search("query=fermata")).toEqual({
        song: [
          expect.objectContaining({ title: "Dawn Fermata" }),
          expect.objectContaining({ title: "Dusk Fermata" })
        ]
      })
      const zero = yield* search("query=ZERO")
      expect(names(zero.artist)).toEqual(["Zero Crossing"])
      expect(names(zero.album)).toEqual(["Flat Line"])
      expect(names(zero.song)).toEqual(["One Sample", "Zero"])
      expect(yield* search("query=oc%C3%A9")).toMatchObject({ artist: [{ name: "Nadia Océano" }] })
      expect(yield* search("query=nothing-like-this")).toEqual({})
      const everything = yield* search("query=%22%22")
      expect([everything.artist?.length, everything.album?.length, everything.song?.length]).toEqual([
        3, 4, 10
      ])
      const paged = yield* search("query=&artistCount=0&albumCount=1&albumOffset=3&songCount=2")
      expect(paged.artist).toBeUndefined()
      expect(names(paged.album)).toEqual(["Tidal Silence"])
      expect(paged.song).toHaveLength(2)
      expect(yield* subsonic(plugin, "/rest/search3.view?u=alice")).toMatchObject({
        status: "failed",
        error: { code: 10 }
      })

      const random = (query: string) =>
        Effect.map(
          subsonic(plugin, `/rest/getRandomSongs.view?u=alice&${query}`),
          (r) => (r.randomSongs as { song?: Array<Json> }).song ?? []
        )
      const five = yield* random("size=5")
      expect(five).toHaveLength(5)
      expect(new Set(five.map((s) => s.id)).size).toBe(5)
      expect(yield* random("")).toHaveLength(10)
      expect(yield* random("size=500")).toHaveLength(10)
      expect((yield* random("genre=Minimal")).map((s) => s.title).sort()).toEqual(["One Sample", "Zero"])
      expect(yield* random("fromYear=2022&toYear=2022")).toHaveLength(2)

      expect(yield* subsonic(plugin, "/rest/getGenres.view?u=alice")).toMatchObject({
        genres: {
          genre: [
            { value: "Ambient", songCount: 5, albumCount: 2 },
            { value: "Electronic", songCount: 3, albumCount: 1 },
            { value: "Minimal", songCount: 2, albumCount: 1 }
          ]
        }
      })
    })
  )

  it.scoped("errors in Subsonic's format: unknown endpoints, missing parameters, unknown IDs", () =>
    Effect.gen(function* () {
      const plugin = yield* load()
      expect(yield* subsonic(plugin, "/rest/frobnicate.view?u=alice")).toEqual({
        status: "failed",
        version: "1.16.1",
        type: "ndp-engine",
        serverVersion: expect.any(String),
        openSubsonic: true,
        error: { code: 70, message: "endpoint 'frobnicate' not found" }
      })
      for (const name of ["constructor", "toString", "__proto__"]) {
        expect(yield* subsonic(plugin, `/rest/${name}.view?u=alice`)).toMatchObject({ error: { code: 70 } })
        expect(yield* subsonic(plugin, `/rest/getAlbumList2.view?u=alice&type=${name}`)).toMatchObject({
          error: { code: 0 }
        })
      }
      expect(yield* subsonic(plugin, "/rest/getAlbum.view?u=alice")).toMatchObject({
        status: "failed",
        error: { code: 10, message: "required 'id' parameter is missing" }
      })
      expect(yield* subsonic(plugin, "/rest/getAlbum.view?u=alice&id=al-99")).toMatchObject({
        status: "failed",
        error: { code: 70 }
      })
      expect(yield* subsonic(plugin, "/rest/getArtist.view?u=alice&id=nope")).toMatchObject({
        status: "failed",
        error: { code: 70 }
      })
      // A missing ID for a binary endpoint is a Subsonic error document too.
      const raw = yield* hostCall(plugin, "callraw", "/rest/stream.view?u=alice")
      expect(raw.contentType).toBe("application/json")
      expect(JSON.parse(Buffer.from(raw.data as string, "base64").toString())).toMatchObject({
        "subsonic-response": { status: "failed", error: { code: 10 } }
      })
    })
  )

  it.scoped("callraw: stream and download give the file's bytes, getCoverArt the cover", () =>
    Effect.gen(function* () {
      const { dataFolder } = yield* HostFunctions
      const plugin = yield* load()
      const folder = demoLibraryFolder(dataFolder)
      for (const song of [demoCatalogue.songs[0]!, demoCatalogue.songs[7]!]) {
        for (const endpoint of ["stream", "download"]) {
          const response = yield* hostCall(plugin, "callraw", `/rest/${endpoint}.view?u=alice&id=${song.id}`)
          expect(response.contentType).toBe("audio/wav")
          expect(
            Buffer.from(response.data as string, "base64").equals(readFileSync(join(folder, song.path)))
          ).toBe(true)
        }
      }
      const album = demoCatalogue.albums[2]!
      for (const id of [album.id, "mf-8", "ar-2"]) {
        const cover = yield* hostCall(plugin, "callraw", `/rest/getCoverArt.view?u=alice&id=${id}&size=300`)
        expect(cover.contentType).toBe("image/png")
        expect(
          Buffer.from(cover.data as string, "base64").equals(
            readFileSync(join(folder, album.folder, "cover.png"))
          )
        ).toBe(true)
      }
      // callraw of a JSON endpoint is the same document as call.
      const ping = yield* hostCall(plugin, "callraw", "/rest/ping.view?u=alice")
      expect(ping.contentType).toBe("application/json")
      expect(JSON.parse(Buffer.from(ping.data as string, "base64").toString())).toMatchObject({
        "subsonic-response": { status: "ok" }
      })
      // Binary content cannot travel as responseJson.
      const viaCall = yield* hostCall(plugin, "call", "/rest/stream.view?u=alice&id=mf-1")
      expect(viaCall.error).toContain("subsonicapi_callraw")
    })
  )

  it.scoped("the user: u is required, must be allowed for the plugin, and within the manifest's limits", () =>
    Effect.gen(function* () {
      const onlyAlice = yield* load(["alice", "admin"])
      expect(yield* hostCall(onlyAlice, "call", "/rest/ping.view")).toEqual({
        error: "missing required parameter 'u' (username)"
      })
      expect(yield* hostCall(onlyAlice, "callraw", "/rest/ping.view?u=")).toEqual({
        error: "missing required parameter 'u' (username)"
      })
      // A user not allowed for the plugin and one that does not exist are refused alike.
      const refusedBob = yield* hostCall(onlyAlice, "call", "/rest/ping.view?u=bob")
      const refusedGhost = yield* hostCall(onlyAlice, "call", "/rest/ping.view?u=ghost")
      expect(refusedBob.error).toMatch(/^user 'bob' not found or not allowed/)
      expect(refusedGhost.error).toMatch(/^user 'ghost' not found or not allowed/)
      expect(yield* subsonic(onlyAlice, "/rest/ping.view?u=alice")).toMatchObject({ status: "ok" })
      // User names match case-insensitively, as in Navidrome.
      expect(yield* subsonic(onlyAlice, "/rest/ping.view?u=Alice")).toMatchObject({ status: "ok" })
      const nobody = yield* load([])
      expect((yield* hostCall(nobody, "call", "/rest/ping.view?u=alice")).error).toContain("not allowed")
      expect((yield* hostCall(onlyAlice, "call", "")).error).toContain("invalid uri")

      const limited = yield* load("all", { allowedUsernames: ["ALICE", "admin"], allowAdmins: false })
      expect(yield* subsonic(limited, "/rest/ping.view?u=alice")).toMatchObject({ status: "ok" })
      expect((yield* hostCall(limited, "call", "/rest/ping.view?u=bob")).error).toContain("allowedUsernames")
      expect((yield* hostCall(limited, "callraw", "/rest/ping.view?u=admin")).error).toContain("allowAdmins")

      const admins = yield* load("all", { allowAdmins: true })
      expect(yield* subsonic(admins, "/rest/ping.view?u=admin")).toMatchObject({ status: "ok" })
      expect(yield* subsonic(admins, "/rest/ping.view?u=bob")).toMatchObject({ status: "ok" })
      // Without the draft's limits, the administrator's choice alone decides.
      expect(yield* subsonic(yield* load("all"), "/rest/ping.view?u=admin")).toMatchObject({ status: "ok" })
    })
  )

  it.scoped("without the permission the functions cannot be imported", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const bytes = repackage("host-subsonic", (m) => ({ ...m, permissions: { users: {} } }))
      const error = yield* Effect.flip(loader.loadBytes("host-subsonic-denied", bytes))
      expect(error).toMatchObject({ _tag: "PluginLoadError", reason: "Link", permission: "subsonicapi" })
    })
  )
})

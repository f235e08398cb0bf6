import { describe, expect, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as MetadataAgent from "../../src/capabilities/MetadataAgent.js"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"

const artist = { id: "ar-1", name: "Björk 東京" }

layer(testEngine({ runtime: { poolSize: 2, defaultTimeoutMs: 5_000 } }))("MetadataAgent", (it) => {
  it.scoped("answers all eleven metadata calls from a real plugin, non-ASCII intact", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const plugin = yield* loader.loadFile(fixture("agent-full"))
      expect(plugin.capabilities).toContain("MetadataAgent")
      const agent = MetadataAgent.fromPlugin(plugin)

      expect(yield* agent.getArtistMBID(artist)).toEqual(Option.some("mbid-Björk 東京"))
      expect(yield* agent.getArtistURL(artist)).toEqual(
        Option.some("https://music.example.org/artist/Björk 東京")
      )
      expect(yield* agent.getArtistBiography(artist)).toEqual(Option.some("Biography for Björk 東京"))

      const similar = Option.getOrThrow(yield* agent.getSimilarArtists({ ...artist, limit: 3 }))
      expect(similar.map((a) => a.name)).toEqual([
        "Björk 東京 Similar 1",
        "Björk 東京 Similar 2",
        "Björk 東京 Similar 3"
      ])
      const images = Option.getOrThrow(yield* agent.getArtistImages(artist))
      expect(images.map((i) => i.size)).toEqual([300, 64])

      const top = Option.getOrThrow(yield* agent.getArtistTopSongs({ ...artist, count: 4 }))
      expect(top).toHaveLength(4)
      expect(top[0]).toMatchObject({
        name: "Björk 東京 Song 1",
        artist: "Björk 東京",
        duration: 0,
        durationMs: 0,
        artists: [{ name: "Björk 東京", mbid: "mb-1" }]
      })
      expect(top[1]).toEqual({
        name: "Björk 東京 Song 2",
        isrc: "ISXX00000002",
        duration: 9,
        durationMs: 2500,
        artists: [{ name: "Björk 東京", sortName: "Bjork", role: "performer", subRole: "vocals" }]
      })
      expect(top[2]).toMatchObject({ durationMs: 0, artists: [{ name: "Björk 東京" }] })

      const album = { name: "Homogenic", artist: "Björk" }
      expect(yield* agent.getAlbumInfo(album)).toEqual(
        Option.some({
          name: "Homogenic",
          mbid: "mbid-album-Homogenic",
          description: "Homogenic by Björk",
          url: "https://music.example.org/album/Homogenic"
        })
      )
      expect(Option.getOrThrow(yield* agent.getAlbumImages(album))).toHaveLength(2)

      const track = { id: "t-1", name: "Jóga", artist: "Björk", count: 2 }
      for (const songs of [
        yield* agent.getSimilarSongsByTrack(track),
        yield* agent.getSimilarSongsByAlbum(track),
        yield* agent.getSimilarSongsByArtist({ id: "ar-1", name: "Jóga", count: 2 })
      ]) {
        expect(Option.getOrThrow(songs).map((s) => s.name)).toEqual([
          "Jóga Similar Song 1",
          "Jóga Similar Song 2"
        ])
      }
    })
  )

  it.scoped("treats empty output and empty values as a miss", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const agent = MetadataAgent.fromPlugin(yield* loader.loadFile(fixture("agent-full")))
      for (const name of ["Nobody", "Empty"]) {
        const who = { id: "x", name }
        expect(yield* agent.getArtistBiography(who)).toEqual(Option.none())
        expect(yield* agent.getSimilarArtists({ ...who, limit: 5 })).toEqual(Option.none())
        expect(yield* agent.getArtistTopSongs({ ...who, count: 5 })).toEqual(Option.none())
      }
    })
  )

  it.scoped("a plugin's error is an error, not a miss, and carries its message", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const plugin = yield* loader.loadFile(fixture("agent-full"), { config: { error: "last.fm is down" } })
      const error = yield* Effect.flip(MetadataAgent.fromPlugin(plugin).getArtistBiography(artist))
      expect(error._tag).toBe("PluginFailedError")
      expect(error.message).toBe("last.fm is down")
    })
  )

  it.scoped("a partial agent answers what it implements and misses the rest", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const agent = MetadataAgent.fromPlugin(yield* loader.loadFile(fixture("agent-partial")))
      expect(yield* agent.getArtistBiography(artist)).toEqual(Option.some("Biography for Björk 東京"))
      expect(yield* agent.getArtistMBID(artist)).toEqual(Option.none())
      expect(yield* agent.getSimilarArtists({ ...artist, limit: 2 })).toEqual(Option.none())
      expect(yield* agent.getAlbumInfo({ name: "a", artist: "b" })).toEqual(Option.none())
    })
  )

  it.scoped("a plugin without the metadata exports misses every call", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const agent = MetadataAgent.fromPlugin(yield* loader.loadFile(fixture("scrobbler")))
      expect(yield* agent.getArtistBiography(artist)).toEqual(Option.none())
    })
  )

  it.scoped("output that is not JSON is a typed output error", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const agent = MetadataAgent.fromPlugin(yield* loader.loadFile(fixture("invalid-json")))
      const error = yield* Effect.flip(agent.getArtistBiography(artist))
      expect(error).toMatchObject({ _tag: "PluginOutputError", reason: "InvalidJson" })
    })
  )
})

describe("MetadataAgent output decoding", () => {
  it.effect("rejects output of the wrong shape with the field named", () =>
    Effect.gen(function* () {
      const agent = MetadataAgent.fromPlugin({
        id: "fake",
        exports: new Set(["nd_get_similar_artists"]),
        call: () => Effect.succeed(new TextEncoder().encode('{"artists":[{"nom":"x"}]}'))
      })
      const error = yield* Effect.flip(agent.getSimilarArtists({ id: "1", name: "a", limit: 1 }))
      expect(error).toMatchObject({ _tag: "PluginOutputError", reason: "InvalidShape" })
      expect(error.message).toContain("name")
    })
  )

  it.effect("a bare JSON null output (a Go plugin's nil response) is a miss", () =>
    Effect.gen(function* () {
      const agent = MetadataAgent.fromPlugin({
        id: "fake",
        exports: new Set(["nd_get_artist_biography"]),
        call: () => Effect.succeed(new TextEncoder().encode("null"))
      })
      expect(yield* agent.getArtistBiography({ id: "1", name: "a" })).toEqual(Option.none())
    })
  )
})

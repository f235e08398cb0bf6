import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { demoCatalogue, wavBytes, wavSize } from "../../../src/server/embedded/DemoLibrary.js"
import { demoLibraryFolder, registerLibrary } from "../../../src/server/embedded/EmbeddedLibrary.js"
import { HostFunctions } from "../../../src/host/HostFunctions.js"
import { Storage } from "../../../src/storage/Storage.js"
import type { AccessList } from "../../../src/host/HostFunctions.js"
import { type LoadedPlugin, PluginLoader } from "../../../src/loader/PluginLoader.js"
import { tempDataFolder, testEngine } from "../../support/engine.js"
import { fixture } from "../../support/fixtures.js"
import { repackage } from "../../support/repackage.js"

const decoder = new TextDecoder()
let loaded = 0

const load = (libraries: AccessList<number> | undefined, filesystem = false) =>
  Effect.flatMap(PluginLoader, (loader) =>
    loader.loadBytes(
      `host-library-${++loaded}`,
      filesystem
        ? repackage("host-library", (m) => ({ ...m, permissions: { library: { filesystem: true } } }))
        : readFileSync(fixture("host-library")),
      { libraries }
    )
  )

const call = (plugin: LoadedPlugin, fn: "getlibrary" | "getalllibraries", request: unknown = {}) =>
  Effect.map(
    plugin.call(`call_library_${fn}`, JSON.stringify(request)),
    (bytes) => JSON.parse(decoder.decode(bytes!)) as Record<string, unknown>
  )

const demoSeconds = demoCatalogue.songs.reduce((total, song) => total + song.seconds, 0)
const demoTotals = {
  totalSongs: demoCatalogue.songs.length,
  totalAlbums: demoCatalogue.albums.length,
  totalArtists: demoCatalogue.artists.length,
  totalSize: demoCatalogue.songs.reduce((total, song) => total + wavSize(song.seconds), 0),
  totalDuration: demoSeconds
}

/** A music folder: 3 songs (one a 2 s WAV) in 2 album folders of 2 artists, plus things not counted. */
const makeMusicFolder = (root: string) => {
  mkdirSync(join(root, "Artist A", "Album X"), { recursive: true })
  mkdirSync(join(root, "Artist B", "Album Y"), { recursive: true })
  mkdirSync(join(root, "a", "b", "c", "d"), { recursive: true })
  writeFileSync(join(root, "Artist A", "Album X", "01 - One.flac"), new Uint8Array(100))
  writeFileSync(join(root, "Artist A", "Album X", "02 - Two.MP3"), new Uint8Array(200))
  writeFileSync(join(root, "Artist A", "Album X", "cover.jpg"), new Uint8Array(50))
  writeFileSync(join(root, "Artist B", "Album Y", "a.wav"), wavBytes(2))
  writeFileSync(join(root, "notes.txt"), "not music")
  // Deeper than Artist/Album/Disc: not scanned.
  writeFileSync(join(root, "a", "b", "c", "d", "deep.mp3"), new Uint8Array(1000))
  return { songs: 3, albums: 2, artists: 2, size: 100 + 200 + wavSize(2), duration: 2 }
}

layer(testEngine({ runtime: { poolSize: 2 } }))("Library", (it) => {
  it.scoped("the demo library is real folders and files, exactly as the catalogue records them", () =>
    Effect.gen(function* () {
      const { dataFolder } = yield* HostFunctions
      const plugin = yield* load("all")
      const { result } = yield* call(plugin, "getalllibraries")
      const demo = (result as Array<Record<string, unknown>>).find((library) => library.id === 1)
      expect(demo).toEqual({ id: 1, name: "Demo Library", lastScanAt: expect.any(Number), ...demoTotals })
      expect(Math.abs((demo!.lastScanAt as number) - Date.now() / 1000)).toBeLessThan(3600)

      const { sql } = yield* Storage
      const songs = yield* sql<{ path: string; size: number; duration: number }>`
        SELECT path, size, duration FROM songs WHERE library_id = 1 ORDER BY id`
      expect(songs).toHaveLength(10)
      const folder = demoLibraryFolder(dataFolder)
      expect(folder).toBe(join(dataFolder, "demo-library"))
      for (const song of songs) {
        const bytes = readFileSync(join(folder, song.path))
        expect(bytes.byteLength, song.path).toBe(song.size)
        expect(bytes.subarray(0, 4).toString("latin1")).toBe("RIFF")
        expect(bytes.subarray(8, 16).toString("latin1")).toBe("WAVEfmt ")
        expect(bytes.readUInt32LE(28) * song.duration + 44).toBe(song.size)
      }
      const albums = yield* sql<{ folder: string }>`SELECT folder FROM albums WHERE library_id = 1`
      expect(albums).toHaveLength(4)
      for (const album of albums) {
        const cover = readFileSync(join(folder, album.folder, "cover.png"))
        expect([...cover.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
      }
      expect(statSync(join(folder, "Nadia Océano", "Tidal Silence", "01 - Low Tide.wav")).isFile()).toBe(true)
    })
  )

  it.scoped(
    "plugins see only the libraries the administrator allowed; another looks like a missing one",
    () =>
      Effect.gen(function* () {
        const music = join(yield* tempDataFolder, "music")
        const expected = makeMusicFolder(music)
        expect(yield* registerLibrary({ id: 7, name: "Extra", path: music })).toBe(7)

        const all = yield* load("all")
        const everything = (yield* call(all, "getalllibraries")).result as Array<Record<string, unknown>>
        expect(everything.map((library) => library.id)).toEqual(expect.arrayContaining([1, 7]))
        expect(everything.find((library) => library.id === 7)).toEqual({
          id: 7,
          name: "Extra",
          lastScanAt: expect.any(Number),
          totalSongs: expected.songs,
          totalAlbums: expected.albums,
          totalArtists: expected.artists,
          totalSize: expected.size,
          totalDuration: expected.duration
        })

        const onlyExtra = yield* load([7])
        expect(yield* call(onlyExtra, "getalllibraries")).toEqual({
          result: [everything.find((library) => library.id === 7)]
        })
        expect(yield* call(onlyExtra, "getlibrary", { id: 7 })).toEqual({
          result: everything.find((library) => library.id === 7)
        })
        // Not allowed and missing answer alike.
        expect(yield* call(onlyExtra, "getlibrary", { id: 1 })).toEqual({ error: "library 1 not found" })
        expect(yield* call(onlyExtra, "getlibrary", { id: 99 })).toEqual({ error: "library 99 not found" })
        expect(((yield* call(onlyExtra, "getlibrary", {})) as { error: string }).error).toContain("id")

        // The default is no library at all: an empty list is omitted.
        const none = yield* load(undefined)
        expect(yield* call(none, "getalllibraries")).toEqual({})
        expect(yield* call(none, "getlibrary", { id: 1 })).toEqual({ error: "library 1 not found" })
      })
  )

  it.scoped("path and mountPoint are given only with filesystem: true", () =>
    Effect.gen(function* () {
      const { dataFolder } = yield* HostFunctions
      const without = yield* load([1])
      const plain = (yield* call(without, "getlibrary", { id: 1 })).result as Record<string, unknown>
      expect(plain).not.toHaveProperty("path")
      expect(plain).not.toHaveProperty("mountPoint")

      const withFs = yield* load([1], true)
      expect(yield* call(withFs, "getlibrary", { id: 1 })).toEqual({
        result: { ...plain, path: demoLibraryFolder(dataFolder), mountPoint: "/libraries/1" }
      })
      expect(yield* call(withFs, "getalllibraries")).toEqual({
        result: [{ ...plain, path: demoLibraryFolder(dataFolder), mountPoint: "/libraries/1" }]
      })
    })
  )

  it.scoped("registerLibrary: requested IDs, refreshes, the next free ID, and its refusals", () =>
    Effect.gen(function* () {
      const base = yield* tempDataFolder
      const first = join(base, "first")
      const second = join(base, "second")
      makeMusicFolder(first)
      mkdirSync(second)
      writeFileSync(join(second, "song.ogg"), new Uint8Array(10))

      expect(yield* registerLibrary({ id: 20, path: first })).toBe(20)
      writeFileSync(join(first, "Artist A", "Album X", "03 - Three.opus"), new Uint8Array(5))
      // The same ID again refreshes the statistics.
      expect(yield* registerLibrary({ id: 20, name: "First", path: first })).toBe(20)
      const { sql } = yield* Storage
      const [row] = yield* sql<{ name: string; total_songs: number }>`
        SELECT name, total_songs FROM library_view WHERE id = 20`
      expect(row).toEqual({ name: "First", total_songs: 4 })

      const next = yield* registerLibrary({ path: second })
      expect(next).toBeGreaterThan(20)
      // Without an ID, the same path is the same library.
      expect(yield* registerLibrary({ path: second })).toBe(next)
      const [named] = yield* sql<{ name: string }>`SELECT name FROM libraries WHERE id = ${next}`
      expect(named?.name).toBe("second")

      const refusals = yield* Effect.all(
        [
          registerLibrary({ id: 1, path: first }),
          registerLibrary({ path: join(base, "nowhere") }),
          registerLibrary({ path: join(second, "song.ogg") }),
          registerLibrary({ id: 0, path: first }),
          registerLibrary({ id: 1.5, path: first })
        ].map(Effect.flip)
      )
      expect(refusals.map((error) => error.reason)).toEqual([
        "IdTaken",
        "NotADirectory",
        "NotADirectory",
        "InvalidId",
        "InvalidId"
      ])
      expect(refusals[0]!.message).toContain("demo library")
    })
  )

  it.scoped("without the permission the functions cannot be imported", () =>
    Effect.gen(function* () {
      const loader = yield* PluginLoader
      const bytes = repackage("host-library", (m) => ({ ...m, permissions: {} }))
      const error = yield* Effect.flip(loader.loadBytes("host-library-denied", bytes))
      expect(error).toMatchObject({ _tag: "PluginLoadError", reason: "Link", permission: "library" })
    })
  )
})

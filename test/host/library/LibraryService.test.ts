import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type { PluginContext } from "../../../src/host/HostFunctions.js"
import type { Library } from "../../../src/server/LibraryCatalog.js"
import * as LibraryService from "../../../src/host/library/LibraryService.js"
import { decodeManifest } from "../../../src/manifest/Manifest.js"

const libraries: ReadonlyArray<Library> = [1, 2, 3].map((id) => ({
  id,
  name: `Library ${id}`,
  path: `/srv/music/${id}`,
  lastScanAt: 1_700_000_000,
  totalSongs: 0,
  totalAlbums: 0,
  totalArtists: 0,
  totalSize: 0,
  totalDuration: 0
}))

const contextFor = (permissions: Record<string, unknown>, allowed: PluginContext["libraries"]) =>
  Effect.map(
    decodeManifest(JSON.stringify({ name: "p", author: "a", version: "1", permissions })),
    (manifest): PluginContext => ({
      pluginId: "p",
      manifest,
      config: {},
      dataFolder: "/tmp/unused",
      users: [],
      libraries: allowed,
      callPlugin: () => Effect.succeed(null)
    })
  )

describe("LibraryService.mounts", () => {
  const provider = LibraryService.provider({ list: Effect.succeed(libraries) })

  it.effect("mounts every allowed library at /libraries/<id> with filesystem: true", () =>
    Effect.gen(function* () {
      const mounts = provider.mounts!
      expect(yield* mounts(yield* contextFor({ library: { filesystem: true } }, "all"))).toEqual([
        { guestPath: "/libraries/1", hostPath: "/srv/music/1" },
        { guestPath: "/libraries/2", hostPath: "/srv/music/2" },
        { guestPath: "/libraries/3", hostPath: "/srv/music/3" }
      ])
      expect(yield* mounts(yield* contextFor({ library: { filesystem: true } }, [3, 1, 9]))).toEqual([
        { guestPath: "/libraries/1", hostPath: "/srv/music/1" },
        { guestPath: "/libraries/3", hostPath: "/srv/music/3" }
      ])
      expect(yield* mounts(yield* contextFor({ library: { filesystem: true } }, []))).toEqual([])
    })
  )

  it.effect("mounts nothing without filesystem: true", () =>
    Effect.gen(function* () {
      const mounts = provider.mounts!
      expect(yield* mounts(yield* contextFor({ library: {} }, "all"))).toEqual([])
      expect(yield* mounts(yield* contextFor({ library: { filesystem: false } }, "all"))).toEqual([])
    })
  )
})

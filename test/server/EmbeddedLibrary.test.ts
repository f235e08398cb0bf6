import { describe, expect, it } from "@effect/vitest"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { demoCatalogue } from "../../src/server/embedded/DemoLibrary.js"
import * as EmbeddedDatabase from "../../src/server/embedded/EmbeddedDatabase.js"
import * as EmbeddedLibrary from "../../src/server/embedded/EmbeddedLibrary.js"
import { LibraryCatalog } from "../../src/server/LibraryCatalog.js"
import { UserDirectory } from "../../src/server/UserDirectory.js"
import { Storage } from "../../src/storage/Storage.js"
import { tempDataFolder } from "../support/engine.js"
import { storageLayer } from "../support/storage.js"

const listWith = (dataFolder: string) =>
  Effect.flatMap(LibraryCatalog, (catalog) => catalog.list).pipe(
    Effect.provide(
      EmbeddedLibrary.layer({ dataFolder }).pipe(
        Layer.provide(storageLayer(dataFolder)),
        Layer.provide(NodeFileSystem.layer)
      )
    )
  )

describe("EmbeddedLibrary", () => {
  it.scoped("a restart keeps the catalogue and restores missing demo files, touching nothing else", () =>
    Effect.gen(function* () {
      const dataFolder = yield* tempDataFolder
      const first = yield* listWith(dataFolder)
      expect(first.map((library) => library.id)).toEqual([1])
      const folder = EmbeddedLibrary.demoLibraryFolder(dataFolder)
      const song = demoCatalogue.songs[4]!
      const kept = join(folder, demoCatalogue.songs[0]!.path)
      const keptTime = statSync(kept).mtimeMs
      rmSync(join(folder, song.path))
      // A file of the wrong size (a half-written one) is rewritten too.
      writeFileSync(join(folder, demoCatalogue.songs[1]!.path), "truncated")

      const second = yield* listWith(dataFolder)
      expect(second).toEqual(first)
      expect(statSync(join(folder, song.path)).size).toBe(song.size)
      expect(statSync(join(folder, demoCatalogue.songs[1]!.path)).size).toBe(demoCatalogue.songs[1]!.size)
      expect(statSync(kept).mtimeMs).toBe(keptTime)
    })
  )

  it.scoped("builds alongside EmbeddedDatabase on one storage, as Engine.layer does", () =>
    Effect.gen(function* () {
      const dataFolder = yield* tempDataFolder
      const both = Layer.merge(EmbeddedDatabase.layer(), EmbeddedLibrary.layer({ dataFolder })).pipe(
        Layer.provideMerge(storageLayer(dataFolder)),
        Layer.provide(NodeFileSystem.layer)
      )
      const [users, libraries, migrations] = yield* Effect.gen(function* () {
        const directory = yield* UserDirectory
        const catalog = yield* LibraryCatalog
        const { sql } = yield* Storage
        return [
          yield* directory.list,
          yield* catalog.list,
          yield* sql<{ name: string }>`SELECT name FROM ndp_schema_migrations ORDER BY migration_id`
        ] as const
      }).pipe(Effect.provide(both))
      expect(users.map((user) => user.userName)).toEqual(["admin", "alice", "bob"])
      expect(libraries.map((library) => library.totalSongs)).toEqual([10])
      expect(migrations.map((row) => row.name)).toContain("demo_library")
    })
  )

  it.scoped("scanFolder reports a file that is not a folder", () =>
    Effect.gen(function* () {
      const dataFolder = yield* tempDataFolder
      const file = join(dataFolder, "file.mp3")
      writeFileSync(file, "x")
      const error = yield* Effect.flip(EmbeddedLibrary.scanFolder(file)).pipe(
        Effect.provide(NodeFileSystem.layer)
      )
      expect(error.reason).toBe("NotADirectory")
      expect(readFileSync(file, "utf8")).toBe("x")
    })
  )
})

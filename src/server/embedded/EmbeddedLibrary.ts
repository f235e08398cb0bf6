/**
 * The embedded library catalogue and Subsonic router, used when the embedding server supplies
 * none. The catalogue lives in the engine's storage (`CatalogSchema`) and starts with a demo
 * library of real files under `<dataFolder>/demo-library/`; the server may add folders with
 * `registerLibrary`.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { dirname, join, resolve } from "node:path"
import { Storage } from "../../storage/Storage.js"
import { LibraryCatalog } from "../LibraryCatalog.js"
import { SubsonicRouter } from "../SubsonicRouter.js"
import { makeCatalogue } from "./CatalogQueries.js"
import { DEMO_FOLDER, demoFiles } from "./DemoLibrary.js"
import { EmbeddedLibraryError } from "./EmbeddedLibraryError.js"
import { makeRouter } from "./EmbeddedSubsonic.js"

export { registerLibrary, type RegisterLibraryOptions } from "./CatalogQueries.js"
export { EmbeddedLibraryError } from "./EmbeddedLibraryError.js"
export { scanFolder } from "./FolderScan.js"

/** Settings of the embedded catalogue. */
export interface EmbeddedLibraryOptions {
  /** The folder holding `demo-library/`. */
  readonly dataFolder: string
}

/** Where the demo library's files are. */
export const demoLibraryFolder = (dataFolder: string): string => join(resolve(dataFolder), DEMO_FOLDER)

/**
 * Writes every demo file that is missing or has the wrong size (idempotent: a complete demo
 * library is left untouched). Each file is written under a temporary name first, so a crash never
 * leaves half a file that looks complete.
 */
export const ensureDemoFiles = Effect.fn("EmbeddedLibrary.ensureDemoFiles")(function* (folder: string) {
  const fs = yield* FileSystem.FileSystem
  for (const file of demoFiles()) {
    const target = join(folder, ...file.path.split("/"))
    const bytes = file.bytes()
    const existing = yield* Effect.option(fs.stat(target))
    if (
      existing._tag === "Some" &&
      existing.value.type === "File" &&
      Number(existing.value.size) === bytes.byteLength
    )
      continue
    const temporary = `${target}.${process.pid}.tmp`
    yield* fs.makeDirectory(dirname(target), { recursive: true }).pipe(
      Effect.zipRight(fs.writeFile(temporary, bytes)),
      Effect.zipRight(fs.rename(temporary, target)),
      Effect.mapError(
        (cause) =>
          new EmbeddedLibraryError({
            reason: "Scan",
            message: `cannot write the demo library in ${folder} (${cause.message}): check that the data folder is writable`,
            cause
          })
      )
    )
  }
})

/**
 * Makes sure the demo library's files exist, unless the demo library was replaced by the user's own
 * (`registerLibrary` with `replaceDemo`).
 */
export const prepare = Effect.fn("EmbeddedLibrary.prepare")(function* (dataFolder: string) {
  const { sql } = yield* Storage
  const demo = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM libraries WHERE kind = 'demo'`.pipe(
    Effect.mapError(
      (cause) =>
        new EmbeddedLibraryError({
          reason: "Database",
          message: `catalogue read failed: ${cause.message}`,
          cause
        })
    )
  )
  if ((demo[0]?.n ?? 0) > 0) yield* ensureDemoFiles(demoLibraryFolder(dataFolder))
})

/** The embedded `LibraryCatalog` and `SubsonicRouter` over the engine's storage. */
export const layer = (
  options: EmbeddedLibraryOptions
): Layer.Layer<LibraryCatalog | SubsonicRouter, EmbeddedLibraryError, Storage | FileSystem.FileSystem> => {
  const dataFolder = resolve(options.dataFolder)
  return Layer.effectContext(
    Effect.gen(function* () {
      const storage = yield* Storage
      const fs = yield* FileSystem.FileSystem
      yield* prepare(dataFolder)
      const catalogue = makeCatalogue(storage, dataFolder)
      return Context.make(LibraryCatalog, { list: catalogue.libraries }).pipe(
        Context.add(SubsonicRouter, makeRouter(catalogue, fs))
      )
    })
  )
}

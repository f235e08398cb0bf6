/**
 * The embedded library catalogue and Subsonic router, used when the embedding server supplies
 * none. The catalogue lives in `<dataFolder>/ndp.db` (its own migrations, table
 * `ndp_library_migrations`) and starts with a demo library of real files under
 * `<dataFolder>/demo-library/`; the server may add folders with `registerLibrary`.
 *
 * The database work happens on first use, not while the layer is built: `Engine.layer` builds this
 * layer concurrently with `EmbeddedDatabase`, whose migrations run on another connection to the
 * same file, and two writers interleaving there could make one of them skip its migrations.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { mkdirSync } from "node:fs"
import { mkdir, rename, stat, writeFile } from "node:fs/promises"
import { dirname, join, resolve } from "node:path"
import { LibraryCatalog } from "../LibraryCatalog.js"
import { SubsonicRouter } from "../SubsonicRouter.js"
import { DEMO_FOLDER, demoFiles } from "./DemoLibrary.js"
import { type Catalogue, EmbeddedLibraryError, makeCatalogue, migrate } from "./EmbeddedCatalog.js"
import { makeRouter } from "./EmbeddedSubsonic.js"

export {
  EmbeddedLibraryError,
  registerLibrary,
  type RegisterLibraryOptions,
  scanFolder
} from "./EmbeddedCatalog.js"

/** Settings of the embedded catalogue. */
export interface EmbeddedLibraryOptions {
  readonly dataFolder: string
}

/** Where the demo library's files are. */
export const demoLibraryFolder = (dataFolder: string): string => join(resolve(dataFolder), DEMO_FOLDER)

/**
 * Writes every demo file that is missing or has the wrong size (idempotent: a complete demo
 * library is left untouched). Each file is written under a temporary name first, so a crash never
 * leaves half a file that looks complete.
 */
export const ensureDemoFiles = (folder: string): Effect.Effect<void, EmbeddedLibraryError> =>
  Effect.tryPromise({
    try: async () => {
      for (const file of demoFiles()) {
        const target = join(folder, ...file.path.split("/"))
        const bytes = file.bytes()
        const existing = await stat(target).catch(() => undefined)
        if (existing?.isFile() === true && existing.size === bytes.byteLength) continue
        await mkdir(dirname(target), { recursive: true })
        const temporary = `${target}.${process.pid}.tmp`
        await writeFile(temporary, bytes)
        await rename(temporary, target)
      }
    },
    catch: (cause) =>
      new EmbeddedLibraryError({
        reason: "Scan",
        message: `cannot write the demo library in ${folder}: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })
  })

/**
 * Migrates the catalogue and makes sure the demo library's files exist, unless the demo library
 * was replaced by the user's own (`registerLibrary` with `replaceDemo`).
 */
export const prepare = (dataFolder: string): Effect.Effect<void, EmbeddedLibraryError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    yield* migrate
    const sql = yield* SqlClient.SqlClient
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
  }).pipe(Effect.withSpan("EmbeddedLibrary.prepare"))

const sqliteLayer = (dataFolder: string) =>
  Layer.unwrapEffect(
    Effect.sync(() => {
      mkdirSync(dataFolder, { recursive: true })
      return SqliteClient.layer({ filename: join(dataFolder, "ndp.db") })
    })
  )

/** Runs `ready` (once, shared) before every query of `catalogue`. */
const guard = (catalogue: Catalogue, ready: Effect.Effect<void>): Catalogue => ({
  libraries: Effect.zipRight(ready, catalogue.libraries),
  artists: (filter) => Effect.zipRight(ready, catalogue.artists(filter)),
  albums: (filter) => Effect.zipRight(ready, catalogue.albums(filter)),
  songs: (filter) => Effect.zipRight(ready, catalogue.songs(filter)),
  genres: Effect.zipRight(ready, catalogue.genres)
})

/** The embedded `LibraryCatalog` and `SubsonicRouter` over `<dataFolder>/ndp.db`. */
export const layer = (options: EmbeddedLibraryOptions): Layer.Layer<LibraryCatalog | SubsonicRouter> => {
  const dataFolder = resolve(options.dataFolder)
  return Layer.effectContext(
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const ready = yield* Effect.cached(
        prepare(dataFolder).pipe(
          // Another connection to the file may hold its write lock for a moment.
          Effect.retry(Schedule.intersect(Schedule.exponential("20 millis"), Schedule.recurs(5))),
          Effect.provideService(SqlClient.SqlClient, sql),
          Effect.orDie
        )
      )
      const catalogue = guard(makeCatalogue(sql, dataFolder), ready)
      return Context.make(LibraryCatalog, { list: catalogue.libraries }).pipe(
        Context.add(SubsonicRouter, makeRouter(catalogue))
      )
    })
  ).pipe(Layer.provide(sqliteLayer(dataFolder)), Layer.orDie)
}

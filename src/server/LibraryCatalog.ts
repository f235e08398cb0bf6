/**
 * The server's music libraries, as the Library host service sees them. The embedding server
 * provides its own catalogue as a layer; the engine ships an embedded default with a demo library.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"

/** A music library: a folder of the server's with its statistics. */
export interface Library {
  readonly id: number
  readonly name: string
  /**
   * The library's folder on the server, absolute (shown to plugins only with `filesystem: true`, and
   * then mounted read-only at `/libraries/<id>`).
   */
  readonly path: string
  /** Unix seconds of the last scan. */
  readonly lastScanAt: number
  readonly totalSongs: number
  readonly totalAlbums: number
  readonly totalArtists: number
  /** Bytes. */
  readonly totalSize: number
  /** Seconds. */
  readonly totalDuration: number
}

/** The server's libraries (supplied by the embedding server, or `EmbeddedLibrary`). */
export class LibraryCatalog extends Context.Tag("ndp-engine/LibraryCatalog")<
  LibraryCatalog,
  {
    /** Every library of the server, ordered by ID. */
    readonly list: Effect.Effect<ReadonlyArray<Library>>
  }
>() {}

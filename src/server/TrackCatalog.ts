/**
 * What the server supplies for the Matcher host service: lookups of its songs by ID, MusicBrainz
 * recording ID and ISRC, a candidate search by title, and a user's stars, ratings and play counts.
 * The engine does the matching itself (order of keys, fuzzy scoring, the plugin's libraries), so
 * every server matches the same way. The embedding server provides its own as a layer;
 * `embedded/EmbeddedTrackCatalog` answers over the demo catalogue.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"

/** A song of the server's catalogue. */
export interface CatalogTrack {
  readonly id: string
  readonly libraryId: number
  readonly title: string
  readonly artist: string
  readonly album: string
  readonly durationMs: number
  /** MusicBrainz recording ID, when the server knows it. */
  readonly mbid?: string | undefined
  readonly isrc?: string | undefined
  /** The file's path relative to its library's folder (shown only with `library.filesystem`). */
  readonly path: string
}

/** One user's data about a song. */
export interface UserTrackData {
  readonly starred: boolean
  /** 0 (none) to 5. */
  readonly rating: number
  readonly playCount: number
}

/** The libraries a lookup may see: every one, or a list of IDs. */
export type LibraryScope = "all" | ReadonlyArray<number>

/** The server's songs, as the matcher searches them (supplied by the server, or the embedded default). */
export class TrackCatalog extends Context.Tag("ndp-engine/TrackCatalog")<
  TrackCatalog,
  {
    /** The songs whose `key` is one of `values`, within `libraries` (any order, any number per value). */
    readonly find: (
      key: "id" | "mbid" | "isrc",
      values: ReadonlyArray<string>,
      libraries: LibraryScope
    ) => Effect.Effect<ReadonlyArray<CatalogTrack>>
    /**
     * Candidates for a fuzzy match: songs within `libraries` whose title contains `title`
     * (case-insensitive), at most `limit`. The engine scores them; a server may return more loosely.
     */
    readonly search: (
      title: string,
      libraries: LibraryScope,
      limit: number
    ) => Effect.Effect<ReadonlyArray<CatalogTrack>>
    /** `username`'s data about `ids`; `None` when the server has no such user. Songs without data may be left out. */
    readonly userData: (
      username: string,
      ids: ReadonlyArray<string>
    ) => Effect.Effect<Option.Option<ReadonlyMap<string, UserTrackData>>>
  }
>() {}

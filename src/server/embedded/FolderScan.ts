/**
 * The shallow scan of a music folder registered with the embedded catalogue: counts, not tags.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import { join } from "node:path"
import { wavDuration } from "./DemoLibrary.js"
import { EmbeddedLibraryError } from "./EmbeddedLibraryError.js"

/** File name extensions counted as songs when a registered folder is scanned. */
export const audioExtensions: ReadonlySet<string> = new Set([
  "aac",
  "aif",
  "aiff",
  "ape",
  "dff",
  "dsf",
  "flac",
  "m4a",
  "mp3",
  "mp4",
  "mpc",
  "oga",
  "ogg",
  "opus",
  "wav",
  "wma",
  "wv"
])

/** How far a registration scan looks: Artist/Album/Disc below the library folder. */
const SCAN_MAX_DEPTH = 3
/** How many directory entries a registration scan reads at most. */
const SCAN_MAX_ENTRIES = 20_000

/** What a shallow scan of a folder found. */
export interface ScanStats {
  readonly songs: number
  readonly albums: number
  readonly artists: number
  readonly size: number
  readonly duration: number
}

/** The first 44 bytes of a file (a WAV header), or none when it cannot be read. */
const readHeader = (fs: FileSystem.FileSystem, file: string) =>
  Effect.scoped(
    Effect.flatMap(fs.open(file, { flag: "r" }), (handle) => {
      const buffer = new Uint8Array(44)
      return Effect.map(handle.read(buffer), (read) => buffer.subarray(0, Number(read)))
    })
  ).pipe(Effect.orElseSucceed(() => new Uint8Array(0)))

/**
 * Counts the audio files of a folder without reading tags: songs are files with an audio
 * extension, albums the folders holding them, artists the top-level folders holding them. WAV
 * durations come from their header; other formats count 0 seconds. Symbolic links are not followed;
 * entries that cannot be read are skipped.
 */
export const scanFolder = Effect.fn("EmbeddedLibrary.scanFolder")(function* (root: string) {
  const fs = yield* FileSystem.FileSystem
  const info = yield* Effect.option(fs.stat(root))
  if (info._tag === "None" || info.value.type !== "Directory") {
    return yield* new EmbeddedLibraryError({
      reason: "NotADirectory",
      message: `${root} is not a directory`
    })
  }
  let songs = 0
  let size = 0
  let duration = 0
  let entries = 0
  const albums = new Set<string>()
  const artists = new Set<string>()
  const queue: Array<{ readonly dir: string; readonly parts: ReadonlyArray<string> }> = [
    { dir: root, parts: [] }
  ]
  for (let next = queue.shift(); next !== undefined && entries < SCAN_MAX_ENTRIES; next = queue.shift()) {
    const listing = yield* fs.readDirectory(next.dir).pipe(Effect.orElseSucceed((): Array<string> => []))
    for (const name of listing) {
      if (++entries > SCAN_MAX_ENTRIES) break
      const full = join(next.dir, name)
      // A link reads as its target through `stat`; `readLink` succeeds on links alone.
      if (yield* Effect.isSuccess(fs.readLink(full))) continue
      const entry = yield* Effect.option(fs.stat(full))
      if (entry._tag === "None") continue
      if (entry.value.type === "Directory") {
        if (next.parts.length < SCAN_MAX_DEPTH) queue.push({ dir: full, parts: [...next.parts, name] })
        continue
      }
      const extension = name.includes(".") ? (name.split(".").pop() ?? "").toLowerCase() : ""
      if (entry.value.type !== "File" || !audioExtensions.has(extension)) continue
      const fileSize = Number(entry.value.size)
      songs++
      size += fileSize
      if (extension === "wav") duration += wavDuration(yield* readHeader(fs, full), fileSize)
      albums.add(next.parts.join("/"))
      const artist = next.parts[0]
      if (artist !== undefined) artists.add(artist)
    }
  }
  return { songs, albums: albums.size, artists: artists.size, size, duration } satisfies ScanStats
})

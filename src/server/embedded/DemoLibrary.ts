/**
 * The demo library the embedded catalogue starts with: three artists, four albums and ten songs,
 * written as real files (tiny silent WAVs and a small PNG cover per album) so that streaming and
 * read-only filesystem access have something true to show. Everything here is deterministic: the
 * same definitions give the same bytes, so the catalogue can record sizes before the files exist.
 */
import { crc32 } from "../../package/Zip.js"
import { deflateSync } from "node:zlib"

/** The library ID of the demo library (Navidrome's first library is 1 as well). */
export const DEMO_LIBRARY_ID = 1

/** The demo library's folder name under the data folder. */
export const DEMO_FOLDER = "demo-library"

/** The demo's audio format is 8 kHz, 8-bit, mono PCM (8,000 bytes a second, 64 kbit/s): samples a second. */
export const WAV_SAMPLE_RATE = 8000
/** Bits per sample of the demo's audio. */
export const WAV_BIT_DEPTH = 8
/** Channels of the demo's audio. */
export const WAV_CHANNELS = 1
const WAV_HEADER_BYTES = 44

/** One song of the demo, with where it lives relative to the library folder. */
export interface DemoSong {
  readonly id: string
  readonly albumId: string
  readonly artistId: string
  readonly title: string
  readonly track: number
  readonly seconds: number
  /** Relative to the library folder, `/`-separated. */
  readonly path: string
  readonly size: number
}

/** One album of the demo, with its folder relative to the library folder. */
export interface DemoAlbum {
  readonly id: string
  readonly artistId: string
  readonly name: string
  readonly year: number
  readonly genre: string
  /** Unix seconds; decides the order of `newest`. */
  readonly createdAt: number
  /** Relative to the library folder. */
  readonly folder: string
  readonly colour: readonly [number, number, number]
}

/** One artist of the demo. */
export interface DemoArtist {
  readonly id: string
  readonly name: string
}

interface AlbumDefinition {
  readonly name: string
  readonly year: number
  readonly genre: string
  readonly colour: readonly [number, number, number]
  readonly songs: ReadonlyArray<readonly [title: string, seconds: number]>
}

const definitions: ReadonlyArray<{
  readonly artist: string
  readonly albums: ReadonlyArray<AlbumDefinition>
}> = [
  {
    artist: "The Quiet Ensemble",
    albums: [
      {
        name: "Morning Rests",
        year: 2019,
        genre: "Ambient",
        colour: [233, 196, 106],
        songs: [
          ["Dawn Fermata", 3],
          ["Breakfast Pause", 2],
          ["Long Tacet", 4]
        ]
      },
      {
        name: "Evening Rests",
        year: 2021,
        genre: "Ambient",
        colour: [42, 157, 143],
        songs: [
          ["Dusk Fermata", 2],
          ["Last Light", 3]
        ]
      }
    ]
  },
  {
    artist: "Nadia Océano",
    albums: [
      {
        name: "Tidal Silence",
        year: 2020,
        genre: "Electronic",
        colour: [38, 70, 83],
        songs: [
          ["Low Tide", 2],
          ["Still Water", 3],
          ["Undertow", 1]
        ]
      }
    ]
  },
  {
    artist: "Zero Crossing",
    albums: [
      {
        name: "Flat Line",
        year: 2022,
        genre: "Minimal",
        colour: [231, 111, 81],
        songs: [
          ["Zero", 1],
          ["One Sample", 2]
        ]
      }
    ]
  }
]

/** 2024-01-01T00:00:00Z: albums are "added" a day apart from here, in definition order. */
const ADDED_BASE = 1_704_067_200

/** The size in bytes of a demo WAV of `seconds` seconds. */
export const wavSize = (seconds: number): number =>
  WAV_HEADER_BYTES + seconds * WAV_SAMPLE_RATE * (WAV_BIT_DEPTH / 8) * WAV_CHANNELS

/** The demo catalogue: artists, albums and songs with stable IDs (`ar-N`, `al-N`, `mf-N`). */
export const demoCatalogue = (() => {
  const artists: Array<DemoArtist> = []
  const albums: Array<DemoAlbum> = []
  const songs: Array<DemoSong> = []
  for (const definition of definitions) {
    const artistId = `ar-${artists.length + 1}`
    artists.push({ id: artistId, name: definition.artist })
    for (const album of definition.albums) {
      const albumId = `al-${albums.length + 1}`
      const folder = `${definition.artist}/${album.name}`
      albums.push({
        id: albumId,
        artistId,
        name: album.name,
        year: album.year,
        genre: album.genre,
        createdAt: ADDED_BASE + albums.length * 86_400,
        folder,
        colour: album.colour
      })
      album.songs.forEach(([title, seconds], index) => {
        const track = index + 1
        songs.push({
          id: `mf-${songs.length + 1}`,
          albumId,
          artistId,
          title,
          track,
          seconds,
          path: `${folder}/${String(track).padStart(2, "0")} - ${title}.wav`,
          size: wavSize(seconds)
        })
      })
    }
  }
  return { artists, albums, songs } as const
})()

/** The file name of every demo album's cover. */
export const COVER_FILE = "cover.png"

/** A canonical 44-byte-header PCM WAV of `seconds` of silence in the demo format. */
export const wavBytes = (seconds: number): Uint8Array => {
  const size = wavSize(seconds)
  const bytes = new Uint8Array(size)
  const view = new DataView(bytes.buffer)
  const ascii = (offset: number, text: string) => {
    for (let i = 0; i < text.length; i++) bytes[offset + i] = text.charCodeAt(i)
  }
  const byteRate = WAV_SAMPLE_RATE * (WAV_BIT_DEPTH / 8) * WAV_CHANNELS
  ascii(0, "RIFF")
  view.setUint32(4, size - 8, true)
  ascii(8, "WAVE")
  ascii(12, "fmt ")
  view.setUint32(16, 16, true)
  view.setUint16(20, 1, true) // PCM
  view.setUint16(22, WAV_CHANNELS, true)
  view.setUint32(24, WAV_SAMPLE_RATE, true)
  view.setUint32(28, byteRate, true)
  view.setUint16(32, (WAV_BIT_DEPTH / 8) * WAV_CHANNELS, true)
  view.setUint16(34, WAV_BIT_DEPTH, true)
  ascii(36, "data")
  view.setUint32(40, size - WAV_HEADER_BYTES, true)
  // 8-bit PCM is unsigned: silence is the midpoint, not zero.
  bytes.fill(0x80, WAV_HEADER_BYTES)
  return bytes
}

/**
 * The duration in whole seconds of a canonical PCM WAV from its first 44 bytes and its size, or 0
 * when the header is not one we understand.
 */
export const wavDuration = (header: Uint8Array, fileSize: number): number => {
  if (header.byteLength < WAV_HEADER_BYTES) return 0
  const text = (offset: number) => String.fromCharCode(...header.subarray(offset, offset + 4))
  if (text(0) !== "RIFF" || text(8) !== "WAVE" || text(12) !== "fmt ") return 0
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength)
  const byteRate = view.getUint32(28, true)
  return byteRate > 0 ? Math.round((fileSize - WAV_HEADER_BYTES) / byteRate) : 0
}

const pngChunk = (type: string, data: Uint8Array): Uint8Array => {
  const chunk = new Uint8Array(12 + data.byteLength)
  const view = new DataView(chunk.buffer)
  view.setUint32(0, data.byteLength)
  for (let i = 0; i < 4; i++) chunk[4 + i] = type.charCodeAt(i)
  chunk.set(data, 8)
  view.setUint32(8 + data.byteLength, crc32(chunk.subarray(4, 8 + data.byteLength)))
  return chunk
}

const COVER_PIXELS = 16

/** A small solid-colour PNG cover (16×16, RGB). */
export const pngBytes = (colour: readonly [number, number, number]): Uint8Array => {
  const header = new Uint8Array(13)
  const view = new DataView(header.buffer)
  view.setUint32(0, COVER_PIXELS)
  view.setUint32(4, COVER_PIXELS)
  header.set([8, 2, 0, 0, 0], 8) // 8-bit depth, truecolour, deflate, no filter, no interlace
  const row = 1 + COVER_PIXELS * 3
  const raw = new Uint8Array(row * COVER_PIXELS)
  for (let y = 0; y < COVER_PIXELS; y++) {
    for (let x = 0; x < COVER_PIXELS; x++) raw.set(colour, y * row + 1 + x * 3)
  }
  const parts = [
    Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", header),
    pngChunk("IDAT", new Uint8Array(deflateSync(raw))),
    pngChunk("IEND", new Uint8Array(0))
  ]
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.byteLength
  }
  return out
}

/** Every file of the demo library: its path relative to the library folder and its bytes. */
export const demoFiles = (): ReadonlyArray<{ readonly path: string; readonly bytes: () => Uint8Array }> => [
  ...demoCatalogue.songs.map((song) => ({ path: song.path, bytes: () => wavBytes(song.seconds) })),
  ...demoCatalogue.albums.map((album) => ({
    path: `${album.folder}/${COVER_FILE}`,
    bytes: () => pngBytes(album.colour)
  }))
]

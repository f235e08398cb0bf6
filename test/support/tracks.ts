/** A track as the host describes it to scrobblers, for tests. */
import type * as Scrobbler from "../../src/capabilities/Scrobbler.js"

export const sampleTrack: Scrobbler.TrackInfo = {
  id: "mf-1",
  title: "Jóga",
  album: "Homogenic",
  artist: "Björk",
  albumArtist: "Björk",
  artists: [{ name: "Björk" }],
  albumArtists: [{ name: "Björk" }],
  duration: 305,
  trackNumber: 3,
  discNumber: 1
}

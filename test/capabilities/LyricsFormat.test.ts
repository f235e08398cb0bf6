import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as LyricsFormat from "../../src/capabilities/LyricsFormat.js"

const parsed = (lang: string | undefined, text: string) => {
  const result = LyricsFormat.parse(lang, text)
  if (Either.isLeft(result)) throw new Error(`expected lyrics, got: ${result.left}`)
  return result.right
}

describe("LyricsFormat", () => {
  it("LRC: timestamps, several stamps on a line, tags, word stamps, and the offset", () => {
    const lyrics = parsed(
      "eng",
      "[ar:Björk]\n[ti:Jóga]\n[offset:+500]\n[00:05.00][00:20.00]That <00:05.50>happen\n[00:01.5]All these\nno stamp here\n"
    )
    expect(lyrics).toEqual({
      lang: "eng",
      synced: true,
      format: "lrc",
      offsetMs: 500,
      displayArtist: "Björk",
      displayTitle: "Jóga",
      lines: [
        { startMs: 1000, text: "All these" },
        { startMs: 4500, text: "That happen" },
        { startMs: 19500, text: "That happen" }
      ]
    })
  })

  it("SRT: cues with start and end", () => {
    const lyrics = parsed(
      "en",
      "1\r\n00:00:01,500 --> 00:00:04,000\r\nAll these\r\n\r\n2\n01:00:05.000 --> 01:00:07,25\n<i>That</i>\nhappen\n"
    )
    expect(lyrics.format).toBe("srt")
    expect(lyrics.lines).toEqual([
      { startMs: 1500, endMs: 4000, text: "All these" },
      { startMs: 3_605_000, endMs: 3_607_250, text: "That\nhappen" }
    ])
  })

  it("TTML: paragraphs with clock and offset times, markup and entities; the document language fills a missing one", () => {
    const text =
      '<?xml version="1.0"?><tt xml:lang="is"><body><div><p begin="00:01.5" end="4s">All <span>these</span><br/>accidents</p>' +
      "<p begin='1500ms'>Tom &amp; &#x4A;erry</p></div></body></tt>"
    const lyrics = parsed(undefined, text)
    expect(lyrics).toEqual({
      lang: "is",
      synced: true,
      format: "ttml",
      lines: [
        { startMs: 1500, endMs: 4000, text: "All these\naccidents" },
        { startMs: 1500, text: "Tom & Jerry" }
      ]
    })
    expect(parsed("en", text).lang).toBe("en")
  })

  it("plain text: lines without times; a missing or blank language is xxx", () => {
    expect(parsed("  ", "\nOne\nTwo  \n\n")).toEqual({
      lang: "xxx",
      synced: false,
      format: "plain",
      lines: [{ text: "One" }, { text: "Two" }]
    })
  })

  it("unparseable texts are Left with the reason", () => {
    expect(LyricsFormat.parse("en", "<tt><body><p>never closed")).toEqual(
      Either.left("the TTML document has no closing </tt>")
    )
    expect(Either.isLeft(LyricsFormat.parse("en", '<tt><p begin="soon">x</p></tt>'))).toBe(true)
    expect(
      Either.isLeft(LyricsFormat.parse("en", "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\nnot a time"))
    ).toBe(true)
    const tooMany = Array.from({ length: LyricsFormat.maxLines + 1 }, (_, i) => `line ${i}`).join("\n")
    expect(LyricsFormat.parse(undefined, tooMany)).toEqual(
      Either.left(`it has more than ${LyricsFormat.maxLines} lines`)
    )
  })

  it("empty text parses to no lines", () => {
    expect(parsed(undefined, "").lines).toEqual([])
  })
})

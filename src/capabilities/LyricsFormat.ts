/**
 * Lyrics text as plugins send it (LRC with timestamps, SRT, TTML or plain text), parsed into lines
 * with optional times. The format is sniffed from the text itself: a plugin only says the language.
 */
import * as Either from "effect/Either"

/** One line of lyrics; times are milliseconds from the start of the track, when the format has them. */
export interface LyricsLine {
  readonly startMs?: number
  readonly endMs?: number
  readonly text: string
}

export type LyricsFormatName = "lrc" | "srt" | "ttml" | "plain"

/** Parsed lyrics in one language. */
export interface Lyrics {
  /** ISO 639 code as the plugin gave it; `xxx` when it gave none. */
  readonly lang: string
  /** Whether every line has a start time. */
  readonly synced: boolean
  readonly format: LyricsFormatName
  readonly lines: ReadonlyArray<LyricsLine>
  /** LRC `[offset:…]` in milliseconds, already applied to the line times. */
  readonly offsetMs?: number
  readonly displayArtist?: string
  readonly displayTitle?: string
}

/** The language used when a plugin gives none (as Navidrome does). */
export const unknownLanguage = "xxx"

/** The most lines one lyrics text may have; longer texts are refused rather than parsed. */
export const maxLines = 10_000

const SRT_TIME = /^(\d{1,2}):(\d{2}):(\d{2})[,.](\d{1,3})\s*-->\s*(\d{1,2}):(\d{2}):(\d{2})[,.](\d{1,3})/
const LRC_STAMP = /\[(\d{1,3}):(\d{1,2})(?:[.:](\d{1,3}))?\]/g
const LRC_LINE_START = /^\s*(?:\[\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?\])+/
const LRC_TAG = /^\s*\[([a-z#]+):(.*)\]\s*$/i
const LRC_WORD_STAMP = /<\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?>/g

const fraction = (digits: string | undefined): number =>
  digits === undefined || digits === "" ? 0 : Number(digits.padEnd(3, "0").slice(0, 3))

const lines = (text: string) => text.replace(/\r\n?/g, "\n").split("\n")

const tooLong = (): Either.Either<never, string> => Either.left(`it has more than ${maxLines} lines`)

const parseLrc = (lang: string, text: string): Either.Either<Lyrics, string> => {
  const parsed: Array<LyricsLine> = []
  let offsetMs = 0
  let displayArtist: string | undefined
  let displayTitle: string | undefined
  for (const raw of lines(text)) {
    const tag = LRC_TAG.exec(raw)
    if (tag !== null && !/^\d/.test(tag[1]!)) {
      const value = tag[2]!.trim()
      const name = tag[1]!.toLowerCase()
      if (name === "offset" && /^[+-]?\d+$/.test(value)) offsetMs = Number(value)
      else if (name === "ar" && value !== "") displayArtist = value
      else if (name === "ti" && value !== "") displayTitle = value
      continue
    }
    const head = LRC_LINE_START.exec(raw)
    if (head === null) continue
    const words = raw.slice(head[0].length).replace(LRC_WORD_STAMP, "").trim()
    for (const stamp of head[0].matchAll(LRC_STAMP)) {
      const ms = Number(stamp[1]) * 60_000 + Number(stamp[2]) * 1000 + fraction(stamp[3])
      parsed.push({ startMs: ms, text: words })
    }
    if (parsed.length > maxLines) return tooLong()
  }
  // A positive LRC offset makes lyrics appear sooner.
  const shifted = parsed
    .map((line) => ({ ...line, startMs: Math.max(0, line.startMs! - offsetMs) }))
    .sort((a, b) => a.startMs - b.startMs)
  return Either.right({
    lang,
    synced: true,
    format: "lrc",
    lines: shifted,
    ...(offsetMs === 0 ? {} : { offsetMs }),
    ...(displayArtist === undefined ? {} : { displayArtist }),
    ...(displayTitle === undefined ? {} : { displayTitle })
  })
}

const parseSrt = (lang: string, text: string): Either.Either<Lyrics, string> => {
  const parsed: Array<LyricsLine> = []
  const blocks = text
    .replace(/\r\n?/g, "\n")
    .split(/\n\s*\n/)
    .map((block) => block.trim())
    .filter((block) => block !== "")
  for (const block of blocks) {
    const rows = block.split("\n")
    const timeRow = /^\d+$/.test(rows[0]!.trim()) ? 1 : 0
    const time = SRT_TIME.exec(rows[timeRow]?.trim() ?? "")
    if (time === null) return Either.left(`an SRT cue has no valid time line: ${JSON.stringify(rows[0])}`)
    const at = (h: string, m: string, s: string, ms: string) =>
      Number(h) * 3_600_000 + Number(m) * 60_000 + Number(s) * 1000 + fraction(ms)
    parsed.push({
      startMs: at(time[1]!, time[2]!, time[3]!, time[4]!),
      endMs: at(time[5]!, time[6]!, time[7]!, time[8]!),
      text: rows
        .slice(timeRow + 1)
        .join("\n")
        .replace(/<[^>]*>/g, "")
        .trim()
    })
    if (parsed.length > maxLines) return tooLong()
  }
  return Either.right({ lang, synced: true, format: "srt", lines: parsed })
}

const XML_ENTITIES: Readonly<Record<string, string>> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'"
}

const decodeXmlText = (text: string) =>
  text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, entity: string) => {
    if (entity.startsWith("#x") || entity.startsWith("#X"))
      return String.fromCodePoint(Number.parseInt(entity.slice(2), 16))
    if (entity.startsWith("#")) return String.fromCodePoint(Number(entity.slice(1)))
    return XML_ENTITIES[entity.toLowerCase()] ?? whole
  })

/** A TTML time expression in milliseconds: `hh:mm:ss(.fff)`, `mm:ss.fff`, `12.5s`, `1500ms`. */
const ttmlTime = (value: string | undefined): number | undefined => {
  if (value === undefined) return undefined
  const clock = /^(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:\.(\d+))?$/.exec(value.trim())
  if (clock !== null)
    return (
      Number(clock[1] ?? 0) * 3_600_000 +
      Number(clock[2]) * 60_000 +
      Number(clock[3]) * 1000 +
      fraction(clock[4])
    )
  const offset = /^(\d+(?:\.\d+)?)(h|m|s|ms)$/.exec(value.trim())
  if (offset === null) return undefined
  const factor = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 }[offset[2] as "h" | "m" | "s" | "ms"]
  return Math.round(Number(offset[1]) * factor)
}

const attribute = (tag: string, name: string) =>
  new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)')`)
    .exec(tag)
    ?.slice(1)
    .find((v) => v !== undefined)

const parseTtml = (lang: string, text: string): Either.Either<Lyrics, string> => {
  const root = /<tt[\s>][^>]*>?/i.exec(text)
  if (root === null || !/<\/tt\s*>/i.test(text)) return Either.left("the TTML document has no closing </tt>")
  const documentLang = attribute(root[0], "xml:lang")
  const parsed: Array<LyricsLine> = []
  for (const paragraph of text.matchAll(/<p(\s[^>]*)?>([\s\S]*?)<\/p\s*>/gi)) {
    const open = paragraph[1] ?? ""
    const body = decodeXmlText(paragraph[2]!.replace(/<br\s*\/?>/gi, "\n").replace(/<[^>]*>/g, "")).trim()
    const beginAttr = attribute(open, "begin")
    const endAttr = attribute(open, "end")
    const startMs = ttmlTime(beginAttr)
    const endMs = ttmlTime(endAttr)
    if ((beginAttr !== undefined && startMs === undefined) || (endAttr !== undefined && endMs === undefined))
      return Either.left(`a TTML paragraph has an unreadable time (${beginAttr ?? ""}–${endAttr ?? ""})`)
    parsed.push({
      ...(startMs === undefined ? {} : { startMs }),
      ...(endMs === undefined ? {} : { endMs }),
      text: body
    })
    if (parsed.length > maxLines) return tooLong()
  }
  return Either.right({
    lang: lang === unknownLanguage && documentLang !== undefined && documentLang !== "" ? documentLang : lang,
    synced: parsed.length > 0 && parsed.every((line) => line.startMs !== undefined),
    format: "ttml",
    lines: parsed
  })
}

const parsePlain = (lang: string, text: string): Either.Either<Lyrics, string> => {
  const parsed = lines(text).map((line) => ({ text: line.trimEnd() }))
  while (parsed.length > 0 && parsed[parsed.length - 1]!.text === "") parsed.pop()
  while (parsed.length > 0 && parsed[0]!.text === "") parsed.shift()
  return parsed.length > maxLines
    ? tooLong()
    : Either.right({ lang, synced: false, format: "plain", lines: parsed })
}

/** Which format a lyrics text is in, from its content. */
export const sniff = (text: string): LyricsFormatName => {
  const start = text.trimStart()
  if (/^(<\?xml[^>]*>\s*)?<tt[\s>]/i.test(start)) return "ttml"
  if (/^\d+\s*\r?\n\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}\s*-->/.test(start)) return "srt"
  if (lines(text).some((line) => LRC_LINE_START.test(line))) return "lrc"
  return "plain"
}

/**
 * Parses one lyrics text. `Left` names why it cannot be read (a broken TTML document, an SRT cue
 * without a time, more than `maxLines` lines); lyrics with no lines parse to an empty `lines`.
 */
export const parse = (lang: string | null | undefined, text: string): Either.Either<Lyrics, string> => {
  const language = lang === null || lang === undefined || lang.trim() === "" ? unknownLanguage : lang.trim()
  switch (sniff(text)) {
    case "ttml":
      return parseTtml(language, text)
    case "srt":
      return parseSrt(language, text)
    case "lrc":
      return parseLrc(language, text)
    case "plain":
      return parsePlain(language, text)
  }
}

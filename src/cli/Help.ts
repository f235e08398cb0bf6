/**
 * What the `ndp` program prints about itself: concise help (`ndp plugins list [--json]`, optional
 * and repeatable flags in brackets), colour only on a terminal without `NO_COLOR`, and "did you
 * mean" suggestions for mistyped commands and flags. @effect/cli still parses the command line;
 * this module only renders from its descriptors (usage and help docs), so the two cannot disagree.
 */
import * as AutoCorrect from "@effect/cli/AutoCorrect"
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import type * as Usage from "@effect/cli/Usage"
import type * as Console from "effect/Console"
import * as Option from "effect/Option"

/** One command of the program: its name, its @effect/cli command, and its subcommands. */
export interface CommandNode {
  readonly name: string
  readonly summary: string
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly command: Command.Command<any, any, any, any>
  readonly children?: ReadonlyArray<CommandNode> | undefined
}

/** A command with its one-line summary, which both its @effect/cli description and the help show. */
export const described = <Name extends string, R, E, A>(
  summary: string,
  command: Command.Command<Name, R, E, A>,
  children?: ReadonlyArray<CommandNode>
) => {
  const withSummary = Command.withDescription(command, summary)
  const [name = ""] = Command.getNames(withSummary)
  const node: CommandNode = { name, summary, command: withSummary, children }
  return { command: withSummary, node }
}

/** Options every command accepts, handled by the program itself or by @effect/cli. */
export const globalOptions: ReadonlyArray<readonly [string, string]> = [
  ["--log-level LEVEL", "all, trace, debug, info, warning, error, fatal or none; anywhere on the line"],
  ["-h, --help", "show this help"],
  ["--version", "show the version"]
]

/** Whether text written to `stream` may carry ANSI colours: a terminal, and `NO_COLOR` unset or empty. */
export const useColour = (stream: { readonly isTTY?: boolean | undefined }): boolean =>
  stream.isTTY === true && (process.env["NO_COLOR"] ?? "") === ""

const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g

/** `text` without ANSI escape sequences. */
export const stripAnsi = (text: string): string => text.replace(ANSI, "")

/** The plain text of a help document (as @effect/cli would print it, without colours). */
export const docText = (doc: HelpDoc.HelpDoc): string => stripAnsi(HelpDoc.toAnsiText(doc)).trim()

/**
 * `base` with ANSI escapes removed from what it prints when `colour` is false: @effect/cli colours
 * its messages unconditionally.
 */
export const plainConsole = (
  base: Console.Console,
  colour: { readonly out: boolean; readonly err: boolean }
): Console.Console => {
  const clean = (args: ReadonlyArray<unknown>) => args.map((a) => (typeof a === "string" ? stripAnsi(a) : a))
  return {
    ...base,
    log: (...args) => base.log(...(colour.out ? args : clean(args))),
    info: (...args) => base.info(...(colour.out ? args : clean(args))),
    error: (...args) => base.error(...(colour.err ? args : clean(args))),
    warn: (...args) => base.warn(...(colour.err ? args : clean(args)))
  }
}

/** Renders a usage tree: optional and repeatable parts in brackets, values as their pseudo-names. */
export const usageText = (usage: Usage.Usage): string => {
  switch (usage._tag) {
    case "Empty":
      return ""
    case "Mixed":
      return "<command>"
    case "Named": {
      const name = usage.names.join(", ")
      return Option.match(usage.acceptedValues, { onNone: () => name, onSome: (v) => `${name} ${v}` })
    }
    case "Optional": {
      const inner = usageText(usage.usage)
      return inner === "" ? "" : inner.startsWith("[") && inner.endsWith("]") ? inner : `[${inner}]`
    }
    // Every repeatable option of this program may also be left out (none sets a minimum).
    case "Repeated": {
      const inner = usageText(usage.usage)
      return inner === "" ? "" : `[${inner}]…`
    }
    case "Alternation":
      return `(${usageText(usage.left)} | ${usageText(usage.right)})`
    case "Concat":
      return [usageText(usage.left), usageText(usage.right)].filter((t) => t !== "").join(" ")
  }
}

// The type sentences @effect/cli adds to every option; the descriptions we wrote say more.
const boilerplate = [
  /^An? (user-defined piece of text|true or false value|integer|directory|file|existing file|existing directory|path|floating point number)\.$/,
  /^One of the following: /,
  /^This setting is optional\.$/,
  /^This option may be repeated zero or more times\.$/
]

interface Entry {
  readonly label: string
  readonly text: string
}

/** The ARGUMENTS and OPTIONS sections of a command's help doc, as label / description pairs. */
const sectionsOf = (doc: HelpDoc.HelpDoc) => {
  const sections = new Map<string, Array<Entry>>()
  let current = ""
  const walk = (d: HelpDoc.HelpDoc): void => {
    if (HelpDoc.isSequence(d)) {
      walk(d.left)
      walk(d.right)
    } else if (HelpDoc.isHeader(d)) {
      current = docText(HelpDoc.p(d.value))
    } else if (HelpDoc.isDescriptionList(d)) {
      const list = sections.get(current) ?? []
      for (const [span, block] of d.definitions) {
        const paragraphs = paragraphsOf(block)
          .map((p) => {
            const defaulted = /^This setting is optional\. Defaults to: (.*)$/.exec(p)
            return defaulted ? `(default ${defaulted[1]})` : p
          })
          .filter((p) => !boilerplate.some((re) => re.test(p)))
        // "(-o, --output NAME.ndp)": the parentheses only group the aliases.
        const label = docText(HelpDoc.p(span)).replace(/^\((.*)\)$/, "$1")
        list.push({
          label: label.endsWith("...") ? `${label.slice(0, -3)} (repeatable)` : label,
          text: paragraphs.join(" ")
        })
      }
      sections.set(current, list)
    }
  }
  walk(doc)
  return sections
}

const paragraphsOf = (doc: HelpDoc.HelpDoc): Array<string> =>
  HelpDoc.isSequence(doc)
    ? [...paragraphsOf(doc.left), ...paragraphsOf(doc.right)]
    : HelpDoc.isEmpty(doc)
      ? []
      : [docText(doc)].filter((t) => t !== "")

const table = (entries: ReadonlyArray<Entry>, bold: (s: string) => string) => {
  const width = Math.min(28, Math.max(...entries.map((e) => e.label.length)))
  return entries.map((e) =>
    e.label.length > width
      ? `  ${bold(e.label)}\n  ${" ".repeat(width)}  ${e.text}`
      : `  ${bold(e.label.padEnd(width))}  ${e.text}`
  )
}

/** The help text of the command at the end of `path` (root first). */
export const helpText = (path: ReadonlyArray<CommandNode>, colour: boolean): string => {
  const bold = (s: string) => (colour ? `\u001b[1m${s}\u001b[0m` : s)
  const node = path[path.length - 1]!
  const prefix = path.map((n) => n.name).join(" ")
  const lines = [`${bold(prefix)} — ${node.summary}`, ""]
  if (node.children !== undefined && node.children.length > 0) {
    lines.push(bold("Usage:"), `  ${prefix} <command> [options]`, "", bold("Commands:"))
    lines.push(
      ...table(
        node.children.map((c) => ({ label: c.name, text: c.summary })),
        bold
      )
    )
    lines.push("", `Run "${prefix} <command> --help" for a command's arguments and options.`)
  } else {
    // The usage starts with the command's own name; the whole path replaces it.
    const usage = usageText(Command.getUsage(node.command)).replace(/^\S+/, prefix)
    lines.push(bold("Usage:"), `  ${usage}`)
    const config = CliConfig.make({ showBuiltIns: false })
    const sections = sectionsOf(Command.getHelp(node.command, config))
    for (const [title, name] of [
      ["ARGUMENTS", "Arguments:"],
      ["OPTIONS", "Options:"]
    ] as const) {
      const entries = sections.get(title) ?? []
      if (entries.length > 0) lines.push("", bold(name), ...table(entries, bold))
    }
  }
  lines.push(
    "",
    bold("Global options:"),
    ...table(
      globalOptions.map(([label, text]) => ({ label, text })),
      bold
    )
  )
  return lines.join("\n")
}

/** The commands named at the start of `args`, root first, and the index of the first other argument. */
export const commandPath = (root: CommandNode, args: ReadonlyArray<string>) => {
  const path: Array<CommandNode> = [root]
  let i = 0
  for (; i < args.length; i++) {
    const child = path[path.length - 1]!.children?.find((c) => c.name === args[i])
    if (child === undefined) break
    path.push(child)
  }
  return { path, next: i }
}

/** The closest candidate to `word` (a few edits away at most), if any. */
export const closest = (word: string, candidates: Iterable<string>): string | undefined => {
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of candidates) {
    const distance = AutoCorrect.levensteinDistance(word, candidate, CliConfig.defaultConfig)
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  const limit = Math.max(2, Math.floor(word.length / 3))
  return best !== undefined && bestDistance <= limit ? best : undefined
}

/** Every flag name a command accepts (its own and the global ones). */
export const flagNames = (node: CommandNode): ReadonlyArray<string> => {
  const names: Array<string> = ["--log-level", "--help", "-h", "--version"]
  const walk = (usage: Usage.Usage): void => {
    switch (usage._tag) {
      case "Named":
        names.push(...usage.names.filter((n) => n.startsWith("-")))
        return
      case "Optional":
      case "Repeated":
        return walk(usage.usage)
      case "Alternation":
      case "Concat":
        walk(usage.left)
        return walk(usage.right)
      default:
        return
    }
  }
  walk(Command.getUsage(node.command))
  return names
}

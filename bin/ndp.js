#!/usr/bin/env node
// The `ndp` program: the bundled entry (npm run build writes dist/cli/ndp.mjs). Node 22 and later
// keep a compile cache of the modules it loads, which roughly halves the start of later runs.
import module from "node:module"
import { readFileSync } from "node:fs"

/**
 * `ndp [command…] --help` from the help texts written at build time (dist/cli/help.json), without
 * loading the program; anything else, or anything unexpected, goes to the program itself.
 */
const answerHelp = () => {
  const args = process.argv.slice(2)
  const end = args.indexOf("--")
  const flags = end < 0 ? args : args.slice(0, end)
  if (!flags.includes("--help") && !flags.includes("-h")) return false
  if (flags.some((a) => a === "--log-level" || a.startsWith("--log-level="))) return false
  let helps
  try {
    helps = JSON.parse(readFileSync(new URL("../dist/cli/help.json", import.meta.url), "utf8"))
  } catch {
    return false
  }
  let key = ""
  for (const word of args) {
    const next = key === "" ? word : `${key} ${word}`
    if (helps[next] === undefined) break
    key = next
  }
  const colour = process.stdout.isTTY === true && (process.env.NO_COLOR ?? "") === ""
  process.stdout.write(`${colour ? helps[key].colour : helps[key].plain}\n`)
  return true
}

if (!answerHelp()) {
  module.enableCompileCache?.()
  await import("../dist/cli/ndp.mjs")
}

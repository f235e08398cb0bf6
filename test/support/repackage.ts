/** Builds a package from a fixture's plugin.wasm with a different manifest (zipped in memory). */
import { unzipSync, zipSync } from "fflate"
import { readFileSync } from "node:fs"
import { fixture } from "./fixtures.js"

export const repackage = (
  id: string,
  edit: (manifest: Record<string, unknown>) => Record<string, unknown>
) => {
  const entries = unzipSync(readFileSync(fixture(id)))
  const manifest = JSON.parse(new TextDecoder().decode(entries["manifest.json"])) as Record<string, unknown>
  return zipSync({
    "manifest.json": new TextEncoder().encode(JSON.stringify(edit(manifest))),
    "plugin.wasm": entries["plugin.wasm"]!
  })
}

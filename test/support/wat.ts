/** WebAssembly text compiled in a test (for modules that exist only to be refused or diagnosed). */
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"

/** The binary of a module written in the WebAssembly text format. */
export const wat = async (text: string): Promise<Uint8Array> => {
  const { default: initWabt } = await import("wabt")
  const wabt = await initWabt()
  const module = wabt.parseWat("test.wat", text)
  try {
    module.resolveNames()
    module.validate()
    return module.toBinary({}).buffer
  } finally {
    module.destroy()
  }
}

/** A plugin source folder `dir/name` holding `manifest.json` and `plugin.wasm`; returns its path. */
export const pluginFolder = (
  dir: string,
  name: string,
  manifest: Record<string, unknown> | string,
  wasm: Uint8Array
): string => {
  const folder = join(dir, name)
  mkdirSync(folder, { recursive: true })
  writeFileSync(
    join(folder, "manifest.json"),
    typeof manifest === "string" ? manifest : JSON.stringify(manifest, null, 2)
  )
  writeFileSync(join(folder, "plugin.wasm"), wasm)
  return folder
}

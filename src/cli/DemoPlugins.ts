/**
 * The plugins `ndp demo` loads, and where it finds them by default. `npm run build` copies them
 * from build/fixtures into dist/demo/, so an installed package runs the demo with no fixtures
 * build; running from the TypeScript sources, they are read from build/fixtures.
 */
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"

/** Every package the demo loads (file names without `.ndp`). */
export const demoPlugins: ReadonlyArray<string> = [
  "agent-full",
  "agent-partial",
  "scrobbler",
  "scrobbler-draft",
  "lyrics",
  "lifecycle",
  "host-scheduler",
  "host-taskqueue",
  "host-library",
  "host-subsonic",
  "loop-export",
  "forbidden-import"
]

/** dist/demo beside the compiled CLI when it is there, else build/fixtures (in the repository). */
export const defaultDemoFolder = (): string => {
  const shipped = fileURLToPath(new URL("../demo", import.meta.url))
  return existsSync(shipped) ? shipped : "build/fixtures"
}

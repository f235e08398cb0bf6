/** Paths of the test plugins built from `fixtures/` (see vitest's global setup). */
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"

export const fixturesDir = fileURLToPath(new URL("../../build/fixtures/", import.meta.url))

/** The `.ndp` file of a built fixture; fails loudly when the build step did not run. */
export const fixture = (id: string): string => {
  const path = `${fixturesDir}${id}.ndp`
  if (!existsSync(path)) throw new Error(`fixture ${id} is not built: run "npm run build:fixtures"`)
  return path
}

/** Builds the fixture plugins and the package once before any test file runs (fast when up to date). */
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

export default function setup(): void {
  const root = fileURLToPath(new URL("../../", import.meta.url))
  // Fixtures first: the package build copies the demo plugins from them. The CLI tests run the
  // compiled `ndp` (bin/ndp.js → dist/), so dist/ is brought up to date too (skipped when fresh).
  for (const script of ["scripts/build-fixtures.ts", "scripts/build.ts"]) {
    execFileSync(process.execPath, ["--import", "tsx", script], { cwd: root, stdio: "inherit" })
  }
}

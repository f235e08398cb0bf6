/** Builds the fixture plugins once before any test file runs (incremental: fast when up to date). */
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

export default function setup(): void {
  const root = fileURLToPath(new URL("../../", import.meta.url))
  execFileSync(process.execPath, ["--import", "tsx", "scripts/build-fixtures.ts"], {
    cwd: root,
    stdio: "inherit"
  })
}

/**
 * A cluster of `ndp serve` processes for a test file: one PostgreSQL server started before its
 * tests and stopped after them, a plugins folder every node serves from the same path (as
 * docs/cluster.md requires), and nodes started on it with their own data folders.
 */
import { afterAll, beforeAll, expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { killAll, ndp, startNdp } from "./cli.js"
import { fixture } from "./fixtures.js"
import { postgresServer } from "./postgres.js"

export type ClusterNode = ReturnType<typeof startNdp>

/** Registers the file's PostgreSQL server and clean-up; call once at the top of a test file. */
export const clusterHarness = () => {
  const temps: Array<string> = []
  let scope: Scope.CloseableScope
  let url = ""

  beforeAll(async () => {
    scope = await Effect.runPromise(Scope.make())
    url = (await Effect.runPromise(Scope.extend(postgresServer, scope))).url
  }, 120_000)

  afterAll(async () => {
    killAll()
    await Effect.runPromise(Scope.close(scope, Exit.void))
    for (const dir of temps) rmSync(dir, { recursive: true, force: true })
  }, 120_000)

  /** A plugins folder holding the fixture `id`, enabled in the cluster's registry. */
  const sharedFolder = async (id: string) => {
    const shared = mkdtempSync(join(tmpdir(), "ndp-cluster-plugins-"))
    temps.push(shared)
    const folder = join(shared, "plugins")
    mkdirSync(folder)
    copyFileSync(fixture(id), join(folder, `${id}.ndp`))
    const enabled = await ndp([
      "plugins",
      "enable",
      id,
      "--folder",
      folder,
      "--data-dir",
      join(shared, "cli"),
      "--database",
      url
    ])
    expect(enabled.code, enabled.stderr).toBe(0)
    return folder
  }

  /** Starts node `index` of the cluster on `folder`, with one worker (and `args`, `env` added). */
  const startNode =
    (folder: string, args: ReadonlyArray<string> = [], env: Record<string, string> = {}) =>
    (index: number) => {
      const dir = mkdtempSync(join(tmpdir(), `ndp-node${index}-`))
      temps.push(dir)
      return startNdp(
        ["serve", "--folder", folder, "--data-dir", join(dir, "data"), "--database", url, ...args],
        { NDP_PLUGINS_WORKERS: "1", ...env }
      )
    }

  return { url: () => url, sharedFolder, startNode }
}

/**
 * The PostgreSQL backend on a throwaway local server (test/support/postgres.ts): KV store gets and
 * sets per second through two clients (two nodes) on one plugin's store, and the failover time of a
 * 3-node `ndp serve` cluster: owner killed with SIGKILL → first scheduler callback on the new owner.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as KvStorePg from "../src/host/kvstore/KvStorePg.js"
import { killAll, ndp, startNdp } from "../test/support/cli.js"
import { fixture } from "../test/support/fixtures.js"
import { postgresServer } from "../test/support/postgres.js"
import { round } from "./stats.js"

const MEASURE_MS = 2_000
const IN_FLIGHT = 8

export interface ClusterFigures {
  readonly kvSetPerSec: number
  readonly kvGetPerSec: number
  readonly failoverMs: number
}

/** Runs `op` with `IN_FLIGHT` callers for `MEASURE_MS`; answers completions per second. */
const perSecond = (op: (i: number) => Effect.Effect<unknown, unknown>) =>
  Effect.gen(function* () {
    let done = 0
    const deadline = performance.now() + MEASURE_MS
    const started = performance.now()
    yield* Effect.all(
      Array.from({ length: IN_FLIGHT }, (_, caller) =>
        Effect.gen(function* () {
          while (performance.now() < deadline) {
            yield* op(caller * 1_000_000 + done)
            done++
          }
        })
      ),
      { concurrency: "unbounded", discard: true }
    )
    return (done * 1000) / (performance.now() - started)
  })

const kv = (url: string) =>
  Effect.gen(function* () {
    const nodes = yield* Effect.all([0, 1].map(() => PgClient.make({ url: Redacted.make(url) })))
    yield* KvStorePg.migrateSchema.pipe(Effect.provideService(SqlClient.SqlClient, nodes[0]!))
    const stores = yield* Effect.all(
      nodes.map((sql) => KvStorePg.make(sql, { pluginId: "bench", maxSizeBytes: 1_000_000_000 }))
    )
    const value = new Uint8Array(100).fill(7)
    const kvSetPerSec = yield* perSecond((i) => stores[i % 2]!.set(`key-${i % 1000}`, value))
    const kvGetPerSec = yield* perSecond((i) => stores[i % 2]!.get(`key-${i % 1000}`))
    return { kvSetPerSec, kvGetPerSec }
  }).pipe(Effect.provide(Reactivity.layer))

const until = async (check: () => boolean, timeoutMs = 120_000) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error("cluster bench: timed out")
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const failover = async (url: string): Promise<number> => {
  const dirs: Array<string> = []
  try {
    // One plugins folder for every node; the plugin enabled in the cluster's registry.
    const shared = mkdtempSync(join(tmpdir(), "ndp-bench-cluster-"))
    dirs.push(shared)
    const folder = join(shared, "plugins")
    mkdirSync(folder)
    copyFileSync(fixture("cluster-ticker"), join(folder, "cluster-ticker.ndp"))
    await ndp([
      "plugins",
      "enable",
      "cluster-ticker",
      "--folder",
      folder,
      "--data-dir",
      join(shared, "cli"),
      "--database",
      url
    ])
    const nodes = [0, 1, 2].map((index) => {
      const dir = mkdtempSync(join(tmpdir(), `ndp-bench-node${index}-`))
      dirs.push(dir)
      return startNdp(["serve", "--folder", folder, "--data-dir", join(dir, "data"), "--database", url], {
        NDP_PLUGINS_WORKERS: "1"
      })
    })
    const fired = (node: (typeof nodes)[number]) => /ticker fired/.test(node.out.stderr)
    await until(() => nodes.some(fired))
    const owner = nodes.find(fired)!
    const killedAt = performance.now()
    owner.child.kill("SIGKILL")
    await until(() => nodes.some((node) => node !== owner && fired(node)))
    return performance.now() - killedAt
  } finally {
    killAll()
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  }
}

export const measureCluster: Effect.Effect<ClusterFigures, unknown> = Effect.scoped(
  Effect.gen(function* () {
    const server = yield* postgresServer
    const { kvGetPerSec, kvSetPerSec } = yield* kv(server.url)
    const failoverMs = yield* Effect.promise(() => failover(server.url))
    return {
      kvSetPerSec: Math.round(kvSetPerSec),
      kvGetPerSec: Math.round(kvGetPerSec),
      failoverMs: round(failoverMs, 0)
    }
  })
)

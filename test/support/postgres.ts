/**
 * A throwaway PostgreSQL server for tests: `initdb` into a scoped temp folder, `postgres` on
 * 127.0.0.1 on a free port, stopped and removed when the scope closes.
 *
 * The binaries are the machine's (Debian's `postgresql` package; `.ci/run` installs it when it is
 * missing): `NDP_TEST_PG_BIN` names their folder, else `pg_config --bindir`, else the newest
 * /usr/lib/postgresql/<version>/bin. PostgreSQL refuses to run as root, so under root the server's
 * processes run as the `postgres` user (Node's spawn `uid`/`gid`) and the folder is handed to it.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { execFileSync, spawn, type ChildProcess } from "node:child_process"
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Redacted from "effect/Redacted"

export interface PostgresServer {
  /** A connection URL for the `postgres` superuser (trust authentication, loopback only). */
  readonly url: string
  readonly port: number
  /** A fresh, empty database on this server, for a test that wants its own. */
  readonly createDatabase: (name: string) => Effect.Effect<string>
}

const binDir = (): string => {
  const fromEnv = process.env["NDP_TEST_PG_BIN"]
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv
  try {
    const dir = execFileSync("pg_config", ["--bindir"], { encoding: "utf8" }).trim()
    if (existsSync(join(dir, "initdb"))) return dir
  } catch {
    // No pg_config on PATH (Debian puts only the client's on it): look in the versioned folders.
  }
  const root = "/usr/lib/postgresql"
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, "bin", "initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : []
  if (versions[0] === undefined)
    throw new Error(
      "PostgreSQL is not installed: install Debian's postgresql package (.ci/run does) or set NDP_TEST_PG_BIN"
    )
  return join(root, versions[0], "bin")
}

/** The user the server runs as: ourselves, or `postgres` when we are root. */
const serverUser = (): { uid: number; gid: number } | undefined => {
  if (process.getuid?.() !== 0) return undefined
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim())
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim())
  return { uid, gid }
}

export const freePort = () =>
  Effect.async<number>((resume) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resume(Effect.succeed(port)))
    })
  })

const query = (url: string, statement: string) =>
  Effect.scoped(
    Effect.flatMap(PgClient.make({ url: Redacted.make(url), connectTimeout: "5 seconds" }), (sql) =>
      sql.unsafe(statement)
    )
  ).pipe(Effect.provide(Reactivity.layer))

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once("exit", () => resolve())
  })

const start = Effect.gen(function* () {
  const bin = binDir()
  const user = serverUser()
  const dir = mkdtempSync(join(tmpdir(), "ndp-pg-"))
  if (user !== undefined) chownSync(dir, user.uid, user.gid)
  const data = join(dir, "data")
  execFileSync(
    join(bin, "initdb"),
    ["-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
    { stdio: "pipe", cwd: dir, ...user }
  )
  const port = yield* freePort()
  const log: Array<string> = []
  const child = spawn(
    join(bin, "postgres"),
    [
      ["-D", data],
      ["-p", String(port)],
      ["-k", dir],
      ["-c", "listen_addresses=127.0.0.1"],
      // A test server: speed over durability.
      ["-c", "fsync=off"],
      ["-c", "synchronous_commit=off"],
      ["-c", "full_page_writes=off"],
      ["-c", "max_connections=300"]
    ].flat(),
    { cwd: dir, stdio: ["ignore", "pipe", "pipe"], ...user }
  )
  child.stdout?.on("data", (chunk: Buffer) => log.push(chunk.toString()))
  child.stderr?.on("data", (chunk: Buffer) => log.push(chunk.toString()))
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  const stop = Effect.promise(async () => {
    // SIGINT = "fast shutdown": ends the sessions and exits cleanly.
    child.kill("SIGINT")
    await exited(child)
    rmSync(dir, { recursive: true, force: true })
  })
  const ready = Effect.gen(function* () {
    const deadline = Date.now() + 60_000
    while (true) {
      if (child.exitCode !== null) return yield* Effect.fail(new Error(`postgres exited: ${log.join("")}`))
      const ok = yield* query(url, "select 1").pipe(
        Effect.as(true),
        Effect.orElseSucceed(() => false)
      )
      if (ok) return
      if (Date.now() > deadline)
        return yield* Effect.fail(new Error(`postgres did not start: ${log.join("")}`))
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 100)))
    }
  })
  yield* ready.pipe(Effect.tapError(() => stop))
  return { url, port, stop }
})

/** Starts a server for the current scope (retried once when another process took the port). */
export const postgresServer: Effect.Effect<PostgresServer, Error, Scope.Scope> = Effect.acquireRelease(
  start.pipe(Effect.retry({ times: 2 }), Effect.orDie),
  (server) => server.stop
).pipe(
  Effect.map(({ port, url }) => ({
    url,
    port,
    createDatabase: (name: string) =>
      query(url, `create database "${name}"`).pipe(
        Effect.orDie,
        Effect.as(`postgres://postgres@127.0.0.1:${port}/${name}`)
      )
  }))
)

/** The manager watching its folder (`autoReload`): new, changed, removed and slowly written files. */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { createHash } from "node:crypto"
import {
  appendFileSync,
  copyFileSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync
} from "node:fs"
import { join } from "node:path"
import { PluginManager } from "../../src/manager/PluginManager.js"
import { Registry } from "../../src/manager/Registry.js"
import { fixture } from "../support/fixtures.js"
import { captureLogs } from "../support/logs.js"
import { makeFolders, managerLayer, type TestFolders } from "../support/manager.js"
import { realSleep } from "../support/wait.js"

const withWatcher = <A, E>(
  folders: TestFolders,
  body: Effect.Effect<A, E, PluginManager | Registry>,
  options: { readonly pollMs?: number; readonly debounceMs?: number } = {}
) =>
  Effect.scoped(
    Effect.provide(
      body,
      Layer.fresh(managerLayer(folders, { autoReload: true, debounceMs: 200, ...options }))
    )
  )

/** Polls `probe` on real time until it returns Some; dies after `timeoutMs`. */
const until = <A, E, R>(what: string, probe: Effect.Effect<Option.Option<A>, E, R>, timeoutMs = 5_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = yield* probe
      if (Option.isSome(found)) return found.value
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for ${what}`)
      yield* realSleep(25)
    }
  })

const registered = (id: string) => Effect.flatMap(Registry, (registry) => Effect.orDie(registry.get(id)))

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

describe("PluginManager auto-reload", () => {
  it.scopedLive(
    "a new file is registered disabled; a changed one is disabled; a removed one deregistered",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders()
        yield* withWatcher(
          folders,
          Effect.gen(function* () {
            const manager = yield* PluginManager
            expect(yield* manager.list).toEqual([])

            copyFileSync(fixture("agent-full"), join(folders.folder, "meta.ndp"))
            const added = yield* until("meta registered", registered("meta"))
            expect(added).toMatchObject({ enabled: false, lastError: null })
            expect(yield* manager.loadedIds).toEqual([])

            expect(yield* manager.enable("meta")).toMatchObject({ enabled: true, loaded: true })
            copyFileSync(fixture("agent-partial"), join(folders.folder, "meta.ndp"))
            const partialSha = sha256(readFileSync(fixture("agent-partial")))
            const changed = yield* until(
              "meta to change",
              Effect.map(
                registered("meta"),
                Option.filter((r) => r.sha256 === partialSha)
              )
            )
            expect(changed.enabled).toBe(false)
            expect(yield* manager.get("meta")).toMatchObject({ loaded: false, name: "agent-partial" })

            rmSync(join(folders.folder, "meta.ndp"))
            yield* until(
              "meta deregistered",
              Effect.map(registered("meta"), (r) => (Option.isNone(r) ? Option.some(true) : Option.none()))
            )
            expect((yield* Effect.flip(manager.get("meta"))).reason).toBe("NotFound")
          })
        )
      })
  )

  it.scopedLive("a file written slowly in chunks is read once, complete", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders()
      const bytes = readFileSync(fixture("agent-full"))
      const chunks = 10
      const size = Math.ceil(bytes.length / chunks)
      yield* withWatcher(
        folders,
        Effect.gen(function* () {
          const registry = yield* Registry
          // Every state the registry shows while the file grows; a half-read package would appear here.
          const seen: Array<{ sha256: string; lastError: string | null }> = []
          let writing = true
          const observer = Effect.gen(function* () {
            while (writing) {
              const r = yield* Effect.orDie(registry.get("slow"))
              if (Option.isSome(r)) seen.push({ sha256: r.value.sha256, lastError: r.value.lastError })
              yield* realSleep(10)
            }
          })
          const observing = yield* Effect.fork(observer)
          const path = join(folders.folder, "slow.ndp")
          writeFileSync(path, bytes.subarray(0, size))
          // 10 chunks, 100 ms apart: each write restarts the 1 s quiet period.
          for (let i = 1; i < chunks; i++) {
            yield* realSleep(100)
            appendFileSync(path, bytes.subarray(i * size, (i + 1) * size))
          }
          const record = yield* until("slow registered", registered("slow"))
          yield* realSleep(500)
          writing = false
          yield* observing.await
          expect(record).toMatchObject({ sha256: sha256(bytes), lastError: null, enabled: false })
          expect(seen.length).toBeGreaterThan(0)
          expect(new Set(seen.map((s) => JSON.stringify(s)))).toEqual(
            new Set([JSON.stringify({ sha256: sha256(bytes), lastError: null })])
          )
          // Registered once: the row was never rewritten after its insert.
          const final = yield* Effect.orDie(registry.get("slow"))
          expect(Option.map(final, (r) => r.updatedAt === r.createdAt)).toEqual(Option.some(true))
        }),
        // Ten times the gap between writes, so a busy machine's late timer cannot end it early.
        { debounceMs: 1_000 }
      )
    })
  )

  it.scopedLive(
    "the folder removed and created again: the watcher fails, says so, restarts and sees new files",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders(["agent-full"])
        const logs = captureLogs()
        yield* logs.provide(
          withWatcher(
            folders,
            Effect.gen(function* () {
              const manager = yield* PluginManager
              yield* manager.enable("agent-full")
              const said = (text: string) => () => logs.lines.some((l) => l.message.includes(text))

              // The folder goes away: the watcher on it is dead, and restarting it fails while the
              // folder is missing (a real ENOENT from fs.watch), logged and retried with back-off.
              rmSync(folders.folder, { recursive: true })
              yield* until(
                "a failed restart to be logged",
                Effect.sync(() => (said("ENOENT")() ? Option.some(true) : Option.none())),
                15_000
              )
              // It comes back (in one step, as a rename) with the old plugin and a new one.
              const staging = `${folders.folder}.new`
              mkdirSync(staging)
              copyFileSync(fixture("agent-full"), join(staging, "agent-full.ndp"))
              copyFileSync(fixture("agent-partial"), join(staging, "late.ndp"))
              renameSync(staging, folders.folder)

              const late = yield* until("late registered", registered("late"), 15_000)
              expect(late).toMatchObject({ enabled: false, lastError: null })
              // The plugin whose file came back kept the administrator's decisions.
              expect(yield* manager.get("agent-full")).toMatchObject({ enabled: true, loaded: true })
              // And the restarted watcher keeps working for later changes.
              rmSync(join(folders.folder, "late.ndp"))
              yield* until(
                "late deregistered",
                Effect.map(registered("late"), (r) => (Option.isNone(r) ? Option.some(true) : Option.none())),
                15_000
              )
              expect(said("plugins folder")()).toBe(true)
            }),
            { pollMs: 100 }
          )
        )
        const warnings = logs.lines.filter((l) => l.level === "WARN" && l.message.includes(folders.folder))
        expect(warnings.length).toBeGreaterThan(0)
      })
  )
})

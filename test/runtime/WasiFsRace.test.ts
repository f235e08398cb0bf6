/**
 * The jail under a concurrent swap: a separate process keeps swapping a folder of the mount for a
 * symlink to an outside folder while the `wasi-race` fixture lists, stats and reads that folder in a
 * loop on a worker thread. Nothing of the outside folder may ever reach the plugin, and a healthy
 * plugin on the other worker keeps answering meanwhile.
 */
import { afterAll, beforeAll, expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { unzipSync } from "fflate"
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { layer as runtimeLayer, WasmRuntime } from "../../src/runtime/WasmRuntime.js"
import type { Mount } from "../../src/runtime/abi/protocol.js"
import { Errno } from "../../src/runtime/worker/Wasi.js"
import { fixture } from "../support/fixtures.js"

let base = ""
let library = ""
let outside = ""
const marker = `MARKER-${randomBytes(6).toString("hex")}`
const insideData = "INSIDE".padEnd(100, ".")
const outsideData = "OUTSIDE".padEnd(7777, ".")
const notes = "still answering\n"

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), "ndp-wasifs-race-"))
  library = join(base, "library")
  outside = join(base, "outside")
  mkdirSync(join(library, "swap"), { recursive: true })
  mkdirSync(outside)
  writeFileSync(join(library, "swap", "data.bin"), insideData)
  writeFileSync(join(library, "swap", "inside.txt"), "inside")
  writeFileSync(join(library, "notes.txt"), notes)
  // An inside symlink to the swapped folder: the jail walks its target, and must do so race-free too.
  symlinkSync("swap", join(library, "via-link"))
  writeFileSync(join(outside, "data.bin"), outsideData)
  writeFileSync(join(outside, marker), "secret")
})

afterAll(() => rmSync(base, { recursive: true, force: true }))

/**
 * Swaps `library/swap` between the real folder and a symlink to `outside` as fast as it can, in its
 * own process, until a stop file appears (or a safety limit); it leaves the folder in place.
 */
const SWAPPER = `
const fs = require("node:fs")
const path = require("node:path")
const [library, outside, stopFile, limitMs] = process.argv.slice(1)
const swap = path.join(library, "swap")
const real = path.join(library, ".swap-real")
const link = path.join(library, ".swap-link")
fs.symlinkSync(outside, link)
const end = Date.now() + Number(limitMs)
let swaps = 0
process.stdout.write("ready\\n")
while (Date.now() < end && !(swaps % 64 === 0 && fs.existsSync(stopFile))) {
  fs.renameSync(swap, real)
  fs.renameSync(link, swap)
  fs.renameSync(swap, link)
  fs.renameSync(real, swap)
  swaps++
}
process.stdout.write("swaps " + swaps + "\\n")
`

interface Swapper {
  readonly child: ChildProcess
  readonly output: () => string
}

const swapper = Effect.acquireRelease(
  Effect.async<Swapper, Error>((resume) => {
    const stopFile = join(base, "stop")
    rmSync(stopFile, { force: true })
    const child = spawn(process.execPath, ["-e", SWAPPER, library, outside, stopFile, "60000"], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    let output = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString()
      if (output.startsWith("ready\n")) resume(Effect.succeed({ child, output: () => output }))
    })
    child.once("exit", (code) =>
      resume(Effect.fail(new Error(`the swapper exited early (${code}): ${output}`)))
    )
  }),
  ({ child }) =>
    Effect.async<void>((resume) => {
      if (child.exitCode !== null) return resume(Effect.void)
      child.once("exit", () => resume(Effect.void))
      writeFileSync(join(base, "stop"), "")
    })
)

const instantiate = (id: string, mounts: ReadonlyArray<Mount>) =>
  Effect.gen(function* () {
    const runtime = yield* WasmRuntime
    const wasm = unzipSync(readFileSync(fixture(id)))["plugin.wasm"]!
    const compiled = yield* runtime.compile(id, `${id}-race-test`, wasm)
    return yield* runtime.instantiate({
      pluginId: id,
      compiled,
      config: {},
      userFunctions: [],
      envHttp: false,
      host: () => Effect.succeed(new Uint8Array(0)),
      mounts
    })
  })

const u32 = (value: number): Buffer => {
  const bytes = Buffer.alloc(4)
  bytes.writeUInt32LE(value)
  return bytes
}
const u64 = (value: bigint): Buffer => {
  const bytes = Buffer.alloc(8)
  bytes.writeBigUInt64LE(value)
  return bytes
}

const COUNTERS = [
  "iterations",
  "dirOpens",
  "listings",
  "entries",
  "leakedNames",
  "dirStats",
  "leakedDirIno",
  "fileStats",
  "leakedSizes",
  "reads",
  "leakedContent",
  "errors"
] as const
type Counts = Record<(typeof COUNTERS)[number], number>

/** Iterations per plugin call; calls go on for RACE_MS (and until both states were seen). */
const ROUND = 200
const RACE_MS = 2500
/** Gives up waiting for both states after this long (the assertions then say what was missing). */
const GIVE_UP_MS = 30_000

layer(runtimeLayer({ poolSize: 2, defaultTimeoutMs: 60_000 }))(
  "WASI filesystem under a concurrent swap",
  (it) => {
    it.scoped(
      "a folder swapped for an outside symlink never shows the outside, and a neighbour keeps answering",
      () =>
        Effect.gen(function* () {
          const mounts = [{ guestPath: "/libraries/1", hostPath: library }]
          const race = yield* instantiate("wasi-race", mounts)
          const healthy = yield* instantiate("wasi-escape", mounts)
          // The swapped folder by its own name, then through the inside symlink, round after round.
          const inputs = ["swap", "via-link"].map((folder) =>
            Buffer.concat([
              u32(ROUND),
              u32(Buffer.byteLength(marker)),
              u64(statSync(outside, { bigint: true }).ino),
              u64(BigInt(outsideData.length)),
              u32(Buffer.byteLength(folder)),
              Buffer.from(marker),
              Buffer.from(folder)
            ])
          )
          /** The healthy plugin opens and reads notes.txt through the proxy fixture. */
          const readNotes = Effect.gen(function* () {
            const opened = Buffer.from(
              (yield* healthy.call(
                "path_open",
                Buffer.concat([u32(3), u32(1), u32(0), u32(0), u64(2n), u64(2n), Buffer.from("notes.txt")])
              ))!
            )
            expect(opened.readUInt32LE(0)).toBe(Errno.success)
            const fd = opened.readUInt32LE(4)
            const read = Buffer.from((yield* healthy.call("fd_read", Buffer.concat([u32(fd), u32(256)])))!)
            expect(read.readUInt32LE(0)).toBe(Errno.success)
            yield* healthy.call("fd_close", u32(fd))
            return read.subarray(8, 8 + read.readUInt32LE(4)).toString()
          })

          const totals = Object.fromEntries(COUNTERS.map((name) => [name, 0])) as Counts
          const { child, output } = yield* swapper
          const hostFds = () => readdirSync("/proc/self/fd").length
          const idle = hostFds()
          // Long enough that both states of the folder were seen: listings succeed while it is the
          // folder, opens fail while it is the outside symlink. A busy machine just sees fewer rounds.
          const started = Date.now()
          for (let round = 0; Date.now() - started < GIVE_UP_MS; round++) {
            const [out, answer] = yield* Effect.all([race.call("race", inputs[round % 2]!), readNotes], {
              concurrency: 2
            })
            expect(answer).toBe(notes)
            const view = Buffer.from(out!)
            COUNTERS.forEach((name, i) => (totals[name] += view.readUInt32LE(i * 4)))
            if (round >= 1 && Date.now() - started >= RACE_MS && totals.listings > 0 && totals.errors > 0)
              break
          }
          expect(child.exitCode, `the swapper stopped early: ${output()}`).toBeNull()
          const leaks = {
            leakedNames: totals.leakedNames,
            leakedDirIno: totals.leakedDirIno,
            leakedSizes: totals.leakedSizes,
            leakedContent: totals.leakedContent
          }
          expect(leaks, JSON.stringify(totals)).toEqual({
            leakedNames: 0,
            leakedDirIno: 0,
            leakedSizes: 0,
            leakedContent: 0
          })
          // The race really ran both ways, and the folder worked whenever it was the folder.
          expect(totals.listings, JSON.stringify(totals)).toBeGreaterThan(0)
          expect(totals.reads, JSON.stringify(totals)).toBeGreaterThan(0)
          expect(totals.errors, JSON.stringify(totals)).toBeGreaterThan(0)
          // Thousands of walks, failed ones included, left no host descriptor open.
          expect(hostFds()).toBeLessThan(idle + 10)
          // After the race the folder reads as before.
          expect(yield* readNotes).toBe(notes)
        })
    )
  }
)

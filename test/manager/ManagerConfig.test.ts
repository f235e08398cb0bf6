/** Server settings: defaults, the environment, TOML and JSON files, precedence and errors. */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as LogLevel from "effect/LogLevel"
import { writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import * as ManagerConfig from "../../src/manager/ManagerConfig.js"
import { tempDataFolder } from "../support/engine.js"

const load = (options: ManagerConfig.LoadOptions) =>
  ManagerConfig.load({ env: {}, ...options }).pipe(Effect.provide(NodeFileSystem.layer))

const loadError = (options: ManagerConfig.LoadOptions) => Effect.flip(load(options))

/** Writes `text` to `name` in a temporary folder and returns its path. */
const file = (name: string, text: string) =>
  Effect.map(tempDataFolder, (dir) => {
    const path = join(dir, name)
    writeFileSync(path, text)
    return path
  })

describe("ManagerConfig", () => {
  it.effect("defaults mirror Navidrome's [Plugins] block", () =>
    Effect.gen(function* () {
      const settings = yield* load({})
      expect(settings).toEqual({
        enabled: true,
        dataFolder: resolve("ndp-data"),
        folder: resolve("ndp-data", "plugins"),
        autoReload: false,
        logLevel: LogLevel.Info,
        cacheSizeBytes: 200_000_000,
        timeoutMs: 30_000,
        timeoutsMs: {},
        memoryBytes: {},
        workers: undefined,
        agents: [],
        debounceMs: 2_000,
        shutdownTimeoutMs: 10_000
      })
    })
  )

  it.effect("reads NDP_PLUGINS_<KEY> from the environment", () =>
    Effect.gen(function* () {
      const settings = yield* load({
        env: {
          NDP_PLUGINS_ENABLED: "no",
          NDP_PLUGINS_DATAFOLDER: "/srv/ndp",
          NDP_PLUGINS_AUTORELOAD: "TRUE",
          NDP_PLUGINS_LOGLEVEL: "warn",
          NDP_PLUGINS_CACHESIZE: "1GiB",
          NDP_PLUGINS_TIMEOUT: "1m30s",
          NDP_PLUGINS_TIMEOUTS: "slow-one=2m, fast=500ms",
          NDP_PLUGINS_MEMORY: "big=512MiB",
          NDP_PLUGINS_WORKERS: "3",
          NDP_PLUGINS_AGENTS: "lastfm, spotify,my-plugin",
          NDP_PLUGINS_DEBOUNCE: "250",
          NDP_PLUGINS_SHUTDOWNTIMEOUT: "3s"
        }
      })
      expect(settings).toEqual({
        enabled: false,
        dataFolder: "/srv/ndp",
        folder: "/srv/ndp/plugins",
        autoReload: true,
        logLevel: LogLevel.Warning,
        cacheSizeBytes: 1024 ** 3,
        timeoutMs: 90_000,
        timeoutsMs: { "slow-one": 120_000, fast: 500 },
        memoryBytes: { big: 512 * 1024 ** 2 },
        workers: 3,
        agents: ["lastfm", "spotify", "my-plugin"],
        debounceMs: 250,
        shutdownTimeoutMs: 3_000
      })
    })
  )

  it.scoped("reads a TOML file: Navidrome's keys in any case, tables for per-plugin values", () =>
    Effect.gen(function* () {
      const path = yield* file(
        "navidrome.toml",
        [
          'MusicFolder = "/music"', // Navidrome's own keys are ignored
          'DataFolder = "/data"',
          'Agents = "lastfm,spotify"',
          "[Plugins]",
          'Folder = "/plugins"',
          "autoReload = true",
          'CACHESIZE = "50MB"',
          'Timeout = "10s"',
          "[Plugins.Timeouts]",
          '"my-plugin" = "5s"',
          "other = 100",
          "[Plugins.Memory]",
          '"my-plugin" = "64MB"'
        ].join("\n")
      )
      const settings = yield* load({ file: path })
      expect(settings).toMatchObject({
        dataFolder: "/data",
        folder: "/plugins",
        autoReload: true,
        cacheSizeBytes: 50_000_000,
        timeoutMs: 10_000,
        timeoutsMs: { "my-plugin": 5_000, other: 100 },
        memoryBytes: { "my-plugin": 64_000_000 },
        agents: ["lastfm", "spotify"]
      })
    })
  )

  it.scoped("reads a JSON file; the environment beats the file and the command line beats both", () =>
    Effect.gen(function* () {
      const path = yield* file(
        "ndp.json",
        JSON.stringify({
          plugins: { folder: "/f", dataFolder: "/d", agents: ["a", "b"], workers: 2, debounce: 100 }
        })
      )
      expect(yield* load({ file: path })).toMatchObject({
        folder: "/f",
        dataFolder: "/d",
        agents: ["a", "b"],
        workers: 2,
        debounceMs: 100
      })
      const settings = yield* load({
        file: path,
        env: { NDP_PLUGINS_FOLDER: "/env-f", NDP_PLUGINS_WORKERS: "4" },
        overrides: { Folder: "/flag-f" }
      })
      expect(settings).toMatchObject({ folder: "/flag-f", dataFolder: "/d", workers: 4 })
    })
  )

  it.effect("toOptions gives the manager's and the engine's options", () =>
    Effect.gen(function* () {
      const settings = yield* load({
        env: { NDP_PLUGINS_FOLDER: "/p", NDP_PLUGINS_TIMEOUTS: "x=1s", NDP_PLUGINS_WORKERS: "2" }
      })
      const { engine, manager } = ManagerConfig.toOptions(settings, false)
      expect(manager).toMatchObject({
        folder: "/p",
        live: false,
        debounceMs: 2_000,
        drainTimeoutMs: 10_000,
        timeoutsMs: { x: 1_000 }
      })
      expect(engine).toEqual({
        dataFolder: resolve("ndp-data"),
        runtime: { defaultTimeoutMs: 30_000, moduleCacheBytes: 200_000_000, poolSize: 2 }
      })
    })
  )

  it.scoped("errors name the bad key and where it came from", () =>
    Effect.gen(function* () {
      const fromEnv = yield* loadError({ env: { NDP_PLUGINS_CACHESIZE: "lots" } })
      expect(fromEnv).toMatchObject({
        _tag: "ManagerConfigError",
        reason: "Invalid",
        key: "NDP_PLUGINS_CACHESIZE"
      })
      expect(fromEnv.message).toContain('NDP_PLUGINS_CACHESIZE: expected a size like "200MB"')

      const map = yield* loadError({ env: { NDP_PLUGINS_TIMEOUTS: "a=1s,b" } })
      expect(map.message).toContain(
        'NDP_PLUGINS_TIMEOUTS: expected plugin-id=value pairs separated by commas, got "b"'
      )

      const zero = yield* loadError({ env: { NDP_PLUGINS_MEMORY: "x=0" } })
      expect(zero.message).toContain("NDP_PLUGINS_MEMORY: x: expected a size")
      expect(zero.message).toContain("above zero")

      const typo = yield* file("typo.toml", "[Plugins]\nAutoRelaod = true\n")
      const unknown = yield* loadError({ file: typo })
      expect(unknown.key).toBe(`Plugins.AutoRelaod in ${typo}`)
      expect(unknown.message).toContain("unknown key; the keys are Enabled, Folder, AutoReload")

      const badValue = yield* file("bad.json", JSON.stringify({ Plugins: { AutoReload: "perhaps" } }))
      expect((yield* loadError({ file: badValue })).message).toBe(
        `Plugins.AutoReload in ${badValue}: expected true or false, got "perhaps"`
      )

      const badType = yield* file("type.json", JSON.stringify({ Plugins: { Folder: 3 } }))
      expect((yield* loadError({ file: badType })).key).toBe(`Plugins.Folder in ${badType}`)

      const notTable = yield* file("flat.toml", 'Plugins = "yes"\n')
      expect((yield* loadError({ file: notTable })).message).toContain("expected a table ([Plugins])")

      const broken = yield* file("broken.toml", "[Plugins\n")
      expect(yield* loadError({ file: broken })).toMatchObject({ reason: "File" })

      const yaml = yield* file("ndp.yaml", "Plugins: {}\n")
      expect((yield* loadError({ file: yaml })).message).toContain("must end in .toml or .json")
      expect((yield* loadError({ file: "/nonexistent/ndp.toml" })).reason).toBe("File")
    })
  )
})

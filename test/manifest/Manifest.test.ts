import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Option from "effect/Option"
import type { ManifestErrorReason } from "../../src/manifest/Manifest.js"
import {
  checkCapabilityRules,
  decodeManifest,
  defaultKvstoreMaxSizeBytes,
  ManifestError,
  parseByteSize,
  defaultStorageMaxSizeBytes,
  permissionNames
} from "../../src/manifest/Manifest.js"

const base = { name: "Test Plugin", author: "Tester", version: "1.0.0" }

const decode = (value: unknown) => decodeManifest(JSON.stringify(value))

const expectError = (effect: Effect.Effect<unknown, ManifestError>, reason: ManifestErrorReason) =>
  Effect.gen(function* () {
    const result = yield* Effect.either(effect)
    if (Either.isRight(result)) return expect.fail(`expected a ManifestError with reason ${reason}`)
    expect(result.left.reason).toBe(reason)
    return result.left.message
  })

// Shaped like the manifests Navidrome's own examples ship, extra keys and all.
const discordLike = {
  $schema:
    "https://raw.githubusercontent.com/navidrome/navidrome/refs/heads/master/plugins/schema/manifest.schema.json",
  id: "discord-rich-presence",
  name: "Discord Rich Presence",
  author: "Someone",
  version: "1.2.0",
  description: "Shows what you are playing on Discord",
  website: "https://example.org/discord",
  homepage: "https://example.org",
  capabilities: ["Scrobbler", "Scheduler", "WebSocket"],
  experimental: { threads: true },
  permissions: {
    users: { reason: "Process scrobbles on behalf of users" },
    http: { reason: "Discord API", requiredHosts: ["discord.com", "*.discordapp.net"] },
    websocket: { reason: "Gateway", requiredHosts: ["gateway.discord.gg"] },
    cache: { reason: "Connection state" },
    scheduler: { reason: "Heartbeats" },
    artwork: { reason: "Cover art for the presence" },
    config: { reason: "Read settings" },
    futureThing: { anything: [1, 2, 3] }
  },
  config: {
    schema: {
      type: "object",
      properties: {
        clientid: { type: "string", minLength: 17, maxLength: 20, pattern: "^[0-9]+$" },
        users: {
          type: "array",
          items: {
            type: "object",
            properties: { username: { type: "string" }, token: { type: "string" } },
            required: ["username", "token"]
          }
        }
      },
      required: ["clientid"]
    },
    uiSchema: { type: "VerticalLayout", elements: [{ type: "Control", scope: "#/properties/clientid" }] }
  }
}

describe("decodeManifest", () => {
  it.effect("decodes a real-world manifest and ignores keys it does not know", () =>
    Effect.gen(function* () {
      const manifest = yield* decode(discordLike)
      expect(manifest).toEqual({
        name: "Discord Rich Presence",
        author: "Someone",
        version: "1.2.0",
        description: "Shows what you are playing on Discord",
        website: "https://example.org/discord",
        permissions: {
          users: { reason: "Process scrobbles on behalf of users" },
          http: { reason: "Discord API", requiredHosts: ["discord.com", "*.discordapp.net"] },
          websocket: { reason: "Gateway", requiredHosts: ["gateway.discord.gg"] },
          cache: { reason: "Connection state" },
          scheduler: { reason: "Heartbeats" },
          artwork: { reason: "Cover art for the presence" }
        },
        config: { schema: discordLike.config.schema, uiSchema: discordLike.config.uiSchema }
      })
      expect(permissionNames(manifest)).toEqual([
        "http",
        "websocket",
        "cache",
        "scheduler",
        "artwork",
        "users"
      ])
    })
  )

  it.effect("decodes the minimal manifest with no permissions", () =>
    Effect.gen(function* () {
      const manifest = yield* decode(base)
      expect(manifest).toEqual({ ...base, permissions: {} })
      expect(permissionNames(manifest)).toEqual([])
    })
  )

  it.effect("decodes library, kvstore and subsonicapi options", () =>
    Effect.gen(function* () {
      const manifest = yield* decode({
        ...base,
        permissions: {
          library: { reason: "Scan folders", filesystem: true },
          kvstore: { reason: "State", maxSize: "10KB" },
          users: {},
          subsonicapi: { reason: "Browse", allowAdmins: true, allowedUsernames: ["admin"] }
        }
      })
      expect(manifest.permissions.library).toEqual({ reason: "Scan folders", filesystem: true })
      expect(manifest.permissions.kvstore).toEqual({ reason: "State", maxSizeBytes: 10_000 })
      expect(manifest.permissions.subsonicapi).toEqual({
        reason: "Browse",
        allowAdmins: true,
        allowedUsernames: ["admin"]
      })
      expect(permissionNames(manifest)).toEqual(["users", "kvstore", "library", "subsonicapi"])
    })
  )

  it.effect("fills defaults: library.filesystem false, kvstore 1 MiB, empty host lists", () =>
    Effect.gen(function* () {
      const manifest = yield* decode({
        ...base,
        permissions: { library: {}, kvstore: {}, http: {}, websocket: {} }
      })
      expect(manifest.permissions.library).toEqual({ filesystem: false })
      expect(manifest.permissions.kvstore).toEqual({ maxSizeBytes: defaultKvstoreMaxSizeBytes })
      expect(defaultKvstoreMaxSizeBytes).toBe(1_048_576)
      expect(manifest.permissions.http).toEqual({ requiredHosts: [] })
      expect(manifest.permissions.websocket).toEqual({ requiredHosts: [] })
    })
  )

  it.effect("accepts the README draft's allowedHosts and unions it with requiredHosts", () =>
    Effect.gen(function* () {
      const draft = yield* decode({
        ...base,
        permissions: {
          http: { reason: "API", allowedHosts: ["api.example.com", "*.musicbrainz.org"] },
          websocket: { allowedHosts: ["ws.example.com"] }
        }
      })
      expect(draft.permissions.http).toEqual({
        reason: "API",
        requiredHosts: ["api.example.com", "*.musicbrainz.org"]
      })
      expect(draft.permissions.websocket).toEqual({ requiredHosts: ["ws.example.com"] })
      const both = yield* decode({
        ...base,
        permissions: { http: { requiredHosts: ["a.com", "b.com"], allowedHosts: ["b.com", "c.com"] } }
      })
      expect(both.permissions.http).toEqual({ requiredHosts: ["a.com", "b.com", "c.com"] })
      expect(Object.keys(both.permissions.http ?? {})).not.toContain("allowedHosts")
    })
  )

  it.effect("rejects a missing or empty name, author or version, naming the field", () =>
    Effect.gen(function* () {
      for (const field of ["name", "author", "version"] as const) {
        const { [field]: _dropped, ...missing } = base
        const missingMessage = yield* expectError(decode(missing), "Invalid")
        expect(missingMessage).toBe(`manifest.json: ${field}: is required (a non-empty string)`)
        for (const empty of ["", "   "]) {
          const emptyMessage = yield* expectError(decode({ ...base, [field]: empty }), "Invalid")
          expect(emptyMessage).toBe(`manifest.json: ${field}: must not be empty`)
        }
        const wrongType = yield* expectError(decode({ ...base, [field]: 1 }), "Invalid")
        expect(wrongType).toBe(`manifest.json: ${field}: expected a string, got 1`)
      }
    })
  )

  it.effect("lists every problem with its path", () =>
    Effect.gen(function* () {
      const message = yield* expectError(
        decode({
          name: "",
          version: "1",
          description: 5,
          permissions: {
            http: { requiredHosts: ["ok.com", 7] },
            library: { filesystem: "yes" },
            kvstore: { maxSize: "lots" },
            cache: "please"
          },
          config: { uiSchema: {} }
        }),
        "Invalid"
      )
      const lines = message.split("\n")
      expect(lines).toEqual(
        expect.arrayContaining([
          "manifest.json: name: must not be empty",
          "manifest.json: author: is required (a non-empty string)",
          "manifest.json: description: expected a string, got 5",
          "manifest.json: permissions.http.requiredHosts[1]: expected a string, got 7",
          'manifest.json: permissions.library.filesystem: expected true or false, got "yes"',
          'manifest.json: permissions.cache: expected an object, got "please"',
          "manifest.json: config.schema: is required when config is present (a JSON Schema object)"
        ])
      )
      expect(message).toContain(
        'manifest.json: permissions.kvstore.maxSize: expected a size like "1MB" or "512KiB", got "lots"'
      )
      expect(lines).toHaveLength(8)
    })
  )

  it.effect("rejects config.schema that is not an object", () =>
    Effect.gen(function* () {
      for (const schema of [[], "object", true, 3]) {
        const message = yield* expectError(decode({ ...base, config: { schema } }), "Invalid")
        expect(message).toContain("manifest.json: config.schema: expected a JSON object")
      }
    })
  )

  it.effect("rejects JSON that is not an object", () =>
    Effect.gen(function* () {
      for (const json of ["[]", "5", '"name"', "null", "true"]) {
        const message = yield* expectError(decodeManifest(json), "Invalid")
        expect(message).toMatch(/^manifest\.json: expected a JSON object, got /)
      }
    })
  )

  it.effect("reports text that is not JSON with the parser's message", () =>
    Effect.gen(function* () {
      for (const json of ["", "{", "{name: 1}", "{} trailing"]) {
        const message = yield* expectError(decodeManifest(json), "InvalidJson")
        expect(message).toMatch(/^manifest\.json is not valid JSON: ./)
      }
    })
  )

  it.effect("treats null members as absent, as Go does", () =>
    Effect.gen(function* () {
      const manifest = yield* decode({
        ...base,
        description: null,
        permissions: { http: { requiredHosts: null, reason: null }, kvstore: { maxSize: null }, cache: null }
      })
      expect(manifest).toEqual({
        ...base,
        permissions: { http: { requiredHosts: [] }, kvstore: { maxSizeBytes: defaultKvstoreMaxSizeBytes } }
      })
      yield* expectError(decode({ ...base, name: null }), "Invalid")
    })
  )

  it.effect("requires the users permission alongside subsonicapi", () =>
    Effect.gen(function* () {
      const message = yield* expectError(
        decode({ ...base, permissions: { subsonicapi: { reason: "Browse" } } }),
        "Invalid"
      )
      expect(message).toContain("permissions.subsonicapi")
      expect(message).toContain('add "users": {} to permissions')
      yield* decode({ ...base, permissions: { subsonicapi: {}, users: {} } })
    })
  )

  it.effect("requires library alongside matcher and users alongside scrobbleRetriever", () =>
    Effect.gen(function* () {
      const matcher = yield* expectError(decode({ ...base, permissions: { matcher: {} } }), "Invalid")
      expect(matcher).toContain("permissions.matcher")
      expect(matcher).toContain('add "library": {} to permissions')
      const retriever = yield* expectError(
        decode({ ...base, permissions: { scrobbleRetriever: {}, matcher: {} } }),
        "Invalid"
      )
      expect(retriever).toContain('permissions.scrobbleRetriever: requires the "users" permission')
      expect(retriever).toContain('permissions.matcher: requires the "library" permission')
      const both = yield* decode({
        ...base,
        permissions: { matcher: {}, library: {}, scrobbleRetriever: {}, users: {} }
      })
      expect(permissionNames(both)).toEqual(["users", "library", "matcher", "scrobbleRetriever"])
    })
  )

  it.effect("decodes taskqueue and storage with their defaults and refuses bad values", () =>
    Effect.gen(function* () {
      const defaults = yield* decode({ ...base, permissions: { taskqueue: {}, storage: {} } })
      expect(defaults.permissions.taskqueue).toEqual({ maxConcurrency: 1 })
      expect(defaults.permissions.storage).toEqual({ maxSizeBytes: defaultStorageMaxSizeBytes })
      const set = yield* decode({
        ...base,
        permissions: { taskqueue: { maxConcurrency: 3, reason: "r" }, storage: { maxSize: "2MB" } }
      })
      expect(set.permissions.taskqueue).toEqual({ maxConcurrency: 3, reason: "r" })
      expect(set.permissions.storage).toEqual({ maxSizeBytes: 2_000_000 })
      const zero = yield* expectError(
        decode({ ...base, permissions: { taskqueue: { maxConcurrency: 0 } } }),
        "Invalid"
      )
      expect(zero).toContain("permissions.taskqueue.maxConcurrency: must be at least 1")
      const fraction = yield* expectError(
        decode({ ...base, permissions: { taskqueue: { maxConcurrency: 1.5 } } }),
        "Invalid"
      )
      expect(fraction).toContain("expected a whole number, got 1.5")
      yield* expectError(decode({ ...base, permissions: { storage: { maxSize: "lots" } } }), "Invalid")
    })
  )

  it.effect.prop(
    "never throws on arbitrary JSON",
    [FastCheck.jsonValue()],
    ([value]) =>
      Effect.gen(function* () {
        const result = yield* Effect.either(decodeManifest(JSON.stringify(value)))
        if (Either.isLeft(result)) expect(result.left).toBeInstanceOf(ManifestError)
      }),
    { fastCheck: { numRuns: 300 } }
  )

  it.effect.prop(
    "ignores unknown keys next to a valid manifest",
    [FastCheck.dictionary(FastCheck.string(), FastCheck.jsonValue(), { maxKeys: 6 })],
    ([extra]) =>
      Effect.gen(function* () {
        const known = new Set([
          "name",
          "author",
          "version",
          "description",
          "website",
          "permissions",
          "config"
        ])
        const entries = Object.entries(extra).filter(([key]) => !known.has(key))
        const manifest = yield* decode(Object.fromEntries([...entries, ...Object.entries(discordLike)]))
        expect(manifest.name).toBe(discordLike.name)
        expect(Object.keys(manifest).sort()).toEqual(
          ["author", "config", "description", "name", "permissions", "version", "website"].sort()
        )
      }),
    { fastCheck: { numRuns: 100 } }
  )
})

describe("kvstore maxSize", () => {
  const sizes: ReadonlyArray<readonly [string, number]> = [
    ["1MB", 1_000_000],
    ["10KB", 10_000],
    ["1KB", 1000],
    ["1GB", 1_000_000_000],
    ["1MiB", 1_048_576],
    ["1KiB", 1024],
    ["1GiB", 1_073_741_824],
    ["500", 500],
    ["500B", 500],
    ["500b", 500],
    ["1mb", 1_000_000],
    ["1mib", 1_048_576],
    ["2 MB", 2_000_000],
    [" 4 KiB ", 4096],
    ["1.5MB", 1_500_000],
    ["0.5KiB", 512],
    ["1K", 1000],
    ["1Ki", 1024]
  ]

  it.effect("parses SI and IEC sizes", () =>
    Effect.gen(function* () {
      for (const [text, bytes] of sizes) {
        expect(parseByteSize(text)).toEqual(Option.some(bytes))
        const manifest = yield* decode({ ...base, permissions: { kvstore: { maxSize: text } } })
        expect(manifest.permissions.kvstore?.maxSizeBytes).toBe(bytes)
      }
    })
  )

  it.effect("rejects what is not a positive size, naming the field and the accepted forms", () =>
    Effect.gen(function* () {
      for (const bad of ["lots", "", "MB", "1 XB", "-1MB", "1,5MB", "1e6", true, [], {}]) {
        const message = yield* expectError(
          decode({ ...base, permissions: { kvstore: { maxSize: bad } } }),
          "Invalid"
        )
        expect(message).toBe(
          `manifest.json: permissions.kvstore.maxSize: expected a size like "1MB" or "512KiB", got ${JSON.stringify(bad)} (units: B, KB, MB, GB, KiB, MiB, GiB)`
        )
      }
      for (const zero of ["0", "0MB", "0.1B", 0, -5]) {
        const message = yield* expectError(
          decode({ ...base, permissions: { kvstore: { maxSize: zero } } }),
          "Invalid"
        )
        expect(message).toContain("permissions.kvstore.maxSize: must be greater than zero")
      }
    })
  )

  it.effect("accepts a plain number of bytes", () =>
    Effect.gen(function* () {
      const manifest = yield* decode({ ...base, permissions: { kvstore: { maxSize: 2048 } } })
      expect(manifest.permissions.kvstore?.maxSizeBytes).toBe(2048)
    })
  )
})

describe("checkCapabilityRules", () => {
  it.effect("requires the users permission for a Scrobbler", () =>
    Effect.gen(function* () {
      const without = yield* decode({ ...base, permissions: { http: { requiredHosts: ["x.com"] } } })
      const message = yield* expectError(
        checkCapabilityRules(without, ["MetadataAgent", "Scrobbler"]),
        "Invalid"
      )
      expect(message).toContain('"users" permission')
      const withUsers = yield* decode({ ...base, permissions: { users: {} } })
      expect(yield* checkCapabilityRules(withUsers, ["Scrobbler"])).toEqual({ warnings: [] })
      expect(yield* checkCapabilityRules(without, ["MetadataAgent"])).toEqual({ warnings: [] })
    })
  )

  it.effect("refuses scheduler without nd_scheduler_callback and taskqueue without nd_task_execute", () =>
    Effect.gen(function* () {
      const scheduler = yield* decode({ ...base, permissions: { scheduler: {} } })
      const message = yield* expectError(checkCapabilityRules(scheduler, ["MetadataAgent"]), "Invalid")
      expect(message).toContain('"scheduler" permission requires the plugin to export nd_scheduler_callback')
      expect(yield* checkCapabilityRules(scheduler, ["Scheduler"])).toEqual({ warnings: [] })

      const taskqueue = yield* decode({ ...base, permissions: { taskqueue: {} } })
      const taskMessage = yield* expectError(checkCapabilityRules(taskqueue, ["Scheduler"]), "Invalid")
      expect(taskMessage).toContain('"taskqueue" permission requires the plugin to export nd_task_execute')
      expect(yield* checkCapabilityRules(taskqueue, ["TaskWorker"])).toEqual({ warnings: [] })
    })
  )
})

import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import type { Manifest } from "../../src/manifest/Manifest.js"
import { decodeManifest } from "../../src/manifest/Manifest.js"
import type { ConfigErrorReason, ConfigObject } from "../../src/manifest/PluginConfig.js"
import {
  ConfigError,
  flattenConfig,
  parseConfigPairs,
  validateConfig
} from "../../src/manifest/PluginConfig.js"

const manifestWith = (config?: unknown): Effect.Effect<Manifest, unknown> =>
  decodeManifest(
    JSON.stringify({ name: "p", author: "a", version: "1", ...(config === undefined ? {} : { config }) })
  )

const expectError = (effect: Effect.Effect<unknown, ConfigError>, reason: ConfigErrorReason) =>
  Effect.gen(function* () {
    const result = yield* Effect.either(effect)
    if (Either.isRight(result)) return expect.fail(`expected a ConfigError with reason ${reason}`)
    expect(result.left).toBeInstanceOf(ConfigError)
    expect(result.left.reason).toBe(reason)
    return result.left
  })

const discordSchema = {
  type: "object",
  properties: {
    clientid: { type: "string", minLength: 17, maxLength: 20, pattern: "^[0-9]+$" },
    users: {
      type: "array",
      items: {
        type: "object",
        properties: { username: { type: "string", minLength: 1 }, token: { type: "string", minLength: 1 } },
        required: ["username", "token"]
      }
    }
  },
  required: ["clientid"]
}

describe("validateConfig", () => {
  it.effect("accepts any object when the manifest has no schema, and only objects", () =>
    Effect.gen(function* () {
      const manifest = yield* manifestWith()
      const config = { anything: [1, { deep: true }], n: 30 }
      expect(yield* validateConfig(manifest, config)).toBe(config)
      expect(yield* validateConfig(manifest, {})).toEqual({})
      for (const bad of [[], null, "x", 5, undefined]) {
        const error = yield* expectError(validateConfig(manifest, bad), "Invalid")
        expect(error.message).toBe("config: must be a JSON object")
        expect(error.issues).toEqual([{ path: "", message: "must be a JSON object" }])
      }
    })
  )

  it.effect("validates against config.schema, reporting each field", () =>
    Effect.gen(function* () {
      const manifest = yield* manifestWith({ schema: discordSchema })
      yield* validateConfig(manifest, { clientid: "123456789012345678" })
      yield* validateConfig(manifest, {
        clientid: "123456789012345678",
        users: [{ username: "alice", token: "t" }]
      })
      const error = yield* expectError(
        validateConfig(manifest, { clientid: 5, users: [{ username: "" }, "bob"] }),
        "Invalid"
      )
      expect(error.issues).toEqual(
        expect.arrayContaining([
          { path: "clientid", message: "must be string" },
          { path: "users[0].token", message: "is required" },
          { path: "users[0].username", message: "must NOT have fewer than 1 characters" },
          { path: "users[1]", message: "must be object" }
        ])
      )
      expect(error.message.split("\n")).toEqual(
        expect.arrayContaining([
          "config.clientid: must be string",
          "config.users[0].token: is required",
          "config.users[1]: must be object"
        ])
      )
      const missing = yield* expectError(validateConfig(manifest, {}), "Invalid")
      expect(missing.message).toBe("config.clientid: is required")
    })
  )

  it.effect("names unknown settings, allowed values and odd keys", () =>
    Effect.gen(function* () {
      const manifest = yield* manifestWith({
        schema: {
          type: "object",
          properties: {
            apiKey: { type: "string" },
            mode: { enum: ["fast", "slow"] },
            "odd key": { type: "integer" }
          },
          additionalProperties: false
        }
      })
      const error = yield* expectError(
        validateConfig(manifest, { apiKey: 1, mode: "medium", "odd key": 1.5, extra: true }),
        "Invalid"
      )
      expect(error.message.split("\n").sort()).toEqual(
        [
          "config.apiKey: must be string",
          'config.mode: must be equal to one of the allowed values: "fast", "slow"',
          'config["odd key"]: must be integer',
          "config.extra: is not a known setting"
        ].sort()
      )
    })
  )

  it.effect("compiles real-world schemas with unknown keywords and formats", () =>
    Effect.gen(function* () {
      const manifest = yield* manifestWith({
        schema: {
          type: "object",
          properties: {
            url: { type: "string", format: "uri", "x-jsonforms": { multi: true } },
            secret: { type: "string", format: "password", options: { masked: true } }
          }
        },
        uiSchema: { type: "VerticalLayout", elements: [] }
      })
      yield* validateConfig(manifest, { url: "https://example.com/hook", secret: "s" })
      const error = yield* expectError(validateConfig(manifest, { url: "not a url" }), "Invalid")
      expect(error.message).toBe('config.url: must match format "uri"')
    })
  )

  it.effect("honours the schema's declared draft", () =>
    Effect.gen(function* () {
      const draft2020 = yield* manifestWith({
        schema: {
          $schema: "https://json-schema.org/draft/2020-12/schema",
          type: "object",
          properties: { tags: { type: "array", prefixItems: [{ type: "string" }] } }
        }
      })
      yield* validateConfig(draft2020, { tags: ["a", 1] })
      yield* expectError(validateConfig(draft2020, { tags: [1] }), "Invalid")
      const draft04 = yield* manifestWith({
        schema: { $schema: "http://json-schema.org/draft-04/schema#", type: "object", required: ["a"] }
      })
      yield* expectError(validateConfig(draft04, {}), "Invalid")
      const draft07 = yield* manifestWith({
        schema: { $schema: "http://json-schema.org/draft-07/schema#", type: "object", required: ["a"] }
      })
      yield* validateConfig(draft07, { a: 1 })
    })
  )

  it.effect("reports a schema that is not a valid JSON Schema", () =>
    Effect.gen(function* () {
      const manifest = yield* manifestWith({ schema: { type: "nope" } })
      const error = yield* expectError(validateConfig(manifest, {}), "InvalidSchema")
      expect(error.message).toContain("config.schema is not a valid JSON Schema")
      // Compiled once and remembered: the second call gives the same answer.
      const again = yield* expectError(validateConfig(manifest, {}), "InvalidSchema")
      expect(again.message).toBe(error.message)
      const badRef = yield* manifestWith({ schema: { $ref: "#/definitions/missing" } })
      yield* expectError(validateConfig(badRef, {}), "InvalidSchema")
    })
  )

  it.effect("does not clash on schemas sharing an $id", () =>
    Effect.gen(function* () {
      const a = yield* manifestWith({
        schema: { $id: "https://example.com/plugin.json", type: "object", required: ["a"] }
      })
      const b = yield* manifestWith({
        schema: { $id: "https://example.com/plugin.json", type: "object", required: ["b"] }
      })
      yield* validateConfig(a, { a: 1 })
      yield* validateConfig(b, { b: 1 })
      yield* expectError(validateConfig(b, { a: 1 }), "Invalid")
    })
  )

  it.effect("does not coerce: CLI strings fail a numeric schema", () =>
    Effect.gen(function* () {
      const manifest = yield* manifestWith({
        schema: { type: "object", properties: { port: { type: "integer" } } }
      })
      const config = yield* parseConfigPairs(["port=30"])
      const error = yield* expectError(validateConfig(manifest, config), "Invalid")
      expect(error.message).toBe("config.port: must be integer")
    })
  )
})

describe("flattenConfig", () => {
  it("flattens values to strings, sorting object keys", () => {
    expect(
      flattenConfig({
        s: "text",
        empty: "",
        n: 30,
        f: 1.5,
        neg: -2,
        t: true,
        b: false,
        a: [1],
        nested: [{ z: 1, y: [2, { d: 1, c: 2 }] }],
        o: { b: 1, a: 2 },
        nul: null,
        quoted: '"already json"'
      })
    ).toEqual({
      s: "text",
      empty: "",
      n: "30",
      f: "1.5",
      neg: "-2",
      t: "true",
      b: "false",
      a: "[1]",
      nested: '[{"y":[2,{"c":2,"d":1}],"z":1}]',
      o: '{"a":2,"b":1}',
      nul: "null",
      quoted: '"already json"'
    })
  })

  it("sorts keys by code point, as Go does", () => {
    const astral = "\u{1F600}"
    const high = "\uFF01"
    expect(flattenConfig({ o: { [astral]: 1, [high]: 2, a: 3 } })).toEqual({
      o: `{"a":3,"${high}":2,"${astral}":1}`
    })
  })

  it("keeps a __proto__ key as an ordinary key", () => {
    const config = JSON.parse('{"__proto__": 1, "x": {"__proto__": 2}}') as ConfigObject
    const flat = flattenConfig(config)
    expect(Object.keys(flat).sort()).toEqual(["__proto__", "x"])
    expect(flat["x"]).toBe('{"__proto__":2}')
    expect(Object.getPrototypeOf(flat)).toBe(Object.prototype)
  })

  const reorder = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(reorder)
    if (typeof value === "object" && value !== null) {
      return Object.fromEntries(
        Object.entries(value)
          .reverse()
          .map(([k, v]) => [k, reorder(v)])
      )
    }
    return value
  }

  it.prop(
    "gives strings and ignores key order",
    [FastCheck.dictionary(FastCheck.string(), FastCheck.jsonValue())],
    ([config]) => {
      const flat = flattenConfig(config)
      expect(Object.keys(flat).sort()).toEqual(Object.keys(config).sort())
      for (const value of Object.values(flat)) expect(typeof value).toBe("string")
      expect(flattenConfig(reorder(config) as ConfigObject)).toEqual(flat)
      for (const [key, value] of Object.entries(config)) {
        if (typeof value !== "string")
          expect(JSON.parse(flat[key]!)).toEqual(JSON.parse(JSON.stringify(value)))
      }
    }
  )
})

describe("parseConfigPairs", () => {
  it.effect("splits at the first '=' and keeps values as strings", () =>
    Effect.gen(function* () {
      expect(
        yield* parseConfigPairs([
          "apiKey=abc",
          "url=https://x.com/?a=b&c=d",
          "empty=",
          "n=30",
          "n2=true",
          "apiKey=last"
        ])
      ).toEqual({ apiKey: "last", url: "https://x.com/?a=b&c=d", empty: "", n: "30", n2: "true" })
      expect(yield* parseConfigPairs([])).toEqual({})
    })
  )

  it.effect("rejects pairs without a key or without '='", () =>
    Effect.gen(function* () {
      const noEquals = yield* expectError(parseConfigPairs(["ok=1", "apiKey"]), "InvalidPair")
      expect(noEquals.message).toContain('"apiKey"')
      expect(noEquals.message).toContain("key=value")
      const noKey = yield* expectError(parseConfigPairs(["=value"]), "InvalidPair")
      expect(noKey.message).toContain("empty key")
    })
  )
})

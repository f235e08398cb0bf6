import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Schema from "effect/Schema"
import * as ConfigService from "../../src/host/config/ConfigService.js"
import {
  Bytes,
  decodeRequest,
  encodeResponse,
  hostFunction,
  normaliseKeys,
  omitZero
} from "../../src/host/HostCodec.js"

const encoder = new TextEncoder()
const decode = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes)) as unknown

const json = FastCheck.jsonValue()

describe("host JSON codecs", () => {
  it("omits Go zero values but keeps present-but-empty markers and array items", () => {
    expect(omitZero({ value: "", exists: true })).toEqual({ exists: true })
    expect(omitZero({ keys: [], count: 0, ok: false, none: null, nested: { a: "" } })).toEqual({})
    expect(omitZero({ list: [0, "", { a: 1, b: 0 }] })).toEqual({ list: [0, "", { a: 1 }] })
  })

  it("accepts the README draft's snake_case request fields, but never renames map keys", () => {
    expect(
      normaliseKeys({
        ttl_seconds: 5,
        schedule_id: "x",
        request: { timeout_ms: 100, headers: { x_api_key: "k" } },
        headers: { x_trace_id: "t" }
      })
    ).toEqual({
      ttl_seconds: 5,
      ttlSeconds: 5,
      schedule_id: "x",
      scheduleId: "x",
      request: { timeout_ms: 100, timeoutMs: 100, headers: { x_api_key: "k" } },
      headers: { x_trace_id: "t" }
    })
    // The canonical spelling wins when both are present.
    expect(normaliseKeys({ ttl_seconds: 5, ttlSeconds: 7 })).toMatchObject({ ttlSeconds: 7 })
    // A member called __proto__ stays data.
    const odd = normaliseKeys(JSON.parse('{"__proto__":{"polluted":true}}')) as Record<string, unknown>
    expect(Object.getPrototypeOf(odd)).toBe(Object.prototype)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it.effect("bytes decode from padded base64 and from arrays of numbers", () =>
    Effect.gen(function* () {
      const fromBase64 = yield* Schema.decodeUnknown(Bytes)("AAEC/w==")
      expect(Array.from(fromBase64)).toEqual([0, 1, 2, 255])
      const fromArray = yield* Schema.decodeUnknown(Bytes)([0, 1, 2, 255])
      expect(Array.from(fromArray)).toEqual([0, 1, 2, 255])
      expect((yield* Effect.either(Schema.decodeUnknown(Bytes)([256])))._tag).toBe("Left")
    })
  )

  it.prop(
    "arbitrary request bytes never throw: a typed error or a value",
    [FastCheck.uint8Array({ maxLength: 200 })],
    ([bytes]) => {
      const result = Effect.runSync(
        Effect.either(decodeRequest(Schema.Struct({ key: Schema.String }))(bytes))
      )
      if (result._tag === "Left") expect(result.left._tag).toBe("HostCallError")
    }
  )

  it.prop("arbitrary JSON requests never throw and answer valid JSON", [json], ([value]) => {
    const handler = hostFunction("echo", Schema.Struct({ key: Schema.String }), ({ key }) =>
      Effect.succeed({ key })
    )
    const reply = decode(Effect.runSync(handler(encoder.encode(JSON.stringify(value)))))
    expect(typeof reply).toBe("object")
  })

  it.prop("omitZero output never contains a zero-valued member", [json], ([value]) => {
    const visit = (v: unknown): void => {
      if (Array.isArray(v)) {
        v.forEach(visit)
      } else if (v !== null && typeof v === "object") {
        for (const member of Object.values(v)) {
          expect([undefined, null, false, 0, ""]).not.toContain(member)
          visit(member)
        }
      }
    }
    visit(omitZero(value))
    expect(() => encodeResponse(value)).not.toThrow()
  })

  it.prop(
    "bytes survive base64 and number-array encodings",
    [FastCheck.uint8Array({ maxLength: 300 })],
    ([bytes]) => {
      const viaBase64 = Effect.runSync(Schema.decodeUnknown(Bytes)(Buffer.from(bytes).toString("base64")))
      const viaArray = Effect.runSync(Schema.decodeUnknown(Bytes)(Array.from(bytes)))
      expect(Buffer.from(viaBase64).equals(bytes)).toBe(true)
      expect(Buffer.from(viaArray).equals(bytes)).toBe(true)
    }
  )
})

describe("Config host service", () => {
  const config = {
    apiKey: "k-1",
    "api.region": "eu",
    retries: "3",
    big: "99999999999999999999",
    neg: "-42",
    name: ""
  }
  const fns = ConfigService.functions(config)
  const call = (fn: keyof typeof fns, request: unknown) =>
    Effect.map(fns[fn](encoder.encode(JSON.stringify(request))), decode)

  it.effect("config_get answers value/exists, {} for a miss, {exists} for an empty value", () =>
    Effect.gen(function* () {
      expect(yield* call("config_get", { key: "apiKey" })).toEqual({ value: "k-1", exists: true })
      expect(yield* call("config_get", { key: "missing" })).toEqual({})
      expect(yield* call("config_get", { key: "name" })).toEqual({ exists: true })
      expect(yield* call("config_get", { key: "__proto__" })).toEqual({})
    })
  )

  it.effect("config_getint parses base-10 integers only", () =>
    Effect.gen(function* () {
      expect(yield* call("config_getint", { key: "retries" })).toEqual({ value: 3, exists: true })
      expect(yield* call("config_getint", { key: "neg" })).toEqual({ value: -42, exists: true })
      expect(yield* call("config_getint", { key: "apiKey" })).toEqual({})
      expect(yield* call("config_getint", { key: "big" })).toEqual({})
    })
  )

  it.effect("config_keys lists keys with a prefix, sorted", () =>
    Effect.gen(function* () {
      expect(yield* call("config_keys", { prefix: "api" })).toEqual({ keys: ["api.region", "apiKey"] })
      expect(yield* call("config_keys", {})).toEqual({ keys: Object.keys(config).sort() })
      expect(yield* call("config_keys", { prefix: "zzz" })).toEqual({})
    })
  )

  it.effect("a malformed request is an in-band error, never a trap", () =>
    Effect.gen(function* () {
      const reply = (yield* Effect.map(fns.config_get(encoder.encode("{not json")), decode)) as {
        error: string
      }
      expect(reply.error).toContain("invalid request")
      const wrongType = (yield* call("config_get", { key: 5 })) as { error: string }
      expect(wrongType.error).toContain("key")
    })
  )
})

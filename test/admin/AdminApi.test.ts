/**
 * The admin API through a real HTTP server on 127.0.0.1, over a real manager and real plugins:
 * the token check, every endpoint's happy path and its bad input, a config that fails the schema
 * (field errors, nothing changed), the metrics, and a change made by `ndp plugins` in another
 * process showing up.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { copyFileSync } from "node:fs"
import { request as httpRequest } from "node:http"
import { join } from "node:path"
import { ndp, killAll } from "../support/cli.js"
import { fixture } from "../support/fixtures.js"
import { captureLogs } from "../support/logs.js"
import { makeFolders } from "../support/manager.js"
import { realSleep } from "../support/wait.js"
import { type Admin, startAdmin } from "./support.js"

afterAll(killAll)

/** Response bodies, read field by field in assertions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any

const call = (admin: Admin, ...args: Parameters<Admin["request"]>) =>
  Effect.promise(() => admin.request(...args))

/** Polls until `check` holds on a response, on real time (the server runs on its own). */
const until = (admin: Admin, path: string, check: (body: Json) => boolean, what: string) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 60_000
    for (;;) {
      const r = yield* call(admin, path)
      if (r.status === 200 && check(r.body)) return r.body
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for ${what}: ${r.text}`)
      yield* realSleep(50)
    }
  })

describe("admin API", () => {
  it.scopedLive("refuses a request without the token or with a wrong one, and logs every refusal", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["agent-full"])
      const logs = captureLogs()
      const admin = yield* logs.provide(startAdmin(folders))
      for (const path of ["/api/plugins", "/api/plugins/agent-full", "/api/metrics", "/metrics"]) {
        const missing = yield* call(admin, path, { token: null })
        expect(missing.status).toBe(401)
        const wrong = yield* call(admin, path, { token: "test-admin-token-0123456788" })
        expect(wrong.status).toBe(401)
      }
      const refusedChange = yield* call(admin, "/api/plugins/agent-full/enable", { body: {}, token: "nope" })
      expect(refusedChange.status).toBe(401)
      expect(refusedChange.body).toMatchObject({ _tag: "Unauthorized" })
      expect(
        logs.lines.filter((l) => l.level === "WARN" && l.message.includes("refused a request")).length
      ).toBe(9)
      // Nothing changed by the refused request.
      const listed = yield* call(admin, "/api/plugins")
      expect(listed.status).toBe(200)
      expect(listed.body[0]).toMatchObject({ id: "agent-full", enabled: false })
    })
  )

  it.scopedLive(
    "lists and details plugins: state, SHA-256, capabilities, permissions with reasons, schema",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders(["agent-full", "scrobbler", "configurable"])
        const admin = yield* startAdmin(folders)
        const listed = yield* call(admin, "/api/plugins")
        expect(listed.status).toBe(200)
        expect(listed.body.map((p: Json) => [p.id, p.state, p.capabilities])).toEqual([
          ["agent-full", "disabled", ["MetadataAgent"]],
          ["configurable", "disabled", []],
          ["scrobbler", "disabled", ["Scrobbler"]]
        ])
        const scrobbler = listed.body.find((p: Json) => p.id === "scrobbler")
        expect(scrobbler.sha256).toMatch(/^[0-9a-f]{64}$/)
        expect(scrobbler.permissions).toEqual([
          { name: "users", reason: "Scrobbles on behalf of the users the admin allows", details: {} }
        ])
        const detail = yield* call(admin, "/api/plugins/configurable")
        expect(detail.status).toBe(200)
        expect(detail.body).toMatchObject({
          id: "configurable",
          version: "1.2.0",
          hasConfig: true,
          config: {},
          configSchema: { type: "object", properties: { retries: { type: "integer" } } },
          uiSchema: { "ui:order": ["mode", "apiKey", "retries", "verbose"] },
          manifest: { name: "configurable" }
        })
        const missing = yield* call(admin, "/api/plugins/nope")
        expect(missing.status).toBe(404)
        expect(missing.body).toMatchObject({ _tag: "PluginNotFound", pluginId: "nope" })
        const openapi = yield* call(admin, "/api/openapi.json")
        expect(openapi.status).toBe(200)
        expect(Object.keys(openapi.body.paths)).toEqual(
          expect.arrayContaining([
            "/api/plugins",
            "/api/plugins/{id}",
            "/api/plugins/{id}/config",
            "/api/metrics"
          ])
        )
      })
  )

  it.scopedLive(
    "enable and disable with grants; bad grants are a 400 naming the field; the gate is a 409",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders(["scrobbler"])
        const admin = yield* startAdmin(folders)
        const gated = yield* call(admin, "/api/plugins/scrobbler/enable", { body: {} })
        expect(gated.status).toBe(409)
        expect(gated.body).toMatchObject({ _tag: "Refused", reason: "PermissionGate" })
        const badUsers = yield* call(admin, "/api/plugins/scrobbler/enable", { body: { users: 5 } })
        expect(badUsers.status).toBe(400)
        expect(badUsers.body.issues.map((i: Json) => i.path)).toContainEqual(["users"])
        const badLibrary = yield* call(admin, "/api/plugins/scrobbler/grants", {
          method: "PUT",
          body: { libraries: [-1] }
        })
        expect(badLibrary.status).toBe(400)
        expect(badLibrary.body.issues.map((i: Json) => i.path[0])).toContain("libraries")
        const badJson = yield* call(admin, "/api/plugins/scrobbler/enable", { rawBody: "{not json" })
        expect(badJson.status).toBe(400)
        const wildcard = yield* call(admin, "/api/plugins/scrobbler/grants", {
          method: "PUT",
          body: { networks: ["*.example.com"] }
        })
        expect(wildcard.status).toBe(400)
        expect(wildcard.body).toMatchObject({ _tag: "InvalidGrant", field: "networks" })

        const enabled = yield* call(admin, "/api/plugins/scrobbler/enable", {
          body: { users: ["ana"], networks: ["127.0.0.1/32"] }
        })
        expect(enabled.status).toBe(200)
        expect(enabled.body).toMatchObject({
          state: "loaded",
          enabled: true,
          users: ["ana"],
          networks: ["127.0.0.1/32"]
        })
        const granted = yield* call(admin, "/api/plugins/scrobbler/grants", {
          method: "PUT",
          body: { users: "all", libraries: [1, 2] }
        })
        expect(granted.status).toBe(200)
        expect(granted.body).toMatchObject({ users: "all", libraries: [1, 2], networks: ["127.0.0.1/32"] })
        const disabled = yield* call(admin, "/api/plugins/scrobbler/disable", { method: "POST" })
        expect(disabled.status).toBe(200)
        expect(disabled.body).toMatchObject({ state: "disabled", enabled: false, loaded: false })
        expect((yield* call(admin, "/api/plugins/nope/disable", { method: "POST" })).status).toBe(404)
      })
  )

  it.scopedLive(
    "config: get, set, unset, replace; a config failing the schema returns the field errors and changes nothing",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders(["configurable"])
        const admin = yield* startAdmin(folders)
        const path = "/api/plugins/configurable/config"
        const set = yield* call(admin, path, { method: "PATCH", body: { set: { retries: 2, mode: "fast" } } })
        expect(set.status).toBe(200)
        expect((yield* call(admin, path)).body).toEqual({ config: { retries: 2, mode: "fast" } })

        const bad = yield* call(admin, path, {
          method: "PATCH",
          body: { set: { retries: 99, mode: "slow", apiKey: "ab" } }
        })
        expect(bad.status).toBe(400)
        expect(bad.body._tag).toBe("InvalidConfig")
        expect(bad.body.issues.map((i: Json) => i.path).sort()).toEqual(["apiKey", "mode", "retries"])
        expect(bad.body.issues.find((i: Json) => i.path === "retries").message).toMatch(/<= 10/)
        expect((yield* call(admin, path)).body).toEqual({ config: { retries: 2, mode: "fast" } })
        const unknownKey = yield* call(admin, path, { method: "PUT", body: { config: { colour: "red" } } })
        expect(unknownKey.status).toBe(400)
        expect((yield* call(admin, path)).body).toEqual({ config: { retries: 2, mode: "fast" } })
        const notObject = yield* call(admin, path, { method: "PUT", body: { config: [1] } })
        expect(notObject.status).toBe(400)
        expect(notObject.body.issues[0].path).toEqual(["config"])

        const unset = yield* call(admin, path, { method: "PATCH", body: { unset: ["mode"] } })
        expect(unset.status).toBe(200)
        expect((yield* call(admin, path)).body).toEqual({ config: { retries: 2 } })
        const replaced = yield* call(admin, path, { method: "PUT", body: { config: { verbose: true } } })
        expect(replaced.status).toBe(200)
        expect((yield* call(admin, path)).body).toEqual({ config: { verbose: true } })
        expect((yield* call(admin, "/api/plugins/nope/config")).status).toBe(404)
      })
  )

  it.scopedLive("rescan, logs with a level filter, and calling an export", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["configurable"])
      const admin = yield* startAdmin(folders)
      copyFileSync(fixture("agent-full"), join(folders.folder, "agent-full.ndp"))
      const rescanned = yield* call(admin, "/api/rescan", { method: "POST" })
      expect(rescanned.status).toBe(200)
      expect(rescanned.body.map((p: Json) => p.id)).toEqual(["agent-full", "configurable"])

      const notLoaded = yield* call(admin, "/api/plugins/configurable/call", { body: { export: "ping" } })
      expect(notLoaded.status).toBe(409)
      expect(notLoaded.body).toMatchObject({ _tag: "Refused", reason: "NotLoaded" })
      expect((yield* call(admin, "/api/plugins/configurable/enable", { body: {} })).status).toBe(200)

      const pinged = yield* call(admin, "/api/plugins/configurable/call", { body: { export: "ping" } })
      expect(pinged.status).toBe(200)
      expect(pinged.body).toMatchObject({ output: null, truncated: false })
      const failed = yield* call(admin, "/api/plugins/configurable/call", { body: { export: "fail" } })
      expect(failed.status).toBe(422)
      expect(failed.body).toMatchObject({ _tag: "CallFailed", error: "PluginFailedError" })
      expect(failed.body.message).toContain("asked to fail")
      const missing = yield* call(admin, "/api/plugins/configurable/call", { body: { export: "nope" } })
      expect(missing.status).toBe(422)
      expect(missing.body.error).toBe("PluginNotImplementedError")
      const noExport = yield* call(admin, "/api/plugins/configurable/call", { body: { input: "x" } })
      expect(noExport.status).toBe(400)
      expect(noExport.body.issues[0].path).toEqual(["export"])

      const infos = yield* until(
        admin,
        "/api/plugins/configurable/logs",
        (entries) => entries.some((e: Json) => e.message === "pinged"),
        "the guest's log line"
      )
      expect(infos.find((e: Json) => e.message === "pinged")).toMatchObject({ level: "info" })
      const errorsOnly = yield* call(admin, "/api/plugins/configurable/logs?level=error")
      expect(errorsOnly.status).toBe(200)
      expect(errorsOnly.body.some((e: Json) => e.message === "pinged")).toBe(false)
      const last = yield* call(admin, "/api/plugins/configurable/logs?limit=1")
      expect(last.body).toHaveLength(1)
      const badLevel = yield* call(admin, "/api/plugins/configurable/logs?level=loud")
      expect(badLevel.status).toBe(400)
      expect(badLevel.body.issues[0].path).toEqual(["level"])
      const badLimit = yield* call(admin, "/api/plugins/configurable/logs?limit=0")
      expect(badLimit.status).toBe(400)
      expect((yield* call(admin, "/api/plugins/nope/logs")).status).toBe(404)
    })
  )

  it.scopedLive("metrics: counters move by exactly the calls made; /metrics parses as Prometheus text", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["configurable", "host-kvstore"])
      const admin = yield* startAdmin(folders)
      expect((yield* call(admin, "/api/plugins/configurable/enable", { body: {} })).status).toBe(200)
      expect((yield* call(admin, "/api/plugins/host-kvstore/enable", { body: {} })).status).toBe(200)
      const value = (samples: Json[], name: string, tags: Record<string, string>, field = "value") =>
        samples.find((s) => s.name === name && Object.entries(tags).every(([k, v]) => s.tags[k] === v))?.[
          field
        ] ?? 0
      const before = (yield* call(admin, "/api/metrics")).body
      for (let i = 0; i < 5; i++) {
        expect(
          (yield* call(admin, "/api/plugins/configurable/call", { body: { export: "ping" } })).status
        ).toBe(200)
      }
      for (let i = 0; i < 2; i++) {
        expect(
          (yield* call(admin, "/api/plugins/configurable/call", { body: { export: "fail" } })).status
        ).toBe(422)
      }
      for (let i = 0; i < 3; i++) {
        const has = yield* call(admin, "/api/plugins/host-kvstore/call", {
          body: { export: "call_kvstore_has", input: JSON.stringify({ key: "k" }) }
        })
        expect(has.status).toBe(200)
      }
      const after = (yield* call(admin, "/api/metrics")).body
      const delta = (name: string, tags: Record<string, string>, field = "value") =>
        value(after, name, tags, field) - value(before, name, tags, field)
      const ping = { plugin: "configurable", export: "ping" }
      const fail = { plugin: "configurable", export: "fail" }
      expect(delta("ndp_plugin_calls_total", ping)).toBe(5)
      expect(delta("ndp_plugin_calls_total", fail)).toBe(2)
      expect(delta("ndp_plugin_call_failures_total", { ...fail, error: "PluginFailedError" })).toBe(2)
      expect(delta("ndp_plugin_call_failures_total", ping)).toBe(0)
      expect(delta("ndp_plugin_call_duration_seconds", ping, "count")).toBe(5)
      expect(delta("ndp_plugin_host_calls_total", { plugin: "host-kvstore", service: "kvstore" })).toBe(3)
      const onePlugin = (yield* call(admin, "/api/metrics?plugin=host-kvstore")).body
      expect(onePlugin.length).toBeGreaterThan(0)
      expect(onePlugin.every((s: Json) => s.tags.plugin === "host-kvstore")).toBe(true)

      const text = yield* call(admin, "/metrics")
      expect(text.status).toBe(200)
      const families = parsePrometheus(text.text)
      expect(families.get("ndp_plugin_calls_total")?.type).toBe("counter")
      expect(families.get("ndp_plugin_call_duration_seconds")?.type).toBe("histogram")
      expect(families.get("ndp_pool_queued_calls")?.type).toBe("gauge")
      const pingLine = families
        .get("ndp_plugin_calls_total")!
        .samples.find((s) => s.labels.plugin === "configurable" && s.labels.export === "ping")
      expect(pingLine?.value).toBe(value(after, "ndp_plugin_calls_total", ping))
    })
  )

  it.scopedLive(
    "a change made with ndp plugins while the server runs shows up in the API",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders(["configurable"])
        const admin = yield* startAdmin(folders)
        expect((yield* call(admin, "/api/plugins/configurable")).body).toMatchObject({ enabled: false })
        const location = ["--folder", folders.folder, "--data-dir", folders.dataFolder]
        const enabled = yield* Effect.promise(() => ndp(["plugins", "enable", "configurable", ...location]))
        expect(enabled.code, enabled.stderr).toBe(0)
        yield* until(
          admin,
          "/api/plugins/configurable",
          (p) => p.state === "loaded",
          "the CLI's enable to load it"
        )
        const configured = yield* Effect.promise(() =>
          ndp(["plugins", "config", "configurable", "--set", "retries=4", ...location])
        )
        expect(configured.code, configured.stderr).toBe(0)
        const detail = yield* until(
          admin,
          "/api/plugins/configurable",
          (p) => p.config.retries === 4,
          "the CLI's config"
        )
        expect(detail.config).toEqual({ retries: 4 })
      }),
    { timeout: 600_000 }
  )

  it.scopedLive("a request body over the limit is refused before it is read whole", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["configurable"])
      const admin = yield* startAdmin(folders)
      const body = JSON.stringify({ export: "ping", input: "x".repeat(3 * 1024 * 1024) })
      const status = yield* Effect.promise(
        () =>
          new Promise<number>((resolve, reject) => {
            const url = new URL(`${admin.url}/api/plugins/configurable/call`)
            const req = httpRequest(
              {
                host: url.hostname,
                port: url.port,
                path: url.pathname,
                method: "POST",
                headers: {
                  authorization: "Bearer test-admin-token-0123456789",
                  "content-type": "application/json",
                  "content-length": Buffer.byteLength(body)
                }
              },
              (res) => {
                res.resume()
                resolve(res.statusCode ?? 0)
                req.destroy()
              }
            )
            req.on("error", (error) => reject(error))
            // Only the start of the body: the answer must come from the declared length alone.
            req.write(body.slice(0, 64 * 1024))
          })
      )
      expect(status).toBe(413)
      expect((yield* call(admin, "/api/plugins")).status).toBe(200)
    })
  )
})

interface Family {
  type: string
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>
}

/** A strict reader of the Prometheus text format: every line must be a comment or a sample. */
const parsePrometheus = (text: string): Map<string, Family> => {
  const families = new Map<string, Family>()
  const familyOf = (sample: string) => {
    for (const suffix of ["_bucket", "_sum", "_count"]) {
      const base = sample.slice(0, -suffix.length)
      if (sample.endsWith(suffix) && families.get(base)?.type === "histogram") return base
    }
    return sample
  }
  expect(text.endsWith("\n")).toBe(true)
  for (const line of text.slice(0, -1).split("\n")) {
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line)
    if (type !== null) {
      expect(families.has(type[1]!)).toBe(false)
      families.set(type[1]!, { type: type[2]!, samples: [] })
      continue
    }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$/.test(line)) continue
    const sample =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? (\S+)$/.exec(
        line
      )
    expect(sample, `not a Prometheus line: ${line}`).not.toBeNull()
    const labels = Object.fromEntries(
      [...(sample![2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((m) => [
        m[1]!,
        m[2]!
      ])
    )
    const value = Number(sample![3] === "+Inf" ? Infinity : sample![3])
    expect(Number.isNaN(value), line).toBe(false)
    const family = families.get(familyOf(sample![1]!))
    expect(family, `sample before its # TYPE: ${line}`).toBeDefined()
    family!.samples.push({ name: sample![1]!, labels, value })
  }
  // Histogram buckets are cumulative and end with +Inf equal to the count.
  for (const [name, family] of families) {
    if (family.type !== "histogram") continue
    const series = new Map<string, Array<number>>()
    for (const s of family.samples.filter((x) => x.name === `${name}_bucket`)) {
      const { le, ...rest } = s.labels
      const key = JSON.stringify(rest)
      series.set(key, [...(series.get(key) ?? []), s.value])
      if (le === "+Inf") {
        const count = family.samples.find(
          (x) => x.name === `${name}_count` && JSON.stringify(x.labels) === key
        )
        expect(count?.value).toBe(s.value)
      }
    }
    for (const counts of series.values()) expect([...counts].sort((a, b) => a - b)).toEqual(counts)
  }
  return families
}

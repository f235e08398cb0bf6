/**
 * OpenTelemetry export to a real OTLP/HTTP collector on 127.0.0.1 (a Node HTTP server that keeps
 * what it is sent): the per-plugin call counter reaches it with the exact number of calls, the
 * spans of the engine's operations reach it, a collector that is down fails no call, and a bad
 * endpoint is refused saying what is expected — from the library layer and from `ndp serve`.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import * as OtlpExport from "../../src/metrics/OtlpExport.js"
import { CLI_TEST_TIMEOUT_MS, killAll, ndp, startNdp } from "../support/cli.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"

interface Received {
  readonly path: string
  readonly body: unknown
}

/** A collector: answers every POST with 200 and keeps its decoded JSON body. */
const startCollector = () =>
  new Promise<{ url: string; received: Array<Received>; close: () => Promise<void> }>((resolve) => {
    const received: Array<Received> = []
    const server = createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        received.push({
          path: request.url ?? "",
          body: JSON.parse(Buffer.concat(chunks).toString("utf8") || "null") as unknown
        })
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        received,
        close: () => new Promise((done) => server.close(() => done()))
      })
    )
  })

const collector = Effect.acquireRelease(Effect.promise(startCollector), ({ close }) => Effect.promise(close))

type Attributes = ReadonlyArray<{ key: string; value: { stringValue?: string } }>
interface DataPoint {
  readonly attributes: Attributes
  readonly asInt?: number | string
  readonly asDouble?: number
}
interface OtlpMetric {
  readonly name: string
  readonly sum?: { dataPoints: ReadonlyArray<DataPoint> }
}
interface MetricsBody {
  readonly resourceMetrics: ReadonlyArray<{
    scopeMetrics: ReadonlyArray<{ metrics: ReadonlyArray<OtlpMetric> }>
  }>
}
interface TracesBody {
  readonly resourceSpans: ReadonlyArray<{
    scopeSpans: ReadonlyArray<{ spans: ReadonlyArray<{ name: string }> }>
  }>
}

const attribute = (attributes: Attributes, key: string) =>
  attributes.find((a) => a.key === key)?.value.stringValue

/** The latest value the collector was sent for `name` with `plugin` (cumulative sums). */
const latestSum = (received: ReadonlyArray<Received>, name: string, plugin: string): number | undefined => {
  let latest: number | undefined
  for (const { body, path } of received) {
    if (path !== "/v1/metrics") continue
    for (const resource of (body as MetricsBody).resourceMetrics) {
      for (const scope of resource.scopeMetrics) {
        for (const metric of scope.metrics) {
          if (metric.name !== name) continue
          let total: number | undefined
          for (const point of metric.sum?.dataPoints ?? []) {
            if (attribute(point.attributes, "plugin") !== plugin) continue
            total = (total ?? 0) + Number(point.asInt ?? point.asDouble ?? 0)
          }
          if (total !== undefined) latest = total
        }
      }
    }
  }
  return latest
}

const spanNames = (received: ReadonlyArray<Received>): Set<string> => {
  const names = new Set<string>()
  for (const { body, path } of received) {
    if (path !== "/v1/traces") continue
    for (const resource of (body as TracesBody).resourceSpans) {
      for (const scope of resource.scopeSpans) for (const span of scope.spans) names.add(span.name)
    }
  }
  return names
}

const eventually = (what: string, check: () => boolean) =>
  Effect.gen(function* () {
    for (let waited = 0; !check(); waited += 100) {
      if (waited > 120_000) return yield* Effect.dieMessage(`timed out waiting for ${what}`)
      yield* Effect.sleep("100 millis")
    }
  })

const callThrice = Effect.gen(function* () {
  const loader = yield* PluginLoader
  const plugin = yield* loader.loadFile(fixture("agent-full"))
  for (let i = 0; i < 3; i++) {
    yield* plugin.call("nd_get_artist_biography", JSON.stringify({ id: "1", name: "Artist" }))
  }
})

const temps: Array<string> = []
afterAll(() => {
  killAll()
  for (const dir of temps) rmSync(dir, { recursive: true, force: true })
})

describe("OpenTelemetry export", { timeout: CLI_TEST_TIMEOUT_MS }, () => {
  it.scopedLive("the collector receives the exact call count of a plugin and the engine's spans", () =>
    Effect.gen(function* () {
      const { received, url } = yield* collector
      yield* Effect.scoped(
        callThrice.pipe(
          Effect.provide(
            testEngine({ runtime: { poolSize: 1 } }).pipe(
              Layer.provide(OtlpExport.layer({ endpoint: url, exportInterval: "200 millis" }))
            )
          )
        )
      )
      yield* eventually(
        "3 calls of agent-full in a metrics export",
        () => latestSum(received, "ndp_plugin_calls_total", "agent-full") === 3
      )
      yield* eventually("the loader's span in a traces export", () =>
        spanNames(received).has("PluginLoader.loadFile")
      )
    })
  )

  it.live("a collector that is down fails no call; a bad endpoint is refused with what to give", () =>
    Effect.gen(function* () {
      // A port that was just closed: nothing listens there.
      const { close, url } = yield* Effect.promise(startCollector)
      yield* Effect.promise(close)
      yield* Effect.scoped(
        callThrice.pipe(
          Effect.provide(
            testEngine({ runtime: { poolSize: 1 } }).pipe(
              Layer.provide(OtlpExport.layer({ endpoint: url, exportInterval: "100 millis" }))
            )
          )
        )
      )
      for (const endpoint of ["127.0.0.1:4318", "ftp://collector", "http://collector:4318/?x=1"]) {
        const exit = yield* Effect.exit(Layer.build(OtlpExport.layer({ endpoint })).pipe(Effect.scoped))
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) {
          expect(String(exit.cause)).toContain("collector's http:// or https:// base URL")
        }
      }
    })
  )

  it("ndp serve --otlp-endpoint sends what it has when it stops; a bad one is a usage error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ndp-otlp-"))
    temps.push(dir)
    const folder = join(dir, "plugins")
    mkdirSync(folder)
    // Its nd_on_init is a call made at load: the call counter has a series to send.
    copyFileSync(fixture("lifecycle"), join(folder, "lifecycle.ndp"))
    const { close, received, url } = await startCollector()
    const bad = await ndp([
      "serve",
      "--folder",
      folder,
      "--data-dir",
      join(dir, "data"),
      "--otlp-endpoint",
      "ftp://x"
    ])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain("collector's http:// or https:// base URL")
    const enabled = await ndp([
      "plugins",
      "enable",
      "lifecycle",
      "--folder",
      folder,
      "--data-dir",
      join(dir, "data")
    ])
    expect(enabled.code).toBe(0)
    const serve = startNdp(["serve", "--folder", folder, "--data-dir", join(dir, "data")], {
      OTEL_EXPORTER_OTLP_ENDPOINT: url
    })
    await serve.waitFor(/^lifecycle: loaded/m)
    serve.child.kill("SIGTERM")
    expect((await serve.exited).code).toBe(0)
    await close()
    expect([...spanNames(received)]).toContain("PluginLoader.loadFile")
    expect(latestSum(received, "ndp_plugin_calls_total", "lifecycle")).toBeGreaterThanOrEqual(1)
  })
})

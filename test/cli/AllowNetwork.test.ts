/** `ndp call --allow-network`: the operator's grant of private networks, through a real process. */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ndp } from "../support/cli.js"
import { fixture } from "../support/fixtures.js"
import { testServer } from "../host/http/support.js"

const dataDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "ndp-allow-network-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("ndp call --allow-network", () => {
  it.scopedLive(
    "loopback is refused to a plugin that lists 127.0.0.1 until the flag grants it; a bad CIDR is a usage error",
    () =>
      Effect.gen(function* () {
        const server = yield* testServer((_request, response) => response.end("hello from the LAN"))
        const dir = yield* dataDir
        const input = JSON.stringify({ request: { url: server.url("/x") } })
        const run = (...extra: Array<string>) =>
          Effect.promise(() =>
            ndp([
              "call",
              fixture("host-http"),
              "call_http_send",
              "--input",
              input,
              "--data-dir",
              dir,
              "--json",
              ...extra
            ])
          )
        const refused = yield* run()
        expect(refused.code).toBe(0)
        expect(JSON.parse(refused.stdout)).toEqual({
          ok: true,
          output: {
            error:
              'host "127.0.0.1" is a loopback address; plugins may not reach private networks unless the operator grants it with --allow-network 127.0.0.1/32'
          },
          ms: expect.any(Number)
        })
        expect(server.received).toHaveLength(0)
        const granted = yield* run("--allow-network", "10.0.0.0/8", "--allow-network", "127.0.0.1/32")
        expect(granted.code).toBe(0)
        const output = (
          JSON.parse(granted.stdout) as { output: { result: { statusCode: number; body: string } } }
        ).output
        expect(output.result.statusCode).toBe(200)
        expect(Buffer.from(output.result.body, "base64").toString()).toBe("hello from the LAN")
        expect(server.received).toHaveLength(1)
        const bad = yield* run("--allow-network", "127.0.0.1/33")
        expect(bad.code).toBe(1)
        expect(JSON.parse(bad.stdout)).toMatchObject({
          ok: false,
          error: {
            tag: "UsageError",
            reason: "NetworkGrantError",
            message:
              'allowed network "127.0.0.1/33" is not valid: the prefix length must be 0–32 for an IPv4 network; give a CIDR such as 192.168.1.0/24 or ::1/128, an address such as 127.0.0.1, or a host name'
          }
        })
      }),
    120_000
  )
})

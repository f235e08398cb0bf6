import { describe, expect, layer } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import type * as http from "node:http"
import { testEngine } from "../../support/engine.js"
import { captureLogs } from "../../support/logs.js"
import { envRequest, errorOf, fakeLookup, loadHostHttp, resultOf, send, testServer } from "./support.js"

const MAX_BODY = 1024 * 1024
const b64 = (bytes: Uint8Array | string) => Buffer.from(bytes).toString("base64")
const fromB64 = (text: string | undefined) => new Uint8Array(Buffer.from(text ?? "", "base64"))
const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i)

/** Echoes what it got: status 200, body = request body, the method in `X-Method`. */
const echo = (request: http.IncomingMessage, response: http.ServerResponse, body: Buffer) => {
  response.writeHead(200, [
    ["X-Method", request.method ?? ""],
    ["Content-Type", "application/octet-stream"],
    ["x-multi", "a"],
    ["X-Multi", "b"],
    ["X-Empty", ""]
  ])
  response.end(body)
}

/** Routes by path: /echo, /redirect?to=…&status=…, /loop, /big, /huge-head, /declared-big, /exact, /slow, /slow-body. */
const routes =
  (hooks: { streamed?: (written: number) => void; closed?: () => void } = {}) =>
  (request: http.IncomingMessage, response: http.ServerResponse, received: { body: Buffer }) => {
    const url = new URL(request.url ?? "/", "http://x")
    switch (url.pathname) {
      case "/redirect":
        response.writeHead(Number(url.searchParams.get("status") ?? "302"), {
          Location: url.searchParams.get("to") ?? "/echo"
        })
        return response.end("moved")
      case "/loop":
        response.writeHead(302, { Location: "/loop" })
        return response.end()
      case "/big": {
        // 50 MB streamed with back-pressure; reports how much got out before the client hung up.
        const chunk = Buffer.alloc(64 * 1024, 0x61)
        let written = 0
        response.writeHead(200, { "Content-Type": "text/plain" })
        response.on("close", () => hooks.streamed?.(written))
        const pump = (): void => {
          while (written < 50 * 1024 * 1024 && !response.destroyed) {
            written += chunk.byteLength
            if (!response.write(chunk)) {
              response.once("drain", pump)
              return
            }
          }
          response.end()
        }
        return pump()
      }
      case "/huge-head":
        response.writeHead(200, { "X-Padding": "p".repeat(20 * 1024) })
        return response.end("never read")
      case "/declared-big":
        response.writeHead(200, { "Content-Length": String(50 * 1024 * 1024) })
        return response.write("only a little")
      case "/exact":
        response.writeHead(200)
        return response.end(Buffer.alloc(Number(url.searchParams.get("n") ?? "0"), 0x62))
      case "/keep":
        request.socket.once("close", () => hooks.closed?.())
        return echo(request, response, received.body)
      case "/slow":
        request.socket.on("close", () => hooks.closed?.())
        return
      case "/slow-body":
        request.socket.on("close", () => hooks.closed?.())
        response.writeHead(200, { "Content-Length": "100" })
        return response.write("a few bytes, then nothing")
      default:
        return echo(request, response, received.body)
    }
  }

const echoServer = testServer(routes())

// Live clock (deadlines are real), and no default logger: refused http_request calls log errors.
const engine = Layer.merge(
  testEngine({ runtime: { poolSize: 2 }, http: { maxResponseBytes: MAX_BODY, lookup: fakeLookup } }),
  Logger.remove(Logger.defaultLogger)
)

layer(engine, { excludeTestServices: true })("HTTP host service", (it) => {
  describe("allowed hosts", () => {
    it.scoped("http_send: methods, headers and binary bodies arrive intact both ways", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const plugin = yield* loadHostHttp()
        for (const method of ["POST", "PUT", "PATCH", "DELETE"]) {
          const reply = yield* send(plugin, {
            method,
            url: server.url("/echo?q=1&x=%00"),
            headers: {
              "X-Mixed-Case": "Value With Spaces",
              x_under_score: "kept",
              Authorization: "Bearer t"
            },
            body: b64(allBytes)
          })
          const result = resultOf(reply)
          expect(result.statusCode).toBe(200)
          expect(fromB64(result.body)).toEqual(allBytes)
          expect(result.headers).toMatchObject({
            "X-Method": method,
            "Content-Type": "application/octet-stream",
            "X-Multi": "a, b",
            "X-Empty": ""
          })
          const got = server.received.at(-1)
          expect(got?.method).toBe(method)
          expect(got?.path).toBe("/echo?q=1&x=%00")
          expect(new Uint8Array(got?.body ?? [])).toEqual(allBytes)
          // Names as the plugin spelled them, no camelCase aliases added.
          expect(got?.rawHeaders).toEqual(
            expect.arrayContaining(["X-Mixed-Case", "Value With Spaces", "x_under_score", "kept"])
          )
          expect(got?.headers["xUnderScore"]).toBeUndefined()
          expect(got?.headers["content-length"]).toBe("256")
        }
        const get = resultOf(yield* send(plugin, { url: server.url("/echo") }))
        expect(get.body).toBeUndefined()
        expect(server.received.at(-1)?.method).toBe("GET")
        const head = resultOf(yield* send(plugin, { method: "HEAD", url: server.url("/exact?n=5000000") }))
        expect(head).toMatchObject({ statusCode: 200 })
      })
    )

    it.scoped("http_send accepts a body as an array of numbers and snake_case request fields", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const plugin = yield* loadHostHttp()
        const reply = yield* send(plugin, {
          method: "POST",
          url: server.url("/redirect?status=302&to=/echo"),
          body: [0, 1, 2],
          no_follow_redirects: true,
          timeout_ms: 5000
        })
        expect(resultOf(reply).statusCode).toBe(302)
      })
    )

    it.scoped("Extism's http_request: method, headers and a text body with NUL and non-ASCII intact", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const plugin = yield* loadHostHttp()
        const body = "Björk\u0000東京"
        const reply = yield* envRequest(
          plugin,
          { url: server.url("/echo"), method: "POST", headers: { "X-Token": "abc", x_snake: "1" } },
          body
        )
        expect(reply.status).toBe(200)
        expect(reply.body).toBe(body)
        expect(reply.headers).toMatchObject({ "X-Method": "POST", "X-Multi": "a, b" })
        const got = server.received.at(-1)
        expect(got?.body.toString("utf8")).toBe(body)
        expect(got?.rawHeaders).toEqual(expect.arrayContaining(["X-Token", "abc", "x_snake", "1"]))
        // Method defaults to GET and the empty body is no body.
        const get = yield* envRequest(plugin, { url: server.url("/echo") })
        expect(get).toMatchObject({ status: 200, body: "" })
        expect(server.received.at(-1)?.method).toBe("GET")
      })
    )

    it.scoped("a listed name works by name; localhost and 127.0.0.1 are listed separately", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const byName = yield* loadHostHttp(["localhost"])
        expect(resultOf(yield* send(byName, { url: server.url("/echo", "localhost") })).statusCode).toBe(200)
        expect(errorOf(yield* send(byName, { url: server.url("/echo") }))).toContain(
          'host "127.0.0.1" is not allowed'
        )
        const byAddress = yield* loadHostHttp(["127.0.0.1"])
        expect(resultOf(yield* send(byAddress, { url: server.url("/echo") })).statusCode).toBe(200)
        expect(errorOf(yield* send(byAddress, { url: server.url("/echo", "localhost") }))).toContain(
          'host "localhost" is not allowed'
        )
        expect(server.received).toHaveLength(2)
      })
    )
  })

  describe("refusals", () => {
    it.scoped("a host outside the list is refused by both functions, before any connection", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const plugin = yield* loadHostHttp(["api.example.org"])
        expect(errorOf(yield* send(plugin, { url: server.url("/echo") }))).toMatch(
          /host "127\.0\.0\.1" is not allowed: it matches none of the plugin's http\.requiredHosts/
        )
        const env = yield* envRequest(plugin, { url: server.url("/echo") })
        expect(env).toEqual({ status: 0, headers: {}, body: "" })
        expect(server.received).toHaveLength(0)
      })
    )

    it.scoped(
      "listed exactly is not enough: loopback needs the operator's grant, by address or by name",
      () =>
        Effect.gen(function* () {
          const server = yield* echoServer
          const hosts = ["127.0.0.1", "localhost", "music.test"]
          const ungranted = yield* loadHostHttp(hosts, [])
          expect(errorOf(yield* send(ungranted, { url: server.url("/echo") }))).toBe(
            'host "127.0.0.1" is a loopback address; plugins may not reach private networks unless the operator grants it with --allow-network 127.0.0.1/32'
          )
          for (const name of ["localhost", "music.test"]) {
            const refusal = errorOf(yield* send(ungranted, { url: server.url("/echo", name) }))
            expect(refusal).toBe(
              `host "${name}" resolves to a private/loopback address; plugins may not reach private networks unless the operator grants it with --allow-network ${name}`
            )
          }
          expect((yield* envRequest(ungranted, { url: server.url("/echo") })).status).toBe(0)
          expect(server.received).toHaveLength(0)
          // The same manifest with a grant: the address, or the name (whatever it resolves to).
          const byAddress = yield* loadHostHttp(hosts, ["127.0.0.1/32"])
          expect(resultOf(yield* send(byAddress, { url: server.url("/echo") })).statusCode).toBe(200)
          expect(
            resultOf(yield* send(byAddress, { url: server.url("/echo", "music.test") })).statusCode
          ).toBe(200)
          const byName = yield* loadHostHttp(hosts, ["localhost"])
          expect(resultOf(yield* send(byName, { url: server.url("/echo", "localhost") })).statusCode).toBe(
            200
          )
          expect(errorOf(yield* send(byName, { url: server.url("/echo", "music.test") }))).toContain(
            "resolves to a private/loopback address"
          )
          expect(server.received).toHaveLength(3)
        })
    )

    it.scoped("a wildcard manifest takes a grant too, and the grant does not widen the manifest's list", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const wildcard = yield* loadHostHttp(["*"], ["127.0.0.1/32"])
        expect(resultOf(yield* send(wildcard, { url: server.url("/echo") })).statusCode).toBe(200)
        expect(resultOf(yield* send(wildcard, { url: server.url("/echo", "other.test") })).statusCode).toBe(
          200
        )
        expect(errorOf(yield* send(wildcard, { url: server.url("/echo", "lan.test") }))).toBe(
          'host "lan.test" resolves to a private/loopback address; plugins may not reach private networks unless the operator grants it with --allow-network lan.test'
        )
        expect(errorOf(yield* send(wildcard, { url: server.url("/echo", "[::1]") }))).toContain(
          "--allow-network ::1/128"
        )
        const elsewhere = yield* loadHostHttp(["api.example.org"], ["127.0.0.1/32"])
        expect(errorOf(yield* send(elsewhere, { url: server.url("/echo") }))).toContain("is not allowed")
        expect(server.received).toHaveLength(2)
      })
    )

    it.scoped("a bad grant fails the load with a typed error that says what to write", () =>
      Effect.gen(function* () {
        const failure = yield* Effect.flip(loadHostHttp(undefined, ["192.168.1.0/33"]))
        expect(failure).toMatchObject({ _tag: "PluginLoadError", reason: "Config" })
        expect((failure as Error).message).toBe(
          'plugin host-http: allowed network "192.168.1.0/33" is not valid: the prefix length must be 0–32 for an IPv4 network; give a CIDR such as 192.168.1.0/24 or ::1/128, an address such as 127.0.0.1, or a host name'
        )
      })
    )

    it.scoped("an empty list denies everything to http_request and private addresses to http_send", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const logs = captureLogs()
        const plugin = yield* logs.provide(loadHostHttp([], []))
        expect(yield* envRequest(plugin, { url: server.url("/echo") })).toMatchObject({ status: 0, body: "" })
        expect(logs.lines.map((l) => l.message).join("\n")).toContain(
          "the plugin's manifest lists no http.requiredHosts"
        )
        expect(errorOf(yield* send(plugin, { url: server.url("/echo") }))).toMatch(
          /host "127\.0\.0\.1" is a loopback address; plugins may not reach private networks/
        )
        expect(errorOf(yield* send(plugin, { url: server.url("/echo", "music.test") }))).toContain(
          'host "music.test" resolves to a private/loopback address'
        )
        expect(errorOf(yield* send(plugin, { url: server.url("/echo", "localhost") }))).toContain("loopback")
        expect(errorOf(yield* send(plugin, { url: server.url("/echo", "[::1]") }))).toContain("loopback")
        expect(errorOf(yield* send(plugin, { url: server.url("/echo", "[::ffff:127.0.0.1]") }))).toContain(
          "loopback"
        )
        expect(errorOf(yield* send(plugin, { url: "http://10.1.2.3/" }))).toContain("private")
        expect(errorOf(yield* send(plugin, { url: "http://169.254.169.254/latest/meta-data" }))).toContain(
          "link-local"
        )
        expect(errorOf(yield* send(plugin, { url: "http://0x7f.1/" }))).toContain("loopback")
        expect(errorOf(yield* send(plugin, { url: "http://192.0.2.1/" }))).toContain("documentation")
        expect(errorOf(yield* send(plugin, { url: "http://255.255.255.255/" }))).toContain("broadcast")
        // A public name is not refused by the empty list: here it simply does not resolve.
        const unknown = errorOf(yield* send(plugin, { url: "http://no-such-host.test/" }))
        expect(unknown).toContain("request to no-such-host.test failed")
        expect(unknown).toContain("ENOTFOUND")
        expect(server.received).toHaveLength(0)
      })
    )

    it.scoped(
      "a name resolving to loopback is refused by glob and exact entry alike, without naming the address",
      () =>
        Effect.gen(function* () {
          const server = yield* echoServer
          const logs = captureLogs()
          const glob = yield* logs.provide(loadHostHttp(["*.test", "*"], []))
          for (const name of ["music.test", "v6.test"]) {
            const refusal = errorOf(yield* send(glob, { url: server.url("/echo", name) }))
            expect(refusal).toContain(`host "${name}" resolves to a private/loopback address`)
            expect(refusal).not.toMatch(/127\.0\.0\.1|::1/)
          }
          // The operator's log says where it pointed.
          expect(logs.lines.map((l) => l.message)).toContain(
            "http GET music.test refused: it resolved to 127.0.0.1 (loopback); grant it with --allow-network if the plugin may reach it"
          )
          const exact = yield* loadHostHttp(["MUSIC.test"], [])
          expect(errorOf(yield* send(exact, { url: server.url("/echo", "music.test") }))).toContain(
            "resolves to a private/loopback address"
          )
          expect(server.received).toHaveLength(0)
          const granted = yield* loadHostHttp(["MUSIC.test"])
          expect(resultOf(yield* send(granted, { url: server.url("/echo", "music.test") })).statusCode).toBe(
            200
          )
          expect(server.received[0]?.headers.host).toBe(`music.test:${server.port}`)
        })
    )

    it.scoped("schemes other than http and https are refused", () =>
      Effect.gen(function* () {
        const plugin = yield* loadHostHttp(["*"])
        for (const url of [
          "ftp://127.0.0.1/x",
          "file:///etc/passwd",
          "gopher://localhost/",
          "data:text/plain,hi"
        ]) {
          expect(errorOf(yield* send(plugin, { url }))).toMatch(
            /^only http and https URLs are allowed, not "/
          )
        }
        expect(errorOf(yield* send(plugin, { url: "not a url" }))).toBe('invalid URL "not a url"')
        expect((yield* envRequest(plugin, { url: "file:///etc/passwd" })).status).toBe(0)
      })
    )

    it.scoped("malformed requests are in-band errors", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const plugin = yield* loadHostHttp()
        expect(
          errorOf(yield* send(plugin, { url: server.url("/echo"), headers: { "Bad Name": "x" } }))
        ).toMatch(/^invalid request: /)
        expect(
          errorOf(
            yield* send(plugin, { url: server.url("/echo"), headers: { "X-Injected": "a\r\nHost: evil" } })
          )
        ).toMatch(/^invalid request: /)
        expect(errorOf(yield* send(plugin, { method: "GET POST", url: server.url("/echo") }))).toMatch(
          /^invalid request: /
        )
        const raw = yield* plugin.call("call_http_send", '{"request": {"headers": {}}}')
        expect(new TextDecoder().decode(raw ?? new Uint8Array())).toContain("invalid request: request.url")
        expect(server.received).toHaveLength(0)
      })
    )

    it.scoped("a refused connection is a network error", () =>
      Effect.gen(function* () {
        const port = yield* Effect.scoped(Effect.map(testServer(routes()), (s) => s.port))
        const plugin = yield* loadHostHttp()
        expect(errorOf(yield* send(plugin, { url: `http://127.0.0.1:${port}/` }))).toMatch(
          /^request to 127\.0\.0\.1 failed: .*ECONNREFUSED/
        )
      })
    )
  })

  describe("redirects", () => {
    it.scoped("followed to an allowed host, with the method and body rules of 301/302/303/307", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const plugin = yield* loadHostHttp()
        const to = encodeURIComponent(server.url("/echo", "localhost"))
        const cases = [
          { status: 301, method: "POST", expected: "GET" },
          { status: 302, method: "POST", expected: "GET" },
          { status: 302, method: "PUT", expected: "PUT" },
          { status: 303, method: "PUT", expected: "GET" },
          { status: 307, method: "POST", expected: "POST" },
          { status: 308, method: "PATCH", expected: "PATCH" }
        ]
        for (const { expected, method, status } of cases) {
          const before = server.received.length
          const reply = yield* send(plugin, {
            method,
            url: server.url(`/redirect?status=${status}&to=${to}`),
            headers: { Authorization: "Bearer secret", "Content-Type": "text/plain", "X-Keep": "1" },
            body: b64("payload")
          })
          const result = resultOf(reply)
          expect(result.statusCode).toBe(200)
          expect(result.headers?.["X-Method"]).toBe(expected)
          const [first, second] = server.received.slice(before)
          expect(first?.method).toBe(method)
          expect(second?.method).toBe(expected)
          expect(second?.headers.host).toBe(`localhost:${server.port}`)
          // Credentials stay with the host they were meant for; the body only when the method is kept.
          expect(second?.headers.authorization).toBeUndefined()
          expect(second?.headers["x-keep"]).toBe("1")
          expect(second?.body.toString()).toBe(expected === "GET" ? "" : "payload")
          expect(second?.headers["content-type"]).toBe(expected === "GET" ? undefined : "text/plain")
        }
        // Same host: credentials kept. Relative locations resolve against the current URL.
        const before = server.received.length
        yield* send(plugin, {
          url: server.url("/redirect?to=/echo"),
          headers: { Authorization: "Bearer secret" }
        })
        expect(server.received[before + 1]?.headers.authorization).toBe("Bearer secret")
      })
    )

    it.scoped(
      "every hop is checked: a redirect to a host outside the list, or to a private address, is refused",
      () =>
        Effect.gen(function* () {
          const server = yield* echoServer
          const plugin = yield* loadHostHttp(["127.0.0.1", "*.test"])
          const toLocalhost = encodeURIComponent(server.url("/echo", "localhost"))
          expect(errorOf(yield* send(plugin, { url: server.url(`/redirect?to=${toLocalhost}`) }))).toBe(
            `redirect to http://localhost:${server.port}/echo refused: host "localhost" is not allowed: it matches none of the plugin's http.requiredHosts`
          )
          // Loopback is granted to this plugin, 192.168.77.7 is not.
          const toLan = encodeURIComponent(server.url("/echo?secret=1", "lan.test"))
          expect(errorOf(yield* send(plugin, { url: server.url(`/redirect?to=${toLan}`) }))).toBe(
            `redirect to http://lan.test:${server.port}/echo refused: host "lan.test" resolves to a private/loopback address; plugins may not reach private networks unless the operator grants it with --allow-network lan.test`
          )
          expect(
            errorOf(
              yield* send(plugin, {
                url: server.url(`/redirect?to=${encodeURIComponent("file:///etc/passwd")}`)
              })
            )
          ).toContain("refused: only http and https URLs are allowed")
          expect((yield* envRequest(plugin, { url: server.url(`/redirect?to=${toLocalhost}`) })).status).toBe(
            0
          )
          // Only the first hops reached the server.
          expect(server.received.map((r) => r.path.split("?")[0])).toEqual([
            "/redirect",
            "/redirect",
            "/redirect",
            "/redirect"
          ])
        })
    )

    it.scoped("a chain through several allowed hosts is followed; a loop stops at maxRedirects", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const plugin = yield* loadHostHttp(["127.0.0.1", "localhost", "music.test"])
        const last = server.url("/echo", "music.test")
        const middle = server.url(`/redirect?status=307&to=${encodeURIComponent(last)}`, "localhost")
        const env = yield* envRequest(plugin, {
          url: server.url(`/redirect?status=301&to=${encodeURIComponent(middle)}`),
          method: "GET"
        })
        expect(env.status).toBe(200)
        expect(server.received.map((r) => r.headers.host)).toEqual([
          `127.0.0.1:${server.port}`,
          `localhost:${server.port}`,
          `music.test:${server.port}`
        ])
        expect(errorOf(yield* send(plugin, { url: server.url("/loop") }))).toBe(
          `stopped after 10 redirects (the last one to http://127.0.0.1:${server.port}/loop)`
        )
        expect(server.received).toHaveLength(3 + 11)
      })
    )

    it.scoped("noFollowRedirects returns the redirect itself", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const plugin = yield* loadHostHttp()
        const reply = yield* send(plugin, {
          url: server.url(`/redirect?status=301&to=${encodeURIComponent("https://elsewhere.example/")}`),
          noFollowRedirects: true
        })
        const result = resultOf(reply)
        expect(result.statusCode).toBe(301)
        expect(result.headers?.Location).toBe("https://elsewhere.example/")
        expect(Buffer.from(result.body ?? "", "base64").toString()).toBe("moved")
        expect(server.received).toHaveLength(1)
      })
    )
  })

  describe("limits", () => {
    it.scoped("a body of exactly maxResponseBytes passes; one byte more is refused", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const plugin = yield* loadHostHttp()
        const full = resultOf(yield* send(plugin, { url: server.url(`/exact?n=${MAX_BODY}`) }))
        expect(fromB64(full.body).byteLength).toBe(MAX_BODY)
        expect(errorOf(yield* send(plugin, { url: server.url(`/exact?n=${MAX_BODY + 1}`) }))).toBe(
          `response body exceeds ${MAX_BODY} bytes`
        )
      })
    )

    it.scoped("an oversize streamed body is cut off without reading it all", () =>
      Effect.gen(function* () {
        const streamed = yield* Deferred.make<number>()
        const server = yield* testServer(
          routes({ streamed: (n) => Deferred.unsafeDone(streamed, Effect.succeed(n)) })
        )
        const plugin = yield* loadHostHttp()
        expect(errorOf(yield* send(plugin, { url: server.url("/big") }))).toBe(
          `response body exceeds ${MAX_BODY} bytes`
        )
        // The client hung up early: the server got only a few MB out (socket buffers) of 50.
        const written = yield* Deferred.await(streamed)
        expect(written).toBeGreaterThan(MAX_BODY)
        expect(written).toBeLessThan(20 * 1024 * 1024)
        // Through Extism's http_request too, and the declared length alone is enough to refuse.
        expect((yield* envRequest(plugin, { url: server.url("/big") })).status).toBe(0)
        expect(errorOf(yield* send(plugin, { url: server.url("/declared-big") }))).toBe(
          `response body exceeds ${MAX_BODY} bytes`
        )
      })
    )

    it.scoped("a response head over maxHeaderBytes is refused; a neighbour keeps answering", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const plugin = yield* loadHostHttp()
        const neighbour = yield* loadHostHttp(["127.0.0.1"])
        expect(errorOf(yield* send(plugin, { url: server.url("/huge-head") }))).toBe(
          "response headers from 127.0.0.1 exceed 16384 bytes"
        )
        expect(resultOf(yield* send(neighbour, { url: server.url("/echo") })).statusCode).toBe(200)
        expect(resultOf(yield* send(plugin, { url: server.url("/echo") })).statusCode).toBe(200)
      })
    )

    it.scoped("a slow server times out after the request's timeoutMs and the connection is dropped", () =>
      Effect.gen(function* () {
        const closed = yield* Deferred.make<void>()
        const server = yield* testServer(routes({ closed: () => Deferred.unsafeDone(closed, Effect.void) }))
        const plugin = yield* loadHostHttp()
        expect(errorOf(yield* send(plugin, { url: server.url("/slow?key=secret"), timeoutMs: 200 }))).toBe(
          `request to http://127.0.0.1:${server.port}/slow timed out after 200 ms`
        )
        yield* Deferred.await(closed)
        expect(errorOf(yield* send(plugin, { url: server.url("/slow-body"), timeoutMs: 200 }))).toContain(
          "timed out after 200 ms"
        )
      })
    )

    it.scoped("connections are kept alive for the plugin and closed when it unloads", () =>
      Effect.gen(function* () {
        const closed = yield* Deferred.make<void>()
        const server = yield* testServer(routes({ closed: () => Deferred.unsafeDone(closed, Effect.void) }))
        yield* Effect.scoped(
          Effect.gen(function* () {
            const plugin = yield* loadHostHttp()
            expect(resultOf(yield* send(plugin, { url: server.url("/keep") })).statusCode).toBe(200)
            expect(resultOf(yield* send(plugin, { url: server.url("/keep") })).statusCode).toBe(200)
            expect(yield* Deferred.isDone(closed)).toBe(false)
          })
        )
        yield* Deferred.await(closed).pipe(Effect.timeout("5 seconds"))
      })
    )

    it.scoped("each request is logged at debug with method, host and status", () =>
      Effect.gen(function* () {
        const server = yield* echoServer
        const logs = captureLogs()
        const plugin = yield* logs.provide(loadHostHttp()).pipe(Logger.withMinimumLogLevel(LogLevel.Debug))
        yield* send(plugin, { method: "PUT", url: server.url("/redirect?to=/echo") })
        const lines = logs.lines.filter((l) => l.message.startsWith("http "))
        expect(lines.map((l) => l.message)).toEqual(["http PUT 127.0.0.1 → 302", "http PUT 127.0.0.1 → 200"])
        expect(lines[0]).toMatchObject({
          level: "DEBUG",
          annotations: { plugin: plugin.id, service: "http" }
        })
      })
    )
  })
})

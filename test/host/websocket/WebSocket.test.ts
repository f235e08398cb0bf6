import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { performance } from "node:perf_hooks"
import { testEngine } from "../../support/engine.js"
import { repackage } from "../../support/repackage.js"
import { eventually, openTcpSockets, timedLogs, websocketPlugin, wsServer } from "./support.js"

const b64 = (bytes: Uint8Array | string) => Buffer.from(bytes).toString("base64")
const withNul = Uint8Array.from([0, 1, 0, 255, 0, 10, 0])
const median = (values: ReadonlyArray<number>) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

layer(testEngine({ runtime: { poolSize: 4 } }), { excludeTestServices: true })(
  "WebSocket host service",
  (it) => {
    it.scoped("text travels both ways, in order, and a callback can answer from inside", () =>
      Effect.gen(function* () {
        const server = yield* wsServer()
        const { call, lines } = yield* websocketPlugin(timedLogs())
        expect(yield* call("websocket_connect", { url: server.url, connectionId: "echo" })).toEqual({
          newConnectionId: "echo"
        })
        const texts = () => lines().filter((l) => l.startsWith("text echo "))
        // Plugin → server → plugin: the server echoes every message.
        const sent = Array.from({ length: 100 }, (_, i) => `m${i} hej då 🎵`)
        for (const message of sent) {
          expect(yield* call("websocket_sendtext", { connectionId: "echo", message })).toEqual({})
        }
        yield* eventually("100 echoes", () => texts().length === 100)
        expect(texts()).toEqual(sent.map((m) => `text echo ${m}`))
        const side = server.connections[0]!
        expect(side.texts).toEqual(sent)
        // A burst from the server arrives complete and in order.
        const burst = Array.from({ length: 600 }, (_, i) => `s${i}`)
        for (const message of burst) side.socket.send(message)
        yield* eventually("the burst", () => texts().length === 700, 15_000)
        expect(texts().slice(100)).toEqual(burst.map((m) => `text echo ${m}`))
        // The callback for `echo:pong` sends `pong` back from inside the plugin.
        side.socket.send("echo:pong")
        yield* eventually("the plugin's answer", () => side.texts.includes("pong"))
      })
    )

    it.scoped("callback latency (server send → plugin log)", () =>
      Effect.gen(function* () {
        const server = yield* wsServer({ echo: false })
        const logs = timedLogs()
        const { call } = yield* websocketPlugin(logs)
        yield* call("websocket_connect", { url: server.url, connectionId: "lat" })
        const side = server.connections[0]!
        const latencies: Array<number> = []
        for (let i = 0; i < 30; i++) {
          const expected = `text lat ping${i}`
          const start = performance.now()
          side.socket.send(`ping${i}`)
          yield* eventually(expected, () => logs.lines.some((l) => l.message === expected))
          latencies.push(logs.lines.find((l) => l.message === expected)!.at - start)
        }
        const report = `websocket callback latency over 30 messages: median ${median(latencies).toFixed(2)} ms, max ${Math.max(...latencies).toFixed(2)} ms`
        process.stdout.write(`${report}\n`)
        expect(median(latencies)).toBeLessThan(100)
      })
    )

    it.scoped("binary messages carry NUL bytes through base64 both ways; headers are passed on", () =>
      Effect.gen(function* () {
        const server = yield* wsServer({ echo: false })
        const { call, lines } = yield* websocketPlugin(timedLogs())
        yield* call("websocket_connect", {
          url: `${server.url}feed?x=1`,
          connectionId: "bin",
          headers: { "X-Token": "abc", x_snake_case: "1" }
        })
        const side = server.connections[0]!
        expect(side.request.url).toBe("/feed?x=1")
        expect(side.request.headers["x-token"]).toBe("abc")
        expect(side.request.headers["x_snake_case"]).toBe("1")
        expect(side.request.headers["xsnakecase"]).toBeUndefined()
        expect(yield* call("websocket_sendbinary", { connectionId: "bin", data: b64(withNul) })).toEqual({})
        expect(yield* call("websocket_sendbinary", { connectionId: "bin", data: [7, 0, 7] })).toEqual({})
        yield* eventually("two binaries", () => side.binaries.length === 2)
        expect(side.binaries.map((b) => [...b])).toEqual([[...withNul], [7, 0, 7]])
        side.socket.send(Buffer.from(withNul), { binary: true })
        yield* eventually("the binary callback", () => lines().includes(`binary bin ${b64(withNul)}`))
      })
    )

    it.scoped("a server close reaches on_close with its code and reason; the ID can be reused", () =>
      Effect.gen(function* () {
        const server = yield* wsServer()
        const { call, lines } = yield* websocketPlugin(timedLogs())
        yield* call("websocket_connect", { url: server.url, connectionId: "srv" })
        server.connections[0]!.socket.close(4001, "bye now")
        yield* eventually("on_close", () => lines().includes("close srv 4001 bye now"))
        expect((yield* call("websocket_sendtext", { connectionId: "srv", message: "late" })).error).toContain(
          "not found"
        )
        // The plugin reconnects under the same ID.
        expect(yield* call("websocket_connect", { url: server.url, connectionId: "srv" })).toEqual({
          newConnectionId: "srv"
        })
        expect(yield* call("websocket_sendtext", { connectionId: "srv", message: "again" })).toEqual({})
        yield* eventually("the echo on the new connection", () => lines().includes("text srv again"))
        expect(server.connections).toHaveLength(2)
      })
    )

    it.scoped("on_close can reconnect under the same ID from inside the callback", () =>
      Effect.gen(function* () {
        const server = yield* wsServer()
        const { call, lines } = yield* websocketPlugin(timedLogs())
        yield* call("websocket_connect", { url: server.url, connectionId: "re" })
        server.connections[0]!.socket.close(1000, `reconnect:${server.url}`)
        yield* eventually("the reconnect", () => lines().some((l) => l.startsWith("reconnect ")))
        expect(lines()).toContain(`reconnect {"newConnectionId":"re"}`)
        yield* eventually(
          "the second connection",
          () => server.clientCount() === 1 && server.connections.length === 2
        )
        expect(yield* call("websocket_sendtext", { connectionId: "re", message: "back" })).toEqual({})
        yield* eventually("the echo", () => lines().includes("text re back"))
      })
    )

    it.scoped("an abnormal drop reaches on_close with 1006; a socket error reaches on_error first", () =>
      Effect.gen(function* () {
        const server = yield* wsServer()
        const { call, lines } = yield* websocketPlugin(timedLogs())
        yield* call("websocket_connect", { url: server.url, connectionId: "drop" })
        server.connections[0]!.socket.terminate()
        yield* eventually("on_close", () => lines().some((l) => l.startsWith("close drop ")))
        expect(lines().filter((l) => l.startsWith("close drop "))).toEqual(["close drop 1006 "])
        // An error, if the socket reported one, comes before the close.
        const errors = lines().filter((l) => l.startsWith("error drop "))
        if (errors.length > 0)
          expect(lines().indexOf(errors[0]!)).toBeLessThan(lines().indexOf("close drop 1006 "))
        // A message over the payload limit (default 1 MiB) is an error, then a close with 1009.
        yield* call("websocket_connect", { url: server.url, connectionId: "big" })
        server.connections[1]!.socket.send(Buffer.alloc(1024 * 1024 + 1))
        yield* eventually("on_close", () => lines().some((l) => l.startsWith("close big ")))
        const big = lines().filter((l) => l.includes(" big "))
        expect(big[0]).toBe(
          "error big the server sent a message larger than 1048576 bytes (maxPayloadBytes); the connection is closed with 1009"
        )
        expect(big[1]).toMatch(/^close big 10(06|09) /)
        yield* eventually("the server's view", () => server.connections[1]!.closed !== undefined)
        expect(server.connections[1]!.closed?.code).toBe(1009)
      })
    )

    it.scoped("a callback may close its own connection without deadlock", () =>
      Effect.gen(function* () {
        const server = yield* wsServer({ echo: false })
        const { call, lines } = yield* websocketPlugin(timedLogs())
        yield* call("websocket_connect", { url: server.url, connectionId: "self" })
        const side = server.connections[0]!
        side.socket.send("close-me")
        yield* eventually("on_close", () => lines().some((l) => l.startsWith("close self ")))
        expect(lines().filter((l) => l.includes("self"))).toEqual([
          "text self close-me",
          "close self 4000 closed by plugin"
        ])
        expect(lines()).toContain("close-me {}")
        yield* eventually("the server's view", () => side.closed !== undefined)
        expect(side.closed).toEqual({ code: 4000, reason: "closed by plugin" })
        expect(lines().indexOf("close-me {}")).toBeLessThan(
          lines().indexOf("close self 4000 closed by plugin")
        )
      })
    )

    it.scoped("on_close of a connection the plugin closed comes after the closing call returns", () =>
      Effect.gen(function* () {
        const server = yield* wsServer()
        const { call, lines, plugin } = yield* websocketPlugin(timedLogs())
        for (let round = 0; round < 5; round++) {
          const id = `c${round}`
          yield* call("websocket_connect", { url: server.url, connectionId: id })
          yield* plugin.call("close_and_log", JSON.stringify({ connectionId: id }))
          yield* eventually("on_close", () => lines().includes(`close ${id} 1000 `))
          expect(lines().indexOf(`closed-by-call ${id}`)).toBeLessThan(lines().indexOf(`close ${id} 1000 `))
        }
        // The draft's import name `websocket_close` is the same function.
        yield* call("websocket_connect", { url: server.url, connectionId: "alias" })
        expect(
          yield* call("websocket_close", { connectionId: "alias", code: 4002, reason: "via alias" })
        ).toEqual({})
        yield* eventually("on_close", () => lines().includes("close alias 4002 via alias"))
      })
    )

    it.scoped("refusals and unknown connections are in-band errors", () =>
      Effect.gen(function* () {
        const server = yield* wsServer()
        const { call, lines } = yield* websocketPlugin(timedLogs())
        const errorOf = (fn: string, request: unknown) =>
          Effect.map(call(fn, request), (response) => String(response.error))
        expect(yield* errorOf("websocket_connect", { url: `http://127.0.0.1:${server.port}/` })).toContain(
          "must use ws or wss"
        )
        expect(yield* errorOf("websocket_connect", { url: "not a url" })).toContain("invalid websocket URL")
        expect(yield* errorOf("websocket_connect", { url: `ws://127.0.0.2:${server.port}/` })).toContain(
          "is not allowed"
        )
        expect(yield* call("websocket_connect", { url: server.url, connectionId: "dup" })).toEqual({
          newConnectionId: "dup"
        })
        expect(yield* errorOf("websocket_connect", { url: server.url, connectionId: "dup" })).toContain(
          "already exists"
        )
        expect(yield* errorOf("websocket_sendtext", { connectionId: "nope", message: "x" })).toContain(
          "not found"
        )
        expect(yield* errorOf("websocket_sendbinary", { connectionId: "nope", data: "AA==" })).toContain(
          "not found"
        )
        expect(yield* errorOf("websocket_closeconnection", { connectionId: "nope" })).toContain("not found")
        expect(yield* errorOf("websocket_closeconnection", { connectionId: "dup", code: 1005 })).toContain(
          "invalid close code"
        )
        expect(yield* errorOf("websocket_sendtext", { message: "x" })).toContain("invalid request")
        // A refused upgrade and a closed port are handshake failures, not callbacks.
        const refusing = yield* wsServer({ rejectWith: 403 })
        expect(yield* errorOf("websocket_connect", { url: refusing.url, connectionId: "no" })).toContain(
          "Unexpected server response: 403"
        )
        expect(yield* errorOf("websocket_connect", { url: "ws://127.0.0.1:1/" })).toContain("handshake")
        expect(
          yield* errorOf("websocket_connect", {
            url: server.url,
            connectionId: "hdr",
            headers: { "X-Bad": "a\nb" }
          })
        ).toContain("cannot connect")
        // A server that hangs up right after the handshake: the connect succeeds, then on_close.
        const hanging = yield* wsServer({ onConnection: (side) => side.socket.close(1008, "go away") })
        expect(yield* call("websocket_connect", { url: hanging.url, connectionId: "short" })).toEqual({
          newConnectionId: "short"
        })
        yield* eventually("on_close", () => lines().includes("close short 1008 go away"))
        expect(lines().filter((l) => / (no|hdr) /.test(l))).toEqual([])
        // An empty ID gets a generated 22-character base62 one.
        const generated = yield* call("websocket_connect", { url: server.url })
        expect(generated.newConnectionId).toMatch(/^[0-9A-Za-z]{22}$/)
      })
    )

    it.scoped("hosts outside requiredHosts are refused; loopback only with the operator's grant", () =>
      Effect.gen(function* () {
        const server = yield* wsServer()
        const elsewhere = yield* websocketPlugin(timedLogs(), {
          id: "ws-elsewhere",
          bytes: repackage("host-websocket", (m) => ({
            ...m,
            permissions: { websocket: { requiredHosts: ["music.example.com", "*.example.org"] } }
          }))
        })
        expect(String((yield* elsewhere.call("websocket_connect", { url: server.url })).error)).toContain(
          "is not allowed"
        )
        // The fixture lists 127.0.0.1 and localhost exactly: without a grant that is not enough.
        const listed = yield* websocketPlugin(timedLogs(), { id: "ws-listed", allowedNetworks: [] })
        expect(String((yield* listed.call("websocket_connect", { url: server.url })).error)).toBe(
          'websocket host "127.0.0.1" is a loopback address; plugins may not reach private networks unless the operator grants it with --allow-network 127.0.0.1/32'
        )
        const byName = String(
          (yield* listed.call("websocket_connect", { url: `ws://localhost:${server.port}/` })).error
        )
        expect(byName).toBe(
          'websocket host "localhost" resolves to a private/loopback address; plugins may not reach private networks unless the operator grants it with --allow-network localhost'
        )
        const wildcard = repackage("host-websocket", (m) => ({
          ...m,
          permissions: { websocket: { allowedHosts: ["*"] } }
        }))
        const anywhere = yield* websocketPlugin(timedLogs(), {
          id: "ws-anywhere",
          bytes: wildcard,
          allowedNetworks: []
        })
        expect(String((yield* anywhere.call("websocket_connect", { url: server.url })).error)).toContain(
          "is a loopback address"
        )
        expect(server.connections).toHaveLength(0)
        // Granted: the exact listing and the wildcard both connect.
        const granted = yield* websocketPlugin(timedLogs(), {
          id: "ws-granted",
          allowedNetworks: ["127.0.0.1/32"]
        })
        expect(yield* granted.call("websocket_connect", { url: server.url, connectionId: "g" })).toEqual({
          newConnectionId: "g"
        })
        const anywhereGranted = yield* websocketPlugin(timedLogs(), {
          id: "ws-anywhere-granted",
          bytes: wildcard,
          allowedNetworks: ["127.0.0.1/32"]
        })
        expect(
          yield* anywhereGranted.call("websocket_connect", { url: server.url, connectionId: "w" })
        ).toEqual({
          newConnectionId: "w"
        })
        expect(server.connections).toHaveLength(2)
      })
    )

    it.scoped("unload closes every connection with 1001 and delivers on_close before the scope ends", () =>
      Effect.gen(function* () {
        const server = yield* wsServer({ echo: false })
        const scope = yield* Scope.make()
        const { call, lines } = yield* websocketPlugin(timedLogs(), { scope })
        for (const id of ["u1", "u2", "u3"])
          yield* call("websocket_connect", { url: server.url, connectionId: id })
        expect(server.clientCount()).toBe(3)
        yield* Scope.close(scope, Exit.void)
        // Delivered before the scope finished closing.
        expect(
          lines()
            .filter((l) => l.startsWith("close "))
            .sort()
        ).toEqual(["close u1 1001 going away", "close u2 1001 going away", "close u3 1001 going away"])
        yield* eventually("the server's view", () => server.connections.every((c) => c.closed !== undefined))
        expect(server.connections.map((c) => c.closed)).toEqual(
          Array(3).fill({ code: 1001, reason: "going away" })
        )
        expect(server.clientCount()).toBe(0)
      })
    )

    it.scoped("100 connections opened and closed leave nothing behind", () =>
      Effect.gen(function* () {
        const server = yield* wsServer()
        const logs = timedLogs()
        const scope = yield* Scope.make()
        const { call, lines } = yield* websocketPlugin(logs, { scope })
        const baseline = openTcpSockets()
        const ids = Array.from({ length: 100 }, (_, i) => `n${i}`)
        const start = performance.now()
        yield* Effect.forEach(
          ids,
          (id) =>
            Effect.flatMap(call("websocket_connect", { url: server.url, connectionId: id }), (response) =>
              Effect.sync(() => expect(response).toEqual({ newConnectionId: id }))
            ),
          { concurrency: 8 }
        )
        expect(server.clientCount()).toBe(100)
        yield* Effect.forEach(
          ids,
          (id) => call("websocket_sendtext", { connectionId: id, message: `hi ${id}` }),
          {
            concurrency: 8
          }
        )
        yield* eventually("100 echoes", () => lines().filter((l) => l.startsWith("text n")).length === 100)
        yield* Effect.forEach(ids, (id) => call("websocket_closeconnection", { connectionId: id }), {
          concurrency: 8
        })
        yield* eventually("100 on_close", () => lines().filter((l) => l.startsWith("close n")).length === 100)
        yield* eventually("the server empty", () => server.clientCount() === 0)
        yield* eventually("sockets released", () => openTcpSockets() <= baseline)
        const elapsed = performance.now() - start
        process.stdout.write(
          `100 websocket connections opened, used and closed in ${elapsed.toFixed(0)} ms\n`
        )
        // Every ID is free again, and unloading with nothing open is quick.
        expect(yield* call("websocket_connect", { url: server.url, connectionId: "n0" })).toEqual({
          newConnectionId: "n0"
        })
        yield* Scope.close(scope, Exit.void)
        yield* eventually("sockets released after unload", () => openTcpSockets() <= baseline)
        expect(server.clientCount()).toBe(0)
      })
    )
  }
)

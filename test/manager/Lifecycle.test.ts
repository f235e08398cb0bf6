/**
 * The manager's lifecycle edges: shutting down while calls run (drained, with a bound), and a reload
 * that fails while the old version is still closing (the slot never points at a closing version).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import { copyFileSync } from "node:fs"
import { createServer, type Socket } from "node:net"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import * as MetadataAgent from "../../src/capabilities/MetadataAgent.js"
import { PluginManager } from "../../src/manager/PluginManager.js"
import { Registry } from "../../src/manager/Registry.js"
import { fixture } from "../support/fixtures.js"
import { captureLogs } from "../support/logs.js"
import { makeFolders, managerLayer, type TestFolders } from "../support/manager.js"
import { eventually } from "../support/wait.js"
import type * as PluginManagerModule from "../../src/manager/PluginManager.js"

/** The manager built in a scope of its own, so the test decides when it shuts down. */
const startManager = (folders: TestFolders, options: Partial<PluginManagerModule.ManagerOptions> = {}) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(Layer.fresh(managerLayer(folders, options)), scope)
    return { manager: Context.get(context, PluginManager), registry: Context.get(context, Registry), scope }
  })

const loadedIds = (manager: PluginManager["Type"]) => Effect.runSync(manager.loadedIds)

/**
 * A call pinned on a plugin's current version that makes its real plugin call only once `gate`
 * opens: `pinned` completes as soon as the version is held.
 */
const gatedBiography = (manager: PluginManager["Type"], id: string) =>
  Effect.gen(function* () {
    const pinned = yield* Deferred.make<void>()
    const gate = yield* Deferred.make<void>()
    const fiber = yield* Effect.fork(
      manager.use(id, (plugin) =>
        Deferred.succeed(pinned, undefined).pipe(
          Effect.zipRight(Deferred.await(gate)),
          Effect.zipRight(MetadataAgent.fromPlugin(plugin).getArtistBiography({ id: "1", name: "Ana" }))
        )
      )
    )
    yield* Deferred.await(pinned)
    return { fiber, open: Deferred.succeed(gate, undefined) }
  })

/**
 * A WebSocket server on 127.0.0.1 that accepts one upgrade and then never answers a close frame, so
 * the client side (the plugin's WebSocket service) stays in its closing handshake until `release`.
 */
const stallingWsServer = Effect.acquireRelease(
  Effect.async<{
    url: string
    closeFrameSeen: () => boolean
    release: () => void
    close: () => void
  }>((resume) => {
    const sockets: Array<Socket> = []
    let closeFrame = false
    const server = createServer((socket) => {
      sockets.push(socket)
      let head = Buffer.alloc(0)
      let upgraded = false
      socket.on("error", () => undefined)
      socket.on("data", (chunk) => {
        if (upgraded) {
          // Opcode 8 in the first byte of a frame: the client started the closing handshake.
          if ((chunk[0]! & 0x0f) === 0x8) closeFrame = true
          return
        }
        head = Buffer.concat([head, chunk])
        if (!head.includes("\r\n\r\n")) return
        const key = /sec-websocket-key:\s*(\S+)/i.exec(head.toString("latin1"))?.[1] ?? ""
        const accept = createHash("sha1")
          .update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
          .digest("base64")
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`
        )
        upgraded = true
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resume(
        Effect.succeed({
          url: `ws://127.0.0.1:${port}/`,
          closeFrameSeen: () => closeFrame,
          release: () => sockets.forEach((s) => s.destroy()),
          close: () => {
            sockets.forEach((s) => s.destroy())
            server.close()
          }
        })
      )
    })
  }),
  (server) => Effect.sync(() => server.close())
)

describe("PluginManager lifecycle", () => {
  it.scopedLive("shutdown lets a call already running finish before the plugin closes", () =>
    Effect.gen(function* () {
      const folders = yield* makeFolders(["agent-full"])
      const { manager, scope } = yield* startManager(folders, { drainTimeoutMs: 60_000 })
      yield* manager.enable("agent-full")
      const call = yield* gatedBiography(manager, "agent-full")

      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      // Shutdown takes the plugin out of service at once: new calls are refused…
      yield* eventually(
        "the plugin to be taken out of service",
        () => loadedIds(manager).length === 0,
        30_000
      )
      const late = yield* Effect.flip(
        manager.use("agent-full", (plugin) =>
          MetadataAgent.fromPlugin(plugin).getArtistBiography({ id: "1", name: "Bo" })
        )
      )
      expect(late).toMatchObject({ _tag: "ManagerError", reason: "NotLoaded" })
      expect(late.message).toContain("shutting down")
      // …while the call already holding the version is waited for, and answers.
      expect(Option.isNone(yield* Fiber.poll(closing))).toBe(true)
      yield* call.open
      expect(yield* Fiber.join(call.fiber)).toEqual(Option.some("Biography for Ana"))
      yield* Fiber.join(closing)
    })
  )

  it.scopedLive(
    "a call that never ends holds shutdown only for the drain bound; a healthy call still answers",
    () =>
      Effect.gen(function* () {
        const logs = captureLogs()
        yield* logs.provide(
          Effect.gen(function* () {
            const folders = yield* makeFolders(["agent-full", "loop-export"])
            const { manager, scope } = yield* startManager(folders, {
              drainTimeoutMs: 1_000,
              timeoutsMs: { "loop-export": 300_000 }
            })
            yield* manager.enable("agent-full")
            yield* manager.enable("loop-export")
            const hostilePinned = yield* Deferred.make<void>()
            const hostile = yield* Effect.fork(
              manager.use("loop-export", (plugin) =>
                Deferred.succeed(hostilePinned, undefined).pipe(
                  Effect.zipRight(plugin.call("nd_get_artist_biography", "{}"))
                )
              )
            )
            yield* Deferred.await(hostilePinned)
            const healthy = yield* gatedBiography(manager, "agent-full")

            const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
            yield* eventually("shutdown to start", () => loadedIds(manager).length === 0, 30_000)
            // The neighbour's call, started before shutdown, runs during the drain and answers.
            yield* healthy.open
            expect(yield* Fiber.join(healthy.fiber)).toEqual(Option.some("Biography for Ana"))
            // Shutdown completes although the looping call never would (its timeout is 5 minutes).
            yield* Fiber.join(closing)
            const cut = yield* Effect.flip(Fiber.join(hostile))
            expect(cut._tag).toBe("PluginUnavailableError")
          })
        )
        const warning = logs.lines.find((l) => l.message.includes("still running"))
        expect(warning?.level).toBe("WARN")
        expect(warning?.message).toContain("loop-export")
        expect(warning?.message).toContain("1000 ms")
      })
  )

  it.scopedLive(
    "a reload that fails while the old version is still closing never serves from the closing version",
    () =>
      Effect.gen(function* () {
        const server = yield* stallingWsServer
        const folders = yield* makeFolders(["host-websocket"])
        const { manager, registry } = yield* startManager(folders)
        const id = "host-websocket"
        yield* manager.setNetworks(id, ["127.0.0.1"])
        yield* manager.enable(id)
        const connected = yield* manager.use(id, (plugin) =>
          plugin.call("call_websocket_connect", JSON.stringify({ url: server.url, connectionId: "c" }))
        )
        expect(new TextDecoder().decode(connected ?? new Uint8Array())).toContain('"newConnectionId":"c"')

        // The package changes on disk (no auto-reload here), then a config change asks for a reload:
        // the new load is refused, and closing the old version waits on the stalled WebSocket.
        copyFileSync(fixture("agent-partial"), join(folders.folder, `${id}.ndp`))
        const reload = yield* Effect.fork(manager.setConfig(id, { round: 1 }))
        yield* eventually("the old version to be closing", server.closeFrameSeen, 30_000)

        // While it closes, it is not the plugin's version any more: nothing reaches it.
        expect((yield* manager.get(id)).loaded).toBe(false)
        const refused = yield* Effect.flip(
          manager.use(id, (plugin) => plugin.call("call_websocket_close", "{}"))
        )
        expect(refused).toMatchObject({ _tag: "ManagerError", reason: "NotLoaded" })

        // Interrupting the caller mid-close does not cut the cleanup short.
        const interrupted = yield* Effect.fork(Fiber.interrupt(reload))
        server.release()
        yield* Fiber.join(interrupted)
        expect(loadedIds(manager)).toEqual([])
        const row = Option.getOrThrow(yield* Effect.orDie(registry.get(id)))
        expect(row.enabled).toBe(false)
        expect(row.lastError).toContain("changed on disk")
        expect((yield* manager.get(id)).lastError).toContain("changed on disk")
      })
  )
})

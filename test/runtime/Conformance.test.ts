/**
 * Our kernel against the reference: the same plugin, the same calls, through the bare
 * `@extism/extism` SDK and through the engine, must give the same bytes.
 */
import createPlugin from "@extism/extism"
import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { unzipSync } from "fflate"
import { readFileSync } from "node:fs"
import { PluginLoader } from "../../src/loader/PluginLoader.js"
import { testEngine } from "../support/engine.js"
import { fixture } from "../support/fixtures.js"

const calls: ReadonlyArray<readonly [string, string]> = [
  ["nd_get_artist_biography", '{"id":"1","name":"Björk 東京 🎵"}'],
  ["nd_get_similar_artists", '{"id":"1","name":"Ana","limit":4}'],
  ["nd_get_artist_top_songs", '{"id":"1","name":"Ana","count":3}'],
  ["nd_get_album_info", '{"name":"Homogenic","artist":"Björk"}'],
  ["nd_get_artist_biography", '{"id":"1","name":"Nobody"}'],
  ["config_value", '{"key":"greeting"}'],
  ["echo", "raw \u0000 bytes ✓"],
  ["var_roundtrip", "a var"]
]

layer(testEngine({ runtime: { poolSize: 1 } }))("Extism conformance", (it) => {
  it.scoped("the engine answers exactly as the reference SDK does", () =>
    Effect.gen(function* () {
      const wasm = unzipSync(readFileSync(fixture("agent-full")))["plugin.wasm"]!
      const config = { greeting: "hej" }
      const reference = yield* Effect.promise(() =>
        createPlugin(
          { wasm: [{ data: wasm }], config },
          {
            useWasi: false,
            functions: {
              "extism:host/user": {
                // The reference gets the same answer our Config service gives.
                config_get: (context, handle: bigint) => {
                  const { key } = JSON.parse(context.read(handle)!.text()) as { key: string }
                  return context.store(JSON.stringify(key in config ? { value: "hej", exists: true } : {}))
                }
              }
            }
          }
        )
      )
      const loader = yield* PluginLoader
      const plugin = yield* loader.loadFile(fixture("agent-full"), { config })
      for (const [name, input] of calls) {
        const expected = yield* Effect.promise(() => reference.call(name, input))
        const actual = yield* plugin.call(name, input)
        expect([name, actual === null ? null : Buffer.from(actual).toString("utf8")]).toEqual([
          name,
          expected === null ? null : expected.text()
        ])
      }
      yield* Effect.promise(() => reference.close())
    })
  )
})

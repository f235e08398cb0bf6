import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as EmbeddedDatabase from "../../src/server/embedded/EmbeddedDatabase.js"
import * as EmbeddedScrobbleHistory from "../../src/server/embedded/EmbeddedScrobbleHistory.js"
import * as ScrobbleHistory from "../../src/server/ScrobbleHistory.js"
import { tempDataFolder } from "../support/engine.js"
import { storageLayer } from "../support/storage.js"

const withHistory = <A, E>(body: Effect.Effect<A, E, ScrobbleHistory.ScrobbleHistory>) =>
  Effect.flatMap(tempDataFolder, (dir) =>
    Effect.provide(
      body,
      EmbeddedScrobbleHistory.layer.pipe(
        Layer.provide(EmbeddedDatabase.userDirectory),
        Layer.provide(storageLayer(dir)),
        Layer.orDie
      )
    )
  )

/** Every page from `options` on, followed through `next`. */
const allPages = (history: ScrobbleHistory.ScrobbleHistory["Type"], options: ScrobbleHistory.PageOptions) =>
  Effect.gen(function* () {
    const pages: Array<ReadonlyArray<ScrobbleHistory.ScrobbleRef>> = []
    let next: Option.Option<ScrobbleHistory.PageOptions> = Option.some(options)
    while (Option.isSome(next)) {
      const page = yield* ScrobbleHistory.getScrobbles(history, "alice", next.value)
      pages.push(page.scrobbles)
      next = page.next
      if (pages.length > 100) throw new Error("paging does not end")
    }
    return pages
  })

describe("ScrobbleHistory (embedded)", () => {
  it.scoped("paging visits every scrobble exactly once, ties included, in both directions", () =>
    withHistory(
      Effect.gen(function* () {
        const history = yield* ScrobbleHistory.ScrobbleHistory
        // Runs of ties longer than a page, single timestamps, and another user's scrobbles between.
        const times = [100, 100, 100, 100, 100, 100, 100, 200, 300, 300, 300, 300, 400, 500, 500]
        for (const [i, t] of times.entries()) {
          yield* history.record("alice", `mf-${i}`, t)
          yield* history.record("bob", `bob-${i}`, t)
        }
        for (const descending of [false, true]) {
          for (const maxItems of [1, 2, 3, 5, 15, 50]) {
            const pages = yield* allPages(history, { descending, maxItems })
            const seen = pages.flat().map((s) => s.mediaFileId)
            const expected = times.map((_, i) => `mf-${i}`)
            expect(seen).toEqual(descending ? [...expected].reverse() : expected)
            expect(pages.every((p) => p.length <= maxItems)).toBe(true)
          }
        }
        // Within bounds (inclusive), with the count agreeing.
        const bounded = (yield* allPages(history, {
          descending: false,
          maxItems: 2,
          fromTimestamp: 200,
          toTimestamp: 400
        })).flat()
        expect(bounded.map((s) => s.submissionTime)).toEqual([200, 300, 300, 300, 300, 400])
        expect(yield* history.count("alice", { fromTimestamp: 200, toTimestamp: 400 })).toBe(6)
        expect(yield* history.count("alice", {})).toBe(times.length)
        expect(yield* history.firstTimestamp("alice")).toEqual(Option.some(100))
        expect(yield* history.lastTimestamp("alice")).toEqual(Option.some(500))
        expect(yield* history.firstTimestamp("carol")).toEqual(Option.none())
        expect(yield* history.hasUser("alice")).toBe(true)
        expect(yield* history.hasUser("carol")).toBe(false)
      })
    )
  )
})

/**
 * `ndp demo` (what `npm start` runs): loads the bundled demo plugins and shows, with real calls,
 * what the engine does — metadata answers, scrobbling, lyrics, lifecycle, and a hostile plugin contained.
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { join } from "node:path"
import * as LyricsProvider from "../capabilities/LyricsProvider.js"
import * as MetadataAgent from "../capabilities/MetadataAgent.js"
import * as Scrobbler from "../capabilities/Scrobbler.js"
import { type LoadOptions, PluginLoader } from "../loader/PluginLoader.js"

const track: Scrobbler.TrackInfo = {
  id: "mf-1",
  title: "Jóga",
  album: "Homogenic",
  artist: "Björk",
  albumArtist: "Björk",
  artists: [{ name: "Björk" }],
  albumArtists: [{ name: "Björk" }],
  duration: 305,
  trackNumber: 3,
  discNumber: 1
}

const section = (title: string) => Console.log(`\n== ${title}`)

const show = <A>(label: string, value: Option.Option<A>) =>
  Console.log(
    `  ${label.padEnd(28)} ${Option.match(value, { onNone: () => "(miss)", onSome: (v) => JSON.stringify(v) })}`
  )

/** Runs the demo against the packages in `folder`. */
export const demo = (folder: string) =>
  Effect.gen(function* () {
    const loader = yield* PluginLoader
    const load = (id: string, options?: LoadOptions) =>
      Effect.gen(function* () {
        const started = performance.now()
        const plugin = yield* loader.loadFile(join(folder, `${id}.ndp`), options)
        yield* Console.log(
          `  loaded ${id.padEnd(16)} ${plugin.manifest.name} ${plugin.manifest.version}  [${plugin.capabilities.join(", ")}]  ${(performance.now() - started).toFixed(1)} ms`
        )
        return plugin
      })

    yield* section("Loading demo plugins")
    const full = yield* load("agent-full")
    const partial = yield* load("agent-partial")
    const scrobbler = yield* load("scrobbler", { users: "all" })
    const draft = yield* load("scrobbler-draft", {
      users: "all",
      config: { error: "service busy", error_type: "retry_later" }
    })
    yield* load("lifecycle", { config: { greeting: "hello from the demo" } })

    yield* section("Metadata agent (agent-full)")
    const agent = MetadataAgent.fromPlugin(full)
    const bjork = { id: "ar-1", name: "Björk" }
    yield* show("biography", yield* agent.getArtistBiography(bjork))
    yield* show("similar artists (3)", yield* agent.getSimilarArtists({ ...bjork, limit: 3 }))
    yield* show("top songs (2)", yield* agent.getArtistTopSongs({ ...bjork, count: 2 }))
    yield* show("album info", yield* agent.getAlbumInfo({ name: "Homogenic", artist: "Björk" }))
    yield* show("unknown artist", yield* agent.getArtistBiography({ id: "x", name: "Nobody" }))

    yield* section("Agent order: agent-partial, then agent-full (first answer wins)")
    const agents = [MetadataAgent.fromPlugin(partial), agent]
    for (const ask of ["getArtistBiography", "getArtistURL"] as const) {
      let answer: Option.Option<string> = Option.none()
      let from = "nobody"
      for (const a of agents) {
        answer = yield* a[ask](bjork)
        if (Option.isSome(answer)) {
          from = a.pluginId
          break
        }
      }
      yield* show(`${ask} (from ${from})`, answer)
    }

    yield* section("Scrobblers")
    const canonical = Scrobbler.fromPlugin(scrobbler)
    yield* Console.log(`  scrobbler authorizes alice:  ${yield* canonical.isAuthorized("alice")}`)
    yield* canonical.nowPlaying({ username: "alice", track, position: 12 })
    yield* canonical.scrobble({ username: "alice", track, timestamp: 1_764_000_000 })
    yield* Console.log("  now playing + scrobble sent to scrobbler (see its log lines above)")
    const failed = yield* Effect.flip(
      Scrobbler.fromPlugin(draft).scrobble({ username: "alice", track, timestamp: 1_764_000_000 })
    )
    yield* Console.log(`  scrobbler-draft failed as:   ${failed.kind} (${failed.message})`)

    yield* section("Lyrics (the plugin answers LRC; the engine parses it into timed lines)")
    const lyrics = yield* LyricsProvider.fromPlugin(yield* load("lyrics")).getLyrics(track)
    for (const found of lyrics) {
      yield* Console.log(`  ${found.format} lyrics, language ${found.lang}, ${found.lines.length} lines:`)
      for (const line of found.lines) {
        const at = line.startMs === undefined ? "" : `[${(line.startMs / 1000).toFixed(2).padStart(6)} s] `
        yield* Console.log(`    ${at}${line.text}`)
      }
    }

    yield* section("Scheduler, library and Subsonic API (host services called from Wasm)")
    const text = (bytes: Uint8Array | null) => (bytes === null ? "" : new TextDecoder().decode(bytes))
    const scheduler = yield* load("host-scheduler")
    const scheduled = yield* scheduler.call(
      "call_scheduler_scheduleonetime",
      JSON.stringify({ delaySeconds: 1, payload: "refresh-cache", scheduleId: "demo-job" })
    )
    yield* Console.log(`  scheduled a job in 1 s:      ${text(scheduled)}  (its callback logs below)`)
    yield* Effect.sleep("1200 millis")
    // The plugin creates its queue in nd_on_init, as real plugins do on every load.
    const tasks = yield* load("host-taskqueue", {
      config: { init_queue: "uploads", init_config: JSON.stringify({ maxRetries: 2, backoffMs: 200 }) }
    })
    const enqueued = JSON.parse(
      text(
        yield* tasks.call("call_task_enqueue", JSON.stringify({ queueName: "uploads", payload: "aGVsbG8=" }))
      )
    ) as { result?: string; error?: string }
    yield* Console.log(`  enqueued a task:             ${enqueued.result ?? enqueued.error ?? ""}`)
    let task = ""
    for (let i = 0; i < 50 && !task.includes("completed"); i++) {
      yield* Effect.sleep("100 millis")
      task = text(yield* tasks.call("call_task_get", JSON.stringify({ taskId: enqueued.result ?? "" })))
    }
    yield* Console.log(`  task_get after nd_task_execute ran: ${task}`)
    const library = yield* load("host-library", { libraries: [1] })
    const libraries = JSON.parse(text(yield* library.call("call_library_getalllibraries", "{}"))) as {
      result?: ReadonlyArray<{
        name: string
        totalSongs?: number
        totalAlbums?: number
        totalArtists?: number
      }>
    }
    for (const l of libraries.result ?? []) {
      yield* Console.log(
        `  library "${l.name}":          ${l.totalArtists ?? 0} artists, ${l.totalAlbums ?? 0} albums, ${l.totalSongs ?? 0} songs`
      )
    }
    const subsonic = yield* load("host-subsonic", { users: ["alice"] })
    const albums = JSON.parse(
      text(
        yield* subsonic.call(
          "call_subsonicapi_call",
          JSON.stringify({ uri: "/rest/getAlbumList2.view?u=alice&type=alphabeticalByName&size=10" })
        )
      )
    ) as { responseJson?: string; error?: string }
    const list = JSON.parse(albums.responseJson ?? "{}") as {
      "subsonic-response"?: { albumList2?: { album?: ReadonlyArray<{ name: string; artist: string }> } }
    }
    const names = list["subsonic-response"]?.albumList2?.album?.map((a) => `${a.name} (${a.artist})`) ?? []
    yield* Console.log(`  Subsonic getAlbumList2:      ${names.join(", ") || albums.error || "(none)"}`)

    yield* section("A hostile plugin is contained")
    const looping = yield* load("loop-export", { timeoutMs: 500 })
    let answered = 0
    const healthy = yield* Effect.fork(
      Effect.forever(
        agent.getArtistBiography(bjork).pipe(
          Effect.tap(() => {
            answered++
          }),
          Effect.zipRight(Effect.sleep("1 millis"))
        )
      )
    )
    const started = performance.now()
    const error = yield* Effect.flip(looping.call("nd_get_artist_biography", JSON.stringify(bjork)))
    yield* Console.log(`  loop-export: ${error._tag} after ${(performance.now() - started).toFixed(0)} ms`)
    yield* Fiber.interrupt(healthy)
    yield* Console.log(`  meanwhile agent-full answered ${answered} biography calls`)
    yield* show("agent-full still answers", yield* agent.getArtistBiography(bjork))
    const forbidden = yield* Effect.flip(loader.loadFile(join(folder, "forbidden-import.ndp")))
    yield* Console.log(`  forbidden-import: ${forbidden.message}`)
    yield* Console.log("\nDone.")
  }).pipe(Effect.scoped)

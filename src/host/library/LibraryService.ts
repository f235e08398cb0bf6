/**
 * The Library host service (`library`): `library_getlibrary {id} → {result}` and
 * `library_getalllibraries → {result}`, limited to the libraries the administrator allowed for the
 * plugin; a library not allowed reads exactly like one that does not exist. With
 * `library.filesystem: true` each library also carries its `path` and its `mountPoint`
 * (`/libraries/<id>`), where the plugin's WASI filesystem sees it (`mounts`): read-only, unless the
 * administrator allowed the plugin to write (`PluginContext.allowLibraryWrite`), still jailed.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { Mount } from "../../runtime/abi/protocol.js"
import { hostFunction } from "../HostCodec.js"
import { define, type HostServiceProvider, isAllowed, type PluginContext } from "../HostProvider.js"
import { type Library, LibraryCatalog } from "../../server/LibraryCatalog.js"
import { LibraryError } from "./LibraryError.js"

/** The functions of the Library service and the permission they need. */
export const definition = define({
  grant: "library",
  functions: ["library_getlibrary", "library_getalllibraries"]
})

/** Where a library's folder appears in the plugin's WASI filesystem. */
export const mountPoint = (id: number): string => `/libraries/${id}`

/** Whether the manifest asks for read-only filesystem access to the libraries. */
export const hasFilesystem = (context: PluginContext): boolean =>
  context.manifest.permissions.library?.filesystem === true

/** A library in the wire form plugins see (zero values are dropped by the codec). */
export const toWire = (library: Library, filesystem: boolean) => ({
  id: library.id,
  name: library.name,
  ...(filesystem ? { path: library.path, mountPoint: mountPoint(library.id) } : {}),
  lastScanAt: library.lastScanAt,
  totalSongs: library.totalSongs,
  totalAlbums: library.totalAlbums,
  totalArtists: library.totalArtists,
  totalSize: library.totalSize,
  totalDuration: library.totalDuration
})

const GetLibrary = Schema.Struct({ id: Schema.Int })
const NoRequest = Schema.Unknown

/** The Library provider over the server's catalogue. */
export const provider = (catalog: LibraryCatalog["Type"]): HostServiceProvider => {
  const visible = (context: PluginContext) =>
    Effect.map(catalog.list, (libraries) =>
      libraries.filter((library) => isAllowed(context.libraries, library.id))
    )
  return {
    ...definition,
    make: (context) => {
      const filesystem = hasFilesystem(context)
      return Effect.succeed({
        library_getlibrary: hostFunction("library_getlibrary", GetLibrary, ({ id }) =>
          Effect.flatMap(visible(context), (libraries) => {
            const library = libraries.find((candidate) => candidate.id === id)
            return library === undefined
              ? Effect.fail(new LibraryError({ reason: "NotFound", message: `library ${id} not found` }))
              : Effect.succeed({ result: toWire(library, filesystem) })
          })
        ),
        library_getalllibraries: hostFunction("library_getalllibraries", NoRequest, () =>
          Effect.map(visible(context), (libraries) => ({
            result: libraries.map((library) => toWire(library, filesystem))
          }))
        )
      })
    },
    mounts: (context) =>
      hasFilesystem(context)
        ? Effect.map(visible(context), (libraries) =>
            libraries.map((library): Mount => ({
              guestPath: mountPoint(library.id),
              hostPath: library.path,
              ...(context.allowLibraryWrite === true ? { writable: true } : {})
            }))
          )
        : Effect.succeed([])
  }
}

/** The Library host service; it reads the embedding server's `LibraryCatalog`. */
export class LibraryService extends Context.Tag("ndp-engine/host/LibraryService")<
  LibraryService,
  HostServiceProvider
>() {}

/** The Library service over the server's `LibraryCatalog`, taken once. */
export const make: Effect.Effect<HostServiceProvider, never, LibraryCatalog> = Effect.map(
  LibraryCatalog,
  provider
).pipe(Effect.withSpan("LibraryService.make"))

/** The Library service as a layer. */
export const layer: Layer.Layer<LibraryService, never, LibraryCatalog> = Layer.effect(LibraryService, make)

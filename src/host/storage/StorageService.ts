/**
 * The Storage host service (`storage`): a private, writable folder per plugin,
 * `<dataFolder>/plugins/<id>/storage`, which the plugin's WASI filesystem sees at `/storage`.
 * `storage_getstoragepath` answers that guest path. The folder is jailed like the library mounts
 * and holds at most `storage.maxSize` bytes (default 100 MiB), checked on every write that grows it.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { mkdir } from "node:fs/promises"
import { join } from "node:path"
import { defaultStorageMaxSizeBytes } from "../../manifest/Manifest.js"
import type { Mount } from "../../runtime/abi/protocol.js"
import { hostFunction } from "../HostCodec.js"
import { define, type HostServiceProvider, type PluginContext } from "../HostProvider.js"

/** The functions of the Storage service and the permission they need. */
export const definition = define({ grant: "storage", functions: ["storage_getstoragepath"] })

/** Where the storage folder appears in the plugin's WASI filesystem, as in Navidrome. */
export const storageMountPoint = "/storage"

/** The host folder behind a plugin's `/storage`. */
export const storageFolder = (dataFolder: string, pluginId: string): string =>
  join(dataFolder, "plugins", pluginId, "storage")

const mountOf = (context: PluginContext): Effect.Effect<ReadonlyArray<Mount>> => {
  const hostPath = storageFolder(context.dataFolder, context.pluginId)
  return Effect.promise(() => mkdir(hostPath, { recursive: true, mode: 0o700 })).pipe(
    Effect.as([
      {
        guestPath: storageMountPoint,
        hostPath,
        writable: true,
        maxBytes: context.manifest.permissions.storage?.maxSizeBytes ?? defaultStorageMaxSizeBytes
      }
    ]),
    // The folder is made on load; if that fails, the plugin loads without it and its WASI calls
    // on /storage answer EBADF, which the log explains.
    Effect.catchAllDefect((defect) =>
      Effect.logError(`cannot create the storage folder ${hostPath}: ${String(defect)}`).pipe(Effect.as([]))
    )
  )
}

/** The Storage provider. */
export const provider: HostServiceProvider = {
  ...definition,
  make: () =>
    Effect.succeed({
      storage_getstoragepath: hostFunction("storage_getstoragepath", Schema.Unknown, () =>
        Effect.succeed({ result: storageMountPoint })
      )
    }),
  mounts: mountOf
}

/**
 * The Storage host service. It has no error of its own: a folder that cannot be made leaves the
 * plugin without `/storage` (logged), and quota overruns are WASI errors (`EDQUOT`).
 */
export class StorageService extends Context.Tag("ndp-engine/host/StorageService")<
  StorageService,
  HostServiceProvider
>() {}

/** The Storage service. */
export const make: Effect.Effect<HostServiceProvider> = Effect.succeed(provider)

/** The Storage service as a layer. */
export const layer: Layer.Layer<StorageService> = Layer.effect(StorageService, make)

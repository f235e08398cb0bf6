/** A manager over a temporary plugins folder and data folder, with the real engine. */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { copyFileSync, mkdirSync } from "node:fs"
import { join } from "node:path"
import * as Engine from "../../src/Engine.js"
import * as PluginManager from "../../src/manager/PluginManager.js"
import * as Registry from "../../src/manager/Registry.js"
import { tempDataFolder } from "./engine.js"
import { fixture } from "./fixtures.js"

export interface TestFolders {
  readonly folder: string
  readonly dataFolder: string
}

/** Temporary folders; `plugins` lists fixtures copied in as `<as ?? id>.ndp`. */
export const makeFolders = (plugins: ReadonlyArray<string | { id: string; as: string }> = []) =>
  Effect.map(tempDataFolder, (root): TestFolders => {
    const folder = join(root, "plugins")
    mkdirSync(folder, { recursive: true })
    for (const p of plugins) {
      const { id, as } = typeof p === "string" ? { id: p, as: p } : p
      copyFileSync(fixture(id), join(folder, `${as}.ndp`))
    }
    return { folder, dataFolder: join(root, "data") }
  })

/** The engine (two workers unless `poolSize` says otherwise), the registry and the manager on `folders`. */
export const managerLayer = (
  folders: TestFolders,
  options: Partial<PluginManager.ManagerOptions> = {},
  poolSize = 2
) =>
  PluginManager.layer({ ...PluginManager.defaultManagerOptions(folders.folder), ...options }).pipe(
    Layer.provideMerge(Registry.layer),
    Layer.provideMerge(Engine.layer({ dataFolder: folders.dataFolder, runtime: { poolSize } })),
    Layer.orDie
  )

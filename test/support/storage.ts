/** The engine's storage alone, over `<dataFolder>/ndp.db`, with Node's filesystem. */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Layer from "effect/Layer"
import * as SqliteStorage from "../../src/storage/SqliteStorage.js"

export const storageLayer = (dataFolder: string) =>
  SqliteStorage.layer({ dataFolder }).pipe(Layer.provide(NodeFileSystem.layer))

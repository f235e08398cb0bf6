/**
 * Runs bundled migrations one migrator at a time in this process, for the plugins' KV store files
 * (the engine's own ndp.db migrates through `storage/`, under the database's write lock). Two
 * migrators starting at once on one file make @effect/sql's Migrator skip with "migrations already
 * running"; migrations run when a store opens only, so taking turns costs nothing that matters.
 */
import * as Migrator from "@effect/sql/Migrator"
import * as Effect from "effect/Effect"

const turn = Effect.unsafeMakeSemaphore(1)

/** `Migrator.make({})({ loader, table })`, serialised with every other migration in the process. */
export const migrate = (table: string, loader: Migrator.Loader) =>
  turn.withPermits(1)(Migrator.make({})({ loader, table }))

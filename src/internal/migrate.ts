/**
 * Runs bundled migrations one migrator at a time in this process. Several components keep their
 * own migrations table in one SQLite file (ndp.db), each on its own connection; two migrators
 * starting at once on one file make @effect/sql's Migrator skip with "migrations already running".
 * Migrations run at start-up only, so taking turns process-wide costs nothing that matters.
 */
import * as Migrator from "@effect/sql/Migrator"
import * as Effect from "effect/Effect"

const turn = Effect.unsafeMakeSemaphore(1)

/** `Migrator.make({})({ loader, table })`, serialised with every other migration in the process. */
export const migrate = (table: string, loader: Migrator.Loader) =>
  turn.withPermits(1)(Migrator.make({})({ loader, table }))

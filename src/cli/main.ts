/** Entry of the `ndp` program. */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import { run } from "./Cli.js"

run(process.argv).pipe(
  // Logs (including the plugins' own) go to stderr so stdout stays machine-readable with --json.
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: true }))),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({
    disablePrettyLogger: true,
    teardown: (exit, onExit) =>
      onExit(
        Exit.isFailure(exit)
          ? Cause.isInterruptedOnly(exit.cause)
            ? 130
            : 1
          : typeof process.exitCode === "number"
            ? process.exitCode
            : 0
      )
  })
)

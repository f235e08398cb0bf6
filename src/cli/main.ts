/** Entry of the `ndp` program. */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Option from "effect/Option"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import { run } from "./Cli.js"

run(process.argv).pipe(
  // Usage errors were already printed by @effect/cli; anything unexpected is printed here, on stderr.
  Effect.tapErrorCause((cause) =>
    Cause.failureOption(cause).pipe(Option.exists(ValidationError.isValidationError))
      ? Effect.void
      : Console.error(Cause.pretty(cause))
  ),
  // Logs (including the plugins' own) go to stderr so stdout stays machine-readable with --json.
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: true }))),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({
    disablePrettyLogger: true,
    disableErrorReporting: true,
    teardown: (exit, onExit) =>
      // Interrupted (a signal): 130, unless the command stopped cleanly and set its code (`serve`).
      onExit(
        Exit.isFailure(exit)
          ? Cause.isInterruptedOnly(exit.cause)
            ? typeof process.exitCode === "number"
              ? process.exitCode
              : 130
            : 1
          : typeof process.exitCode === "number"
            ? process.exitCode
            : 0
      )
  })
)

/** Entry of the `ndp` program. */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import { exitCodeOf, run } from "./Cli.js"

run(process.argv).pipe(
  // Usage errors were already printed by @effect/cli and command failures by `run`; anything
  // unexpected is printed here, on stderr.
  Effect.tapErrorCause((cause) =>
    Cause.failureOption(cause).pipe(
      Option.exists((e) => ValidationError.isValidationError(e) || Predicate.isTagged(e, "CommandFailure"))
    )
      ? Effect.void
      : Console.error(Cause.pretty(cause))
  ),
  // Logs (including the plugins' own) go to stderr so stdout stays machine-readable with --json.
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: true }))),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({
    disablePrettyLogger: true,
    disableErrorReporting: true,
    // The one place an outcome becomes an exit code.
    teardown: (exit, onExit) => onExit(exitCodeOf(exit, process.argv))
  })
)

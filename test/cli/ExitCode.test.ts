/**
 * The one mapping from a run's outcome to the process's exit code (`exitCodeOf`, used by the
 * entry's teardown): commands only fail with a `CommandFailure` carrying their code.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import { exitCodeOf } from "../../src/cli/Cli.js"
import { CommandFailure } from "../../src/cli/ServerOptions.js"

const argv = (...args: Array<string>) => ["node", "ndp", ...args]
const failure = (code: number) =>
  Exit.fail(new CommandFailure({ code, tag: "PluginLoadError", reason: "Compile", message: "broken" }))
const interrupted = Exit.failCause(Cause.interrupt(FiberId.none))

describe("exitCodeOf", () => {
  it("is 0 on success and the failure's own code on a CommandFailure", () => {
    expect(exitCodeOf(Exit.void, argv("inspect", "x.ndp"))).toBe(0)
    expect(exitCodeOf(failure(3), argv("inspect", "x.ndp"))).toBe(3)
    expect(exitCodeOf(failure(5), argv("plugins", "list"))).toBe(5)
  })

  it("is 1 for anything unexpected (a defect, another error)", () => {
    expect(exitCodeOf(Exit.die(new Error("bug")), argv("call", "x.ndp", "f"))).toBe(1)
    expect(exitCodeOf(Exit.fail("not a CommandFailure"), argv("pack", "dir"))).toBe(1)
  })

  it("is 130 when a signal stops a command, but 0 for serve, whose normal end is that stop", () => {
    expect(exitCodeOf(interrupted, argv("call", "x.ndp", "f"))).toBe(130)
    expect(exitCodeOf(interrupted, argv("serve", "--folder", "p"))).toBe(0)
    expect(exitCodeOf(interrupted, argv("--log-level", "debug", "serve"))).toBe(0)
  })
})

/** The one Go-duration parser, shared by the scheduler's `@every` and the manager's settings. */
import { describe, expect, it } from "@effect/vitest"
import { formatGoDuration, parseGoDuration } from "../../src/internal/GoDuration.js"

describe("parseGoDuration", () => {
  it("reads Go's units, fractions and sequences as milliseconds", () => {
    const cases: ReadonlyArray<readonly [string, number]> = [
      ["1h30m", 5_400_000],
      ["90s", 90_000],
      ["1.5s", 1_500],
      ["250ms", 250],
      ["2h45m30.5s", 9_930_500],
      ["1500us", 1.5],
      ["1500\u00b5s", 1.5],
      ["1500\u03bcs", 1.5],
      ["2000000ns", 2]
    ]
    for (const [text, ms] of cases) expect(parseGoDuration(text), text).toBe(ms)
  })

  it("refuses anything but unsigned number-and-unit runs (also signs, a bare 0 and a leading dot, as before)", () => {
    for (const text of ["", "0", "-1s", "+1s", "1", "1x", "1h 30m", "1d", "s", ".5s", "1h30"]) {
      expect(parseGoDuration(text), text).toBeUndefined()
    }
  })

  it("formats milliseconds for messages", () => {
    expect(formatGoDuration(1_000)).toBe("1s")
    expect(formatGoDuration(1_500)).toBe("1.5s")
    expect(formatGoDuration(250)).toBe("250ms")
  })
})

/** Captures Effect log lines so tests can assert on what plugins and the engine logged. */
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Logger from "effect/Logger"

export interface CapturedLog {
  readonly level: string
  readonly message: string
  readonly annotations: Record<string, unknown>
}

/** Runs `effect` with a logger that records every line into the returned array. */
export const captureLogs = () => {
  const lines: Array<CapturedLog> = []
  const logger = Logger.make(({ annotations, logLevel, message }) => {
    lines.push({
      level: logLevel.label,
      message: (Array.isArray(message) ? message : [message]).map(String).join(" "),
      annotations: Object.fromEntries(HashMap.toEntries(annotations))
    })
  })
  const layer = Logger.replace(Logger.defaultLogger, logger)
  return {
    lines,
    provide: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, layer)
  }
}

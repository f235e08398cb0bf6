/** The one error of the WebSocket host service; it travels to the guest as `{"error": message}`. */
import * as Schema from "effect/Schema"

/** Why a WebSocket host call failed. */
export const WebSocketErrorReason = Schema.Literal(
  "BadRequest",
  "Scheme",
  "Forbidden",
  "AlreadyExists",
  "NotFound",
  "TooMany",
  "Handshake",
  "Timeout",
  "NotOpen",
  "Send"
)

/** A WebSocket request was refused or failed. */
export class WebSocketError extends Schema.TaggedError<WebSocketError>()("WebSocketError", {
  reason: WebSocketErrorReason,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

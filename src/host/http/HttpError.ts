/** The one error of the HTTP service: a refused or failed request, reported in-band to the guest. */
import * as Schema from "effect/Schema"

/** Why an HTTP request failed. */
export const HttpErrorReason = Schema.Literal(
  /** The URL, host or resolved address is not allowed (scheme, `requiredHosts`, private network). */
  "Forbidden",
  /** The request did not finish within its deadline. */
  "Timeout",
  /** The response head or body is over its limit. */
  "TooLarge",
  /** The request itself is malformed (URL, method, headers). */
  "BadRequest",
  /** The connection failed (DNS, refused, reset, TLS). */
  "Network"
)
export type HttpErrorReason = typeof HttpErrorReason.Type

/** A request was refused or failed; travels to the guest as `{"error": message}`. */
export class HttpError extends Schema.TaggedError<HttpError>()("HttpError", {
  reason: HttpErrorReason,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

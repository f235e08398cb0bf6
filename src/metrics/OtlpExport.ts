/**
 * Sends the engine's metrics and spans to an OpenTelemetry collector over OTLP/HTTP (JSON), when
 * the operator names one: the same series `/metrics` shows, and the spans of the public engine
 * operations. Logs are not sent: they carry what plugins wrote, which stays on the machine (the
 * admin API shows them to the operator).
 *
 * The exporters batch on an interval and never hold a call up; a collector that is down costs a
 * failed POST per interval, not a failed plugin call.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as OtlpMetrics from "@effect/opentelemetry/OtlpMetrics"
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"

/** Where and how often to send. */
export interface OtlpExportOptions {
  /** The collector's base URL (`http://collector:4318`); `/v1/metrics` and `/v1/traces` are added. */
  readonly endpoint: string
  /** `service.name` of the resource (default `ndp-engine`). */
  readonly serviceName?: string | undefined
  /** Extra request headers, e.g. an `authorization` the collector asks for. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** How often batches are sent (default 10 s). */
  readonly exportInterval?: Duration.DurationInput | undefined
}

/** The variable `ndp serve` reads when `--otlp-endpoint` is not given (the OpenTelemetry name). */
export const endpointVariable = "OTEL_EXPORTER_OTLP_ENDPOINT"

export const defaultExportInterval: Duration.Duration = Duration.seconds(10)

/** The endpoint is not an http(s) URL. */
export class OtlpExportError extends Schema.TaggedError<OtlpExportError>()("OtlpExportError", {
  message: Schema.String
}) {}

const Endpoint = Schema.String.pipe(
  Schema.filter((text) => {
    if (!URL.canParse(text)) return "not a URL"
    const url = new URL(text)
    if (url.protocol !== "http:" && url.protocol !== "https:") return "not an http:// or https:// URL"
    if (url.search !== "" || url.hash !== "") return "has a query or a fragment"
    return true
  })
)

const decodeEndpoint = (endpoint: string) =>
  Schema.decodeUnknown(Endpoint)(endpoint).pipe(
    Effect.mapError(
      () =>
        new OtlpExportError({
          message: `the OpenTelemetry endpoint must be the collector's http:// or https:// base URL (like http://127.0.0.1:4318), not "${endpoint}"`
        })
    )
  )

/**
 * Exports metrics and spans while the layer is alive, flushing what is pending when it closes.
 * Provide it to the engine's layer (or the whole server) so the spans of its operations reach it.
 */
export const layer = (options: OtlpExportOptions): Layer.Layer<never, OtlpExportError> =>
  Layer.unwrapEffect(
    Effect.map(decodeEndpoint(options.endpoint), (endpoint) => {
      const base = endpoint.replace(/\/+$/, "")
      const common = {
        resource: { serviceName: options.serviceName ?? "ndp-engine" },
        headers: options.headers,
        exportInterval: options.exportInterval ?? defaultExportInterval,
        shutdownTimeout: Duration.seconds(3)
      }
      return Layer.merge(
        OtlpMetrics.layer({ url: `${base}/v1/metrics`, ...common }),
        OtlpTracer.layer({ url: `${base}/v1/traces`, ...common })
      ).pipe(Layer.provide(OtlpSerialization.layerJson), Layer.provide(FetchHttpClient.layer))
    })
  )

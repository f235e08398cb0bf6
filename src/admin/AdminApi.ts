/**
 * The admin API, declared once with `@effect/platform`'s `HttpApi`: the same declaration types the
 * handlers (AdminHandlers.ts), decodes every request with `effect/Schema` (a bad field is a 400
 * naming it) and generates the OpenAPI description served at `/api/openapi.json`.
 *
 * Every endpoint needs the admin token as a bearer token (`AdminAuthorization`).
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import * as Schema from "effect/Schema"

/** Bounds of what a request may carry, beside the body-size limit. */
export const limits = {
  listItems: 1_000,
  textChars: 1_024,
  callInputChars: 1024 * 1024,
  logEntries: 1_000
} as const

const Text = Schema.String.pipe(Schema.maxLength(limits.textChars))
const NonEmptyText = Text.pipe(Schema.minLength(1))
const access = <A, I>(item: Schema.Schema<A, I>) =>
  Schema.Union(Schema.Literal("all"), Schema.Array(item).pipe(Schema.maxItems(limits.listItems)))

/** A declared permission and the reason the manifest gives for it. */
export const Permission = Schema.Struct({
  name: Schema.String,
  reason: Schema.NullOr(Schema.String),
  /** The rest of the permission's block (hosts, size limits…), as in the manifest. */
  details: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})

export const PluginState = Schema.Literal("loaded", "loading", "disabled", "error")

/** One plugin as the list shows it. */
export const PluginView = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  version: Schema.String,
  author: Schema.String,
  description: Schema.String,
  state: PluginState,
  enabled: Schema.Boolean,
  loaded: Schema.Boolean,
  sha256: Schema.String,
  path: Schema.String,
  capabilities: Schema.Array(Schema.String),
  permissions: Schema.Array(Permission),
  users: access(Schema.String),
  libraries: access(Schema.Number),
  networks: Schema.Array(Schema.String),
  lastError: Schema.NullOr(Schema.String),
  hasConfig: Schema.Boolean
})
export type PluginView = typeof PluginView.Type

/** One plugin with its manifest, config schema, UI schema and current configuration. */
export const PluginDetail = Schema.Struct({
  ...PluginView.fields,
  manifest: Schema.Unknown,
  configSchema: Schema.NullOr(Schema.Unknown),
  uiSchema: Schema.NullOr(Schema.Unknown),
  config: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})

/** Grants: each given field replaces the plugin's list; an absent field is left as it is. */
export const Grants = Schema.Struct({
  users: Schema.optional(access(NonEmptyText)),
  libraries: Schema.optional(access(Schema.Int.pipe(Schema.nonNegative()))),
  networks: Schema.optional(Schema.Array(NonEmptyText).pipe(Schema.maxItems(limits.listItems)))
})

const ConfigObject = Schema.Record({ key: Text, value: Schema.Unknown })

export const ConfigBody = Schema.Struct({ config: ConfigObject })
export const ConfigPatch = Schema.Struct({
  set: Schema.optional(ConfigObject),
  unset: Schema.optional(Schema.Array(Text).pipe(Schema.maxItems(limits.listItems)))
})

export const LogLevelName = Schema.Literal("trace", "debug", "info", "warning", "error")

export const LogEntry = Schema.Struct({
  time: Schema.String,
  level: LogLevelName,
  message: Schema.String
})

export const LogsQuery = Schema.Struct({
  level: Schema.optional(LogLevelName),
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, limits.logEntries)))
})

export const MetricSample = Schema.Struct({
  name: Schema.String,
  type: Schema.Literal("counter", "gauge", "histogram", "summary", "frequency"),
  tags: Schema.Record({ key: Schema.String, value: Schema.String }),
  help: Schema.optional(Schema.String),
  value: Schema.Number,
  count: Schema.optional(Schema.Number),
  buckets: Schema.optional(Schema.Array(Schema.Tuple(Schema.String, Schema.Number)))
})

export const MetricsQuery = Schema.Struct({ plugin: Schema.optional(NonEmptyText) })

export const CallRequest = Schema.Struct({
  export: NonEmptyText.pipe(Schema.maxLength(128)),
  input: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(limits.callInputChars)), {
    default: () => ""
  }),
  timeoutMs: Schema.optional(Schema.Int.pipe(Schema.between(1, 300_000)))
})

export const CallResult = Schema.Struct({
  /** The output as UTF-8 text (null when the export wrote none), cut at `outputLimitChars`. */
  output: Schema.NullOr(Schema.String),
  truncated: Schema.Boolean,
  durationMs: Schema.Number
})

export const ConfigIssue = Schema.Struct({ path: Schema.String, message: Schema.String })

// ---- errors ----

export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

export class PluginNotFound extends Schema.TaggedError<PluginNotFound>()(
  "PluginNotFound",
  { pluginId: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** The configuration fails the manifest's schema; nothing was changed. */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>()(
  "InvalidConfig",
  { pluginId: Schema.String, message: Schema.String, issues: Schema.Array(ConfigIssue) },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** A well-formed request the manager refused (bad network grant, permission gate, not loaded…). */
export class Refused extends Schema.TaggedError<Refused>()(
  "Refused",
  { pluginId: Schema.String, reason: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

/** A grant the manager cannot take (a malformed or wildcard network); `field` names it. */
export class InvalidGrant extends Schema.TaggedError<InvalidGrant>()(
  "InvalidGrant",
  { pluginId: Schema.String, field: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** The export call failed; `error` is the plugin error's tag. */
export class CallFailed extends Schema.TaggedError<CallFailed>()(
  "CallFailed",
  { pluginId: Schema.String, error: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 422 })
) {}

/** The registry could not be read or written. */
export class AdminFailure extends Schema.TaggedError<AdminFailure>()(
  "AdminFailure",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 500 })
) {}

/** Requires `Authorization: Bearer <admin token>` on every endpoint. */
export class AdminAuthorization extends HttpApiMiddleware.Tag<AdminAuthorization>()("AdminAuthorization", {
  failure: Unauthorized,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

const idPath = Schema.Struct({ id: NonEmptyText })

export class PluginsGroup extends HttpApiGroup.make("plugins")
  .add(HttpApiEndpoint.get("list", "/plugins").addSuccess(Schema.Array(PluginView)))
  .add(HttpApiEndpoint.get("get", "/plugins/:id").setPath(idPath).addSuccess(PluginDetail))
  .add(
    HttpApiEndpoint.post("enable", "/plugins/:id/enable")
      .setPath(idPath)
      .setPayload(Grants)
      .addSuccess(PluginView)
  )
  .add(HttpApiEndpoint.post("disable", "/plugins/:id/disable").setPath(idPath).addSuccess(PluginView))
  .add(
    HttpApiEndpoint.put("grants", "/plugins/:id/grants")
      .setPath(idPath)
      .setPayload(Grants)
      .addSuccess(PluginView)
  )
  .add(HttpApiEndpoint.get("getConfig", "/plugins/:id/config").setPath(idPath).addSuccess(ConfigBody))
  .add(
    HttpApiEndpoint.put("replaceConfig", "/plugins/:id/config")
      .setPath(idPath)
      .setPayload(ConfigBody)
      .addSuccess(PluginView)
  )
  .add(
    HttpApiEndpoint.patch("patchConfig", "/plugins/:id/config")
      .setPath(idPath)
      .setPayload(ConfigPatch)
      .addSuccess(PluginView)
  )
  .add(HttpApiEndpoint.post("rescan", "/rescan").addSuccess(Schema.Array(PluginView)))
  .add(
    HttpApiEndpoint.get("logs", "/plugins/:id/logs")
      .setPath(idPath)
      .setUrlParams(LogsQuery)
      .addSuccess(Schema.Array(LogEntry))
  )
  .add(
    HttpApiEndpoint.post("call", "/plugins/:id/call")
      .setPath(idPath)
      .setPayload(CallRequest)
      .addSuccess(CallResult)
      .addError(CallFailed)
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .setUrlParams(MetricsQuery)
      .addSuccess(Schema.Array(MetricSample))
  )
  // Group-wide: every endpoint may meet an unknown plugin, a refusal, or a registry failure.
  .addError(AdminFailure)
  .addError(PluginNotFound)
  .addError(Refused)
  .addError(InvalidConfig)
  .addError(InvalidGrant)
  .middleware(AdminAuthorization)
  .prefix("/api") {}

/** The whole admin API. */
export class AdminApi extends HttpApi.make("ndp-admin")
  .add(PluginsGroup)
  .annotate(OpenApi.Title, "ndp-engine admin API")
  .annotate(
    OpenApi.Description,
    "Manage the plugins of an ndp-engine server: state, grants, configuration, logs, metrics. Every endpoint needs the admin token as a bearer token."
  ) {}

/**
 * The plugin manifest (`manifest.json`): decoded from untrusted JSON into plain data with canonical
 * permission names, plus the cross-field rules of the plugin contract.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/** Why a manifest was rejected. */
export const ManifestErrorReason = Schema.Literal("InvalidJson", "Invalid")

/** The reason literal of a {@link ManifestError}. */
export type ManifestErrorReason = typeof ManifestErrorReason.Type

/** `manifest.json` is not valid JSON, or does not describe a valid plugin; `message` says what to fix. */
export class ManifestError extends Schema.TaggedError<ManifestError>()("ManifestError", {
  reason: ManifestErrorReason,
  message: Schema.String
}) {}

/** The permission blocks the engine understands, by canonical name. */
export const PermissionName = Schema.Literal(
  "http",
  "websocket",
  "cache",
  "scheduler",
  "artwork",
  "users",
  "kvstore",
  "library",
  "subsonicapi",
  "taskqueue",
  "storage",
  "matcher",
  "scrobbleRetriever"
)

/** A canonical permission name. */
export type PermissionName = typeof PermissionName.Type

/** Store size used when `kvstore.maxSize` is absent: 1 MiB. */
export const defaultKvstoreMaxSizeBytes = 1024 * 1024

/** Storage folder size used when `storage.maxSize` is absent: 100 MiB (Navidrome sets no limit). */
export const defaultStorageMaxSizeBytes = 100 * 1024 * 1024

const show = (value: unknown): string => {
  if (value === undefined) return "nothing"
  const json = JSON.stringify(value)
  return json === undefined ? String(value) : json.length > 60 ? `${json.slice(0, 57)}...` : json
}

const expected = (what: string) => (issue: ParseResult.ParseIssue) =>
  `expected ${what}, got ${show(issue.actual)}`

const Text = Schema.String.annotations({ message: expected("a string") })

const RequiredText = Schema.propertySignature(
  Text.pipe(Schema.filter((s) => s.trim().length > 0 || "must not be empty"))
).annotations({ missingMessage: () => "is required (a non-empty string)" })

const OptionalText = Schema.optionalWith(Text, { exact: true })

const Flag = Schema.Boolean.annotations({ message: expected("true or false") })

const TextList = Schema.Array(Text).annotations({ message: expected("a list of strings") })

const JsonObject = Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
  message: expected("a JSON object")
})

// The encoded side of every block is a plain struct carrying the message, so a wrong type reads
// "expected an object" instead of a dump of the schema.
const block = <Fields extends Schema.Struct.Fields>(fields: Fields) =>
  Schema.Struct(fields).annotations({ message: expected("an object") })

const SI_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  ki: 1024,
  kib: 1024,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
  ti: 1024 ** 4,
  tib: 1024 ** 4
}

const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i

/**
 * Parses a byte size such as `"1MB"` (10^6), `"512KiB"` (2^19), `"1.5 GB"` or `"500"` (bytes).
 * Units are case-insensitive. Fractional bytes are truncated. `None` when the text is not a size.
 */
export const parseByteSize = (text: string): Option.Option<number> => {
  const match = SIZE_PATTERN.exec(text)
  if (match === null) return Option.none()
  const multiplier = SI_UNITS[(match[2] ?? "").toLowerCase()]
  if (multiplier === undefined) return Option.none()
  const bytes = Math.floor(Number(match[1]) * multiplier)
  return Number.isSafeInteger(bytes) ? Option.some(bytes) : Option.none()
}

const sizeMessage = (actual: unknown) =>
  `expected a size like "1MB" or "512KiB", got ${show(actual)} (units: B, KB, MB, GB, KiB, MiB, GiB)`

const ByteSize = Schema.transformOrFail(Schema.Unknown, Schema.Number, {
  strict: true,
  decode: (input, _options, ast) => {
    const bytes =
      typeof input === "string"
        ? parseByteSize(input)
        : typeof input === "number" && Number.isSafeInteger(input)
          ? Option.some(input)
          : Option.none()
    if (Option.isNone(bytes)) return ParseResult.fail(new ParseResult.Type(ast, input, sizeMessage(input)))
    if (bytes.value <= 0) {
      return ParseResult.fail(
        new ParseResult.Type(ast, input, `must be greater than zero, got ${show(input)}`)
      )
    }
    return ParseResult.succeed(bytes.value)
  },
  encode: (bytes) => ParseResult.succeed(`${bytes}B`)
})

const dedupe = (values: ReadonlyArray<string>): ReadonlyArray<string> => [...new Set(values)]

const BasicPermission: Schema.Schema<BasicPermission, { readonly reason?: string }> = block({
  reason: OptionalText
})

/** A permission block without options (`cache`, `scheduler`, `artwork`, `users`, `matcher`, `scrobbleRetriever`). */
export interface BasicPermission {
  readonly reason?: string
}

const HostsPermission = Schema.transform(
  block({
    requiredHosts: Schema.optionalWith(TextList, { exact: true }),
    allowedHosts: Schema.optionalWith(TextList, { exact: true }),
    reason: OptionalText
  }),
  Schema.Struct({
    requiredHosts: Schema.Array(Schema.String),
    reason: Schema.optionalWith(Schema.String, { exact: true })
  }),
  {
    strict: true,
    // `allowedHosts` is the README draft's spelling; a manifest carrying both means both lists.
    decode: ({ allowedHosts = [], requiredHosts = [], ...rest }) => ({
      ...rest,
      requiredHosts: dedupe([...requiredHosts, ...allowedHosts])
    }),
    encode: (permission) => permission
  }
)

/** `http` / `websocket`: the hosts the plugin may reach (canonical `requiredHosts`, alias `allowedHosts`). */
export interface HostsPermission {
  readonly requiredHosts: ReadonlyArray<string>
  readonly reason?: string
}

const KvstorePermission = Schema.transform(
  block({ maxSize: Schema.optionalWith(ByteSize, { exact: true }), reason: OptionalText }),
  Schema.Struct({ maxSizeBytes: Schema.Number, reason: Schema.optionalWith(Schema.String, { exact: true }) }),
  {
    strict: true,
    decode: ({ maxSize = defaultKvstoreMaxSizeBytes, ...rest }) => ({ ...rest, maxSizeBytes: maxSize }),
    encode: ({ maxSizeBytes, ...rest }) => ({ ...rest, maxSize: maxSizeBytes })
  }
)

/** `kvstore`: the store's size limit in bytes (from `maxSize`, default 1 MiB). */
export interface KvstorePermission {
  readonly maxSizeBytes: number
  readonly reason?: string
}

const LibraryPermission = Schema.transform(
  block({ filesystem: Schema.optionalWith(Flag, { exact: true }), reason: OptionalText }),
  Schema.Struct({ filesystem: Schema.Boolean, reason: Schema.optionalWith(Schema.String, { exact: true }) }),
  {
    strict: true,
    decode: ({ filesystem = false, ...rest }) => ({ ...rest, filesystem }),
    encode: (permission) => permission
  }
)

/** `library`: whether library folders are mounted read-only for the plugin (default false). */
export interface LibraryPermission {
  readonly filesystem: boolean
  readonly reason?: string
}

const StoragePermission = Schema.transform(
  block({ maxSize: Schema.optionalWith(ByteSize, { exact: true }), reason: OptionalText }),
  Schema.Struct({ maxSizeBytes: Schema.Number, reason: Schema.optionalWith(Schema.String, { exact: true }) }),
  {
    strict: true,
    decode: ({ maxSize = defaultStorageMaxSizeBytes, ...rest }) => ({ ...rest, maxSizeBytes: maxSize }),
    encode: ({ maxSizeBytes, ...rest }) => ({ ...rest, maxSize: maxSizeBytes })
  }
)

/** `storage`: the size limit of the plugin's `/storage` folder in bytes (from `maxSize`, default 100 MiB). */
export interface StoragePermission {
  readonly maxSizeBytes: number
  readonly reason?: string
}

const Concurrency = Schema.Int.annotations({ message: expected("a whole number") }).pipe(
  Schema.filter((n) => n >= 1 || "must be at least 1")
)

const TaskqueuePermission = Schema.transform(
  block({ maxConcurrency: Schema.optionalWith(Concurrency, { exact: true }), reason: OptionalText }),
  Schema.Struct({
    maxConcurrency: Schema.Number,
    reason: Schema.optionalWith(Schema.String, { exact: true })
  }),
  {
    strict: true,
    decode: ({ maxConcurrency = 1, ...rest }) => ({ ...rest, maxConcurrency }),
    encode: (permission) => permission
  }
)

/** `taskqueue`: how many tasks of the plugin may run at once, over all its queues (default 1). */
export interface TaskqueuePermission {
  readonly maxConcurrency: number
  readonly reason?: string
}

const SubsonicApiPermission = block({
  allowedUsernames: Schema.optionalWith(TextList, { exact: true }),
  allowAdmins: Schema.optionalWith(Flag, { exact: true }),
  reason: OptionalText
})

/** `subsonicapi`: the README draft's optional further limits on which users the plugin may act as. */
export interface SubsonicApiPermission {
  readonly allowedUsernames?: ReadonlyArray<string>
  readonly allowAdmins?: boolean
  readonly reason?: string
}

const optionalBlock = <S extends Schema.Schema.Any>(schema: S) => Schema.optionalWith(schema, { exact: true })

// Unknown blocks (such as the `config` permission key of real manifests) are dropped by the struct.
const Permissions = block({
  http: optionalBlock(HostsPermission),
  websocket: optionalBlock(HostsPermission),
  cache: optionalBlock(BasicPermission),
  scheduler: optionalBlock(BasicPermission),
  artwork: optionalBlock(BasicPermission),
  users: optionalBlock(BasicPermission),
  kvstore: optionalBlock(KvstorePermission),
  library: optionalBlock(LibraryPermission),
  subsonicapi: optionalBlock(SubsonicApiPermission),
  taskqueue: optionalBlock(TaskqueuePermission),
  storage: optionalBlock(StoragePermission),
  matcher: optionalBlock(BasicPermission),
  scrobbleRetriever: optionalBlock(BasicPermission)
})

/** The declared permissions, by canonical name; an absent block is not granted. */
export interface Permissions {
  readonly http?: HostsPermission
  readonly websocket?: HostsPermission
  readonly cache?: BasicPermission
  readonly scheduler?: BasicPermission
  readonly artwork?: BasicPermission
  readonly users?: BasicPermission
  readonly kvstore?: KvstorePermission
  readonly library?: LibraryPermission
  readonly subsonicapi?: SubsonicApiPermission
  readonly taskqueue?: TaskqueuePermission
  readonly storage?: StoragePermission
  readonly matcher?: BasicPermission
  /** `scrobbleRetriever`: read the scrobble history of allowed users (requires `users`). */
  readonly scrobbleRetriever?: BasicPermission
}

const ConfigDefinition = block({
  schema: Schema.propertySignature(JsonObject).annotations({
    missingMessage: () => "is required when config is present (a JSON Schema object)"
  }),
  uiSchema: Schema.optionalWith(JsonObject, { exact: true })
})

/** `config`: the JSON Schema of the plugin's configuration, and an optional UI schema. */
export interface ConfigDefinition {
  readonly schema: { readonly [key: string]: unknown }
  readonly uiSchema?: { readonly [key: string]: unknown }
}

const ManifestFields = block({
  name: RequiredText,
  author: RequiredText,
  version: RequiredText,
  description: OptionalText,
  website: OptionalText,
  permissions: Schema.optionalWith(Permissions, { exact: true }),
  config: Schema.optionalWith(ConfigDefinition, { exact: true })
}).annotations({ message: expected("a JSON object") })

const ManifestData = Schema.Struct({
  name: Schema.String,
  author: Schema.String,
  version: Schema.String,
  description: Schema.optionalWith(Schema.String, { exact: true }),
  website: Schema.optionalWith(Schema.String, { exact: true }),
  permissions: Schema.typeSchema(Permissions),
  config: Schema.optionalWith(Schema.typeSchema(ConfigDefinition), { exact: true })
})

/**
 * Decodes a manifest from parsed JSON. Unknown keys are ignored at every level; `permissions` is
 * always present in the result (empty when none are declared).
 */
export const Manifest: Schema.Schema<Manifest, typeof ManifestFields.Encoded> = Schema.transform(
  ManifestFields,
  ManifestData,
  {
    strict: true,
    decode: ({ permissions = {}, ...rest }) => ({ ...rest, permissions }),
    encode: (manifest) => manifest
  }
).pipe(
  Schema.filter((manifest) => {
    const { permissions } = manifest
    // Navidrome's cross-field rules: a permission that hands out users or library content needs
    // the permission that scopes them.
    const needs = (name: PermissionName, required: PermissionName) =>
      permissions[name] !== undefined && permissions[required] === undefined
        ? [
            {
              path: ["permissions", name],
              message: `requires the "${required}" permission; add "${required}": {} to permissions`
            }
          ]
        : []
    const issues = [
      ...needs("subsonicapi", "users"),
      ...needs("scrobbleRetriever", "users"),
      ...needs("matcher", "library")
    ]
    return issues.length === 0 ? true : issues
  })
)

/** A decoded plugin manifest: plain readonly data. */
export interface Manifest {
  readonly name: string
  readonly author: string
  readonly version: string
  readonly description?: string
  readonly website?: string
  readonly permissions: Permissions
  readonly config?: ConfigDefinition
}

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (out, key) =>
      typeof key === "number" ? `${out}[${key}]` : out === "" ? String(key) : `${out}.${String(key)}`,
    ""
  )

const decode = Schema.decodeUnknown(Manifest, { errors: "all", onExcessProperty: "ignore" })

// Go's encoding/json, which Navidrome uses, treats `null` as "not set"; dropping null members makes
// `"description": null` mean what it means there.
function dropNullMembers(this: unknown, _key: string, value: unknown): unknown {
  return value === null && !Array.isArray(this) ? undefined : value
}

/** Parses and decodes the text of `manifest.json`. */
export const decodeManifest = (json: string): Effect.Effect<Manifest, ManifestError> =>
  Effect.gen(function* () {
    let parsed: unknown
    try {
      parsed = JSON.parse(json, dropNullMembers)
    } catch (error) {
      return yield* new ManifestError({
        reason: "InvalidJson",
        message: `manifest.json is not valid JSON: ${error instanceof Error ? error.message : String(error)}`
      })
    }
    return yield* decode(parsed).pipe(
      Effect.mapError((error) => {
        const lines = ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) =>
          issue.path.length === 0
            ? `manifest.json: ${issue.message}`
            : `manifest.json: ${formatPath(issue.path)}: ${issue.message}`
        )
        return new ManifestError({ reason: "Invalid", message: lines.join("\n") })
      })
    )
  }).pipe(Effect.withSpan("Manifest.decodeManifest"))

/** Permissions that only work when the plugin exports the callback the host calls back. */
const callbackRules: ReadonlyArray<{
  readonly permission: PermissionName
  readonly capability: string
  readonly exportName: string
}> = [
  { permission: "scheduler", capability: "Scheduler", exportName: "nd_scheduler_callback" },
  { permission: "taskqueue", capability: "TaskWorker", exportName: "nd_task_execute" }
]

/**
 * Checks the rules that need the module's capabilities (names such as "Scrobbler", "Scheduler"),
 * as Navidrome does at load: a Scrobbler needs `users`; `scheduler` needs `nd_scheduler_callback`
 * and `taskqueue` needs `nd_task_execute`. `warnings` is for what is merely suspicious.
 */
export const checkCapabilityRules = (
  manifest: Manifest,
  capabilityNames: ReadonlyArray<string>
): Effect.Effect<{ readonly warnings: ReadonlyArray<string> }, ManifestError> => {
  const has = new Set(capabilityNames)
  if (has.has("Scrobbler") && manifest.permissions.users === undefined) {
    return Effect.fail(
      new ManifestError({
        reason: "Invalid",
        message:
          'manifest.json: the plugin is a Scrobbler, which requires the "users" permission; add "users": {} to permissions'
      })
    )
  }
  for (const rule of callbackRules) {
    if (manifest.permissions[rule.permission] !== undefined && !has.has(rule.capability)) {
      return Effect.fail(
        new ManifestError({
          reason: "Invalid",
          message: `manifest.json: the "${rule.permission}" permission requires the plugin to export ${rule.exportName}; export it or remove the permission`
        })
      )
    }
  }
  return Effect.succeed({ warnings: [] })
}

/** The permissions a manifest declares, in canonical order. */
export const permissionNames = (manifest: Manifest): ReadonlyArray<PermissionName> =>
  PermissionName.literals.filter((name) => manifest.permissions[name] !== undefined)

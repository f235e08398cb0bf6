/**
 * The admin token. Only its SHA-256 is kept, in `<dataFolder>/admin-token.sha256` (mode 0600):
 * generated at first start and shown once (`generated`), or set by the operator (then nothing is
 * written). Tokens are compared by their hashes with `timingSafeEqual`, and every refused attempt
 * is logged.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"

/** The token file could not be read or written, or the operator's token is too short. */
export class AdminAuthError extends Schema.TaggedError<AdminAuthError>()("AdminAuthError", {
  message: Schema.String
}) {}

/** The shortest token an operator may set. */
export const minTokenChars = 16

export interface AdminAuthOptions {
  /** Where `admin-token.sha256` lives. */
  readonly dataFolder: string
  /** A token chosen by the operator; overrides the stored one. */
  readonly token?: Redacted.Redacted<string> | undefined
}

export const tokenFile = (dataFolder: string) => join(dataFolder, "admin-token.sha256")

const digest = (token: string): Buffer => createHash("sha256").update(token, "utf8").digest()

export class AdminAuth extends Context.Tag("ndp-engine/AdminAuth")<
  AdminAuth,
  {
    /** The token generated at this start, to be shown to the operator once; none otherwise. */
    readonly generated: Option.Option<Redacted.Redacted<string>>
    /** Whether `token` is the admin token (constant time); a wrong one is logged with `from`. */
    readonly verify: (token: Redacted.Redacted<string>, from: string) => Effect.Effect<boolean>
  }
>() {}

export const make = Effect.fn("AdminAuth.make")(function* (options: AdminAuthOptions) {
  const file = tokenFile(options.dataFolder)
  const fail = (what: string) => (cause: unknown) =>
    new AdminAuthError({
      message: `${what} ${file}: ${cause instanceof Error ? cause.message : String(cause)}; check the data folder's permissions`
    })
  let expected: Buffer
  let generated = Option.none<Redacted.Redacted<string>>()
  if (options.token !== undefined) {
    if (Redacted.value(options.token).length < minTokenChars) {
      return yield* new AdminAuthError({
        message: `the admin token must have at least ${minTokenChars} characters; choose a longer one`
      })
    }
    expected = digest(Redacted.value(options.token))
  } else if (existsSync(file)) {
    const hex = yield* Effect.try({
      try: () => readFileSync(file, "utf8").trim(),
      catch: fail("cannot read")
    })
    if (!/^[0-9a-f]{64}$/.test(hex)) {
      return yield* new AdminAuthError({
        message: `${file} does not hold a SHA-256 in hex; delete it to have a new token generated at the next start`
      })
    }
    expected = Buffer.from(hex, "hex")
  } else {
    const token = randomBytes(32).toString("base64url")
    expected = digest(token)
    yield* Effect.try({
      try: () => {
        mkdirSync(options.dataFolder, { recursive: true })
        writeFileSync(file, `${expected.toString("hex")}\n`, { mode: 0o600 })
        chmodSync(file, 0o600)
      },
      catch: fail("cannot write")
    })
    generated = Option.some(Redacted.make(token))
  }
  return AdminAuth.of({
    generated,
    verify: (token, from) =>
      Effect.suspend(() => {
        if (timingSafeEqual(digest(Redacted.value(token)), expected)) return Effect.succeed(true)
        return Effect.as(
          Effect.logWarning(`admin API: refused a request with a wrong or missing token from ${from}`),
          false
        )
      })
  })
})

export const layer = (options: AdminAuthOptions): Layer.Layer<AdminAuth, AdminAuthError> =>
  Layer.effect(AdminAuth, make(options))

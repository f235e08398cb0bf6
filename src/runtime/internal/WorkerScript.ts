/**
 * Finds the code the execution workers run.
 *
 * `npm run build` bundles `src/runtime/worker/main.ts` into one CommonJS script,
 * `ndp-worker.cjs`, beside this module's compiled JavaScript; the package ships it there. It is
 * located with `new URL("./ndp-worker.cjs", import.meta.url)`, the form bundlers recognise as an
 * asset next to the code. Running from the TypeScript sources (tsx, vitest) there is no such file,
 * so the worker is bundled in memory with esbuild, a development dependency. Either way a failure
 * is a `WorkerScriptError` saying what is missing, never a silent fallback.
 */
import * as Data from "effect/Data"
import type * as Esbuild from "esbuild"
import { readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"

/** The worker's code could not be found or built; the message says what to do. */
export class WorkerScriptError extends Data.TaggedError("WorkerScriptError")<{
  /** Where the script was looked for (a file path), or the source entry that failed to build. */
  readonly path: string
  readonly message: string
}> {}

/** The compiled worker's file name, as shipped in `dist/runtime/internal/`. */
export const workerFileName = "ndp-worker.cjs"

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** True when this module is the TypeScript source (tsx, vitest), not the compiled package. */
const fromSources = (): boolean => import.meta.url.endsWith(".ts")

const locate = (): URL => {
  try {
    return new URL("./ndp-worker.cjs", import.meta.url)
  } catch (cause) {
    throw new WorkerScriptError({
      path: workerFileName,
      message: `ndp-engine cannot locate its worker script ${workerFileName}: import.meta.url is not available here (${describe(cause)}). Bundle your application as ES modules (esbuild --format=esm) so import.meta.url is kept, and copy ${workerFileName} next to the bundle.`
    })
  }
}

const devBundler: string = "esbuild"

/** Dev only: bundles the worker from its TypeScript entry, as `npm run build` does. */
const bundleFromSources = async (): Promise<string> => {
  const entry = fileURLToPath(new URL("../worker/main.ts", import.meta.url))
  let esbuild: typeof Esbuild
  try {
    // Not a literal: a consumer's bundler must not try to bundle esbuild into the application.
    esbuild = (await import(/* webpackIgnore: true */ devBundler)) as typeof Esbuild
  } catch (cause) {
    throw new WorkerScriptError({
      path: entry,
      message: `running ndp-engine from its TypeScript sources bundles the worker with esbuild, which could not be loaded (${describe(cause)}). Run npm ci in the repository, or run the compiled package (npm run build).`
    })
  }
  try {
    const result = await esbuild.build({ ...workerBuildOptions, entryPoints: [entry], write: false })
    return result.outputFiles[0]!.text
  } catch (cause) {
    throw new WorkerScriptError({
      path: entry,
      message: `could not bundle the worker from ${entry}: ${describe(cause)}. Fix the error above in src/runtime/worker/.`
    })
  }
}

/** The esbuild options for the worker, shared with the build script so both produce the same code. */
export const workerBuildOptions = {
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  logLevel: "silent"
} as const

const load = async (): Promise<string> => {
  const url = locate()
  const path = url.protocol === "file:" ? fileURLToPath(url) : url.href
  try {
    return await readFile(url, "utf8")
  } catch (cause) {
    const missing = (cause as { code?: unknown }).code === "ENOENT"
    if (missing && fromSources()) return bundleFromSources()
    throw new WorkerScriptError({
      path,
      message: missing
        ? `ndp-engine's worker script is missing: ${path}. The package ships it as dist/runtime/internal/${workerFileName}; if you bundled your application, copy node_modules/ndp-engine/dist/runtime/internal/${workerFileName} next to your bundle (README, "Bundling"); in the ndp-engine repository, run npm run build.`
        : `ndp-engine could not read its worker script ${path}: ${describe(cause)}`
    })
  }
}

let cached: Promise<string> | undefined

/** The worker's code as one CommonJS script, read (or, from the sources, bundled) once per process. */
export const loadWorkerSource = (): Promise<string> => {
  if (cached === undefined) {
    cached = load()
    // A failure is not cached: the next pool tries again (e.g. after the file was copied).
    cached.catch(() => {
      cached = undefined
    })
  }
  return cached
}

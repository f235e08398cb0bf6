/**
 * The execution layer: compiles plugin modules once, runs their exports on a pool of workers we
 * own, answers their host calls with Effect services on the main thread, and turns every failure
 * into a typed error. One `WasmRuntime` serves every loaded plugin; each plugin's instances live
 * in the `Scope` it was instantiated in.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as LogLevel from "effect/LogLevel"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import { availableParallelism } from "node:os"
import * as PluginMetrics from "../metrics/PluginMetrics.js"
import { type CallOutcome, type PoolStats, WorkerPool } from "./internal/WorkerPool.js"
import type { WasmModule } from "./internal/WasmModule.js"
import { WorkerScriptError } from "./internal/WorkerScript.js"

export type { PoolStats } from "./internal/WorkerPool.js"
import {
  type PluginCallError,
  PluginFailedError,
  PluginInputTooLargeError,
  PluginLoadError,
  PluginMemoryError,
  PluginNotImplementedError,
  PluginOutputError,
  PluginTimeoutError,
  PluginTrapError,
  PluginUnavailableError,
  WorkerStartError
} from "./PluginError.js"

export { WorkerScriptError }
import { capMemory, inspect, WASM_PAGE_BYTES, type WasmShape } from "./WasmBinary.js"
import { EngineClockView, makeEngineClock } from "./abi/EngineClock.js"
import { isInternal } from "./abi/Imports.js"
import { LocalCounts } from "./abi/LocalCounts.js"
import {
  defaultLogBudget,
  type LogBudget,
  type LocalKvStore,
  LogLevels,
  makeLogBudget,
  type Mount,
  type PluginSpec,
  resolveLogBudget
} from "./abi/protocol.js"

export type { LogBudget } from "./abi/protocol.js"

/** Settings of the execution layer; every field has a default (see `RuntimeOptions.defaults`). */
export interface RuntimeOptions {
  /** Worker threads running plugin code. Default: 2 × cores. */
  readonly poolSize: number
  /** How many workers one plugin may occupy at once, so a runaway plugin cannot starve the rest. */
  readonly maxWorkersPerPlugin: number
  /**
   * Extra workers lent beyond `poolSize`, one per plugin that has nothing running, while every
   * worker is taken and some of them only sleep or wait on a host call. Default: 2 × `poolSize`.
   */
  readonly maxBurstWorkers: number
  /** How long an extra worker may stay idle before it is stopped. Default 10 s. */
  readonly burstIdleMs: number
  /**
   * How long a plugin instance may stay unused in a worker before it is dropped (its linear memory
   * with it); the next call on that worker instantiates it again. Default 5 min.
   */
  readonly instanceIdleMs: number
  /** Per-call timeout unless a plugin overrides it. Default 30 s. */
  readonly defaultTimeoutMs: number
  /** Linear-memory cap per plugin instance, and the cap of host memory it may allocate per call. */
  readonly memoryLimitBytes: number
  readonly maxInputBytes: number
  readonly maxOutputBytes: number
  readonly maxVarBytes: number
  /** Bound of the compiled-module cache, in bytes of Wasm. */
  readonly moduleCacheBytes: number
  /** V8 heap cap of each worker. */
  readonly workerHeapMb: number
  /** Guest log and stdout/stderr budget of every plugin; missing fields take the defaults. */
  readonly logBudget: Partial<LogBudget>
  /**
   * Whether the workers answer the host functions that need nothing from the main thread (the
   * Config service, reads of a SQLite KV store) themselves. Default true; false sends every host
   * call to the main thread, for comparison (docs/decisions/0035-host-calls-in-the-worker.md).
   */
  readonly hostCallsInWorker: boolean
}

export const RuntimeOptions = {
  defaults: (): RuntimeOptions => {
    const poolSize = 2 * availableParallelism()
    return {
      poolSize,
      maxWorkersPerPlugin: Math.max(1, poolSize - 1),
      maxBurstWorkers: 2 * poolSize,
      burstIdleMs: 10_000,
      instanceIdleMs: 300_000,
      defaultTimeoutMs: 30_000,
      memoryLimitBytes: 256 * 1024 * 1024,
      maxInputBytes: 16 * 1024 * 1024,
      maxOutputBytes: 16 * 1024 * 1024,
      maxVarBytes: 1024 * 1024,
      moduleCacheBytes: 200 * 1000 * 1000,
      workerHeapMb: 256,
      logBudget: defaultLogBudget,
      hostCallsInWorker: true
    }
  }
}

/** A plugin module compiled with its memory cap, plus what it imports and exports. */
export interface CompiledModule {
  readonly sha256: string
  readonly module: WasmModule
  readonly shape: WasmShape
  readonly memoryLimitBytes: number
}

/** The plugin call a host call belongs to. */
export interface HostCallContext {
  /** Completes when that plugin call has returned (or failed); for work that must not re-enter it. */
  readonly callFinished: Effect.Effect<void>
}

/** Answers one host call of a plugin with a JSON (or raw) response. Must not fail. */
export type HostCallHandler = (
  fn: string,
  payload: Uint8Array,
  call: HostCallContext
) => Effect.Effect<Uint8Array>

export interface InstantiateOptions {
  readonly pluginId: string
  readonly compiled: CompiledModule
  /** The flattened plugin config the guest reads through `config_get`. */
  readonly config: Readonly<Record<string, string>>
  /** Names in `extism:host/user` the plugin may import; checked before this call. */
  readonly userFunctions: ReadonlyArray<string>
  /**
   * Of `userFunctions`, those the worker may answer itself: from `config` (pure functions of it,
   * such as the stock Config service's) or by reading `localKvStore`; honoured unless
   * `hostCallsInWorker` is off.
   */
  readonly workerFunctions?: ReadonlyArray<string> | undefined
  /** The plugin's SQLite KV store, which the worker may read for the `kvstore_*` names in `workerFunctions`. */
  readonly localKvStore?: LocalKvStore | undefined
  /** The plugin cache's shared index, against which the worker checks its copies for the `cache_*` names in `workerFunctions`. */
  readonly localCache?: SharedArrayBuffer | undefined
  readonly envHttp: boolean
  readonly host: HostCallHandler
  readonly timeoutMs?: number | undefined
  /** A fresh instance for every call, for plugins that keep state they should not. */
  readonly freshInstance?: boolean | undefined
  readonly logLevel?: LogLevel.LogLevel | undefined
  /** Host folders visible read-only to the plugin's WASI filesystem calls. */
  readonly mounts?: ReadonlyArray<Mount> | undefined
  /** This plugin's log budget, over the runtime's. */
  readonly logBudget?: Partial<LogBudget> | undefined
}

export interface CallOptions {
  readonly timeoutMs?: number | undefined
}

/** A plugin whose module is instantiated in the pool; valid until its scope closes. */
export interface RunningPlugin {
  readonly pluginId: string
  readonly exports: ReadonlySet<string>
  readonly call: (
    exportName: string,
    input: Uint8Array,
    options?: CallOptions
  ) => Effect.Effect<Uint8Array | null, PluginCallError>
}

export class WasmRuntime extends Context.Tag("ndp-engine/WasmRuntime")<
  WasmRuntime,
  {
    readonly options: RuntimeOptions
    /** Caps the module's memory, compiles it (cached by SHA-256) and reads its imports and exports. */
    readonly compile: (
      pluginId: string,
      sha256: string,
      wasm: Uint8Array,
      memoryLimitBytes?: number
    ) => Effect.Effect<CompiledModule, PluginLoadError>
    /** Registers the plugin with the pool and runs its start code once, to fail fast. */
    readonly instantiate: (
      options: InstantiateOptions
    ) => Effect.Effect<RunningPlugin, PluginLoadError, Scope.Scope>
    /** Worker thread IDs currently alive, for status and leak checks. */
    readonly workerThreadIds: Effect.Effect<ReadonlyArray<number>>
    /** Workers, extras, busy and blocked workers, and queued calls right now. */
    readonly poolStats: Effect.Effect<PoolStats>
  }
>() {}

/** How long a load's start call may wait for a free worker, at least (its own timeout if longer). */
const LOAD_QUEUE_TIMEOUT_MS = 30_000

const toExtismLevel = (level: LogLevel.LogLevel): number => {
  switch (level._tag) {
    case "All":
    case "Trace":
      return LogLevels.trace
    case "Debug":
      return LogLevels.debug
    case "Info":
      return LogLevels.info
    case "Warning":
      return LogLevels.warn
    case "Error":
    case "Fatal":
      return LogLevels.error
    case "None":
      return LogLevels.off
  }
}

const fromExtismLevel = (level: number): LogLevel.LogLevel =>
  level <= LogLevels.trace
    ? LogLevel.Trace
    : level === LogLevels.debug
      ? LogLevel.Debug
      : level === LogLevels.info
        ? LogLevel.Info
        : level === LogLevels.warn
          ? LogLevel.Warning
          : LogLevel.Error

/** Why no worker could start, and what to check; `workerHeapMb` is the usual culprit. */
const workerStartAdvice = (failure: { readonly message: string; readonly attempts: number }): string =>
  `the engine could not start a plugin worker thread (${failure.message}; ${failure.attempts} failed starts in a row, still retrying with back-off). Check the runtime option workerHeapMb (a worker needs more than 4 MB; the default is 256) and the memory available to the process`

const outcomeToExit = (
  pluginId: string,
  exportName: string,
  outcome: CallOutcome
): Exit.Exit<Uint8Array | null, PluginCallError> => {
  const fields = { pluginId, export: exportName }
  switch (outcome._tag) {
    case "Done":
      return Exit.succeed(outcome.output)
    case "TimedOut":
      return Exit.fail(
        new PluginTimeoutError({
          ...fields,
          timeoutMs: outcome.timeoutMs,
          phase: "Running",
          message: `plugin ${pluginId} did not finish ${exportName} within ${outcome.timeoutMs} ms, so its worker was stopped; fix the plugin or raise its timeout`
        })
      )
    case "QueueTimedOut":
      return Exit.fail(
        new PluginTimeoutError({
          ...fields,
          timeoutMs: outcome.timeoutMs,
          phase: "Queued",
          message: `plugin ${pluginId} waited ${outcome.timeoutMs} ms for a free worker and ${exportName} never started (${outcome.busy} of ${outcome.workers} workers busy, ${outcome.blocked} of them sleeping or waiting on host calls, ${outcome.starting} starting); retry later, or raise the runtime options poolSize / maxBurstWorkers or the call's timeout`
        })
      )
    case "WorkerStart":
      return Exit.fail(
        new WorkerStartError({
          ...fields,
          attempts: outcome.attempts,
          message: `${exportName} of plugin ${pluginId} never ran: ${workerStartAdvice(outcome)}`
        })
      )
    case "Crashed":
      return Exit.fail(
        new PluginTrapError({
          ...fields,
          message: `plugin ${pluginId} crashed its worker during ${exportName} (${outcome.message}); the worker was replaced`
        })
      )
    case "Closed":
      return Exit.fail(
        new PluginUnavailableError({
          ...fields,
          message: `plugin ${pluginId} was unloaded (or the engine is shutting down) before ${exportName} could run; load it again and retry`
        })
      )
    case "Failed": {
      const { kind, message } = outcome.failure
      switch (kind) {
        case "plugin":
          return Exit.fail(new PluginFailedError({ ...fields, message }))
        case "exitCode":
          return Exit.fail(
            new PluginFailedError({
              ...fields,
              message: `plugin ${pluginId} ${exportName} ${message}`,
              ...(outcome.failure.code === undefined ? {} : { exitCode: outcome.failure.code })
            })
          )
        case "notImplemented":
        case "missingExport":
          return Exit.fail(
            new PluginNotImplementedError({
              ...fields,
              message: `plugin ${pluginId} does not implement ${exportName}`
            })
          )
        case "memory":
          return Exit.fail(
            new PluginMemoryError({
              ...fields,
              message: `plugin ${pluginId} ran out of memory in ${exportName}: ${message}; raise its memory limit if this is legitimate`
            })
          )
        case "outputTooLarge":
          return Exit.fail(new PluginOutputError({ ...fields, reason: "TooLarge", message }))
        case "stack":
        case "trap":
        case "procExit":
        case "instantiate":
        case "link":
          return Exit.fail(
            new PluginTrapError({
              ...fields,
              message: `plugin ${pluginId} trapped in ${exportName}: ${message}`
            })
          )
      }
    }
  }
}

const make = (options: RuntimeOptions) =>
  Effect.gen(function* () {
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const pool = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          WorkerPool.make({
            size: options.poolSize,
            maxWorkersPerPlugin: options.maxWorkersPerPlugin,
            workerHeapMb: options.workerHeapMb,
            maxBurstWorkers: options.maxBurstWorkers,
            burstIdleMs: options.burstIdleMs,
            instanceIdleMs: options.instanceIdleMs,
            onStartFailure: (failure) =>
              runFork(
                Effect.logWarning(
                  `plugin worker died while starting; next try in ${failure.retryInMs} ms: ${workerStartAdvice(failure)}`
                )
              )
          }),
        catch: (cause) => cause
      }).pipe(
        // A missing worker script is the embedder's to fix (typed); anything else is a defect.
        Effect.catchAll((cause) =>
          cause instanceof WorkerScriptError
            ? Effect.fail(cause)
            : Effect.die(new Error(`could not start the plugin worker pool: ${String(cause)}`))
        )
      ),
      (pool) => Effect.promise(() => pool.close())
    )
    yield* Effect.logDebug(`plugin worker pool started with ${pool.size} workers`)

    // Compiled modules by SHA-256 and memory cap; least recently used dropped beyond the byte bound.
    const modules = new Map<string, { readonly compiled: CompiledModule; readonly bytes: number }>()
    let cachedBytes = 0
    let nextKey = 1

    const remember = (key: string, compiled: CompiledModule, bytes: number): void => {
      modules.set(key, { compiled, bytes })
      cachedBytes += bytes
      for (const [oldKey, entry] of modules) {
        if (cachedBytes <= options.moduleCacheBytes || oldKey === key) break
        modules.delete(oldKey)
        cachedBytes -= entry.bytes
      }
    }

    const compile = (pluginId: string, sha256: string, wasm: Uint8Array, memoryLimitBytes?: number) =>
      Effect.gen(function* () {
        const limit = memoryLimitBytes ?? options.memoryLimitBytes
        const maxPages = Math.max(1, Math.floor(limit / WASM_PAGE_BYTES))
        const key = `${sha256}:${maxPages}`
        const cached = modules.get(key)
        if (cached !== undefined) {
          modules.delete(key)
          modules.set(key, cached)
          return cached.compiled
        }
        const capped = yield* capMemory(wasm, maxPages).pipe(
          Effect.mapError(
            (error) =>
              new PluginLoadError({
                pluginId,
                reason: error.reason === "MemoryTooLarge" ? "Memory" : "Compile",
                message: `plugin ${pluginId}: ${error.message}`
              })
          )
        )
        const shape = yield* inspect(capped).pipe(
          Effect.mapError(
            (error) =>
              new PluginLoadError({
                pluginId,
                reason: "Compile",
                message: `plugin ${pluginId}: ${error.message}`
              })
          )
        )
        const module = yield* Effect.tryPromise({
          try: () => WebAssembly.compile(capped),
          catch: (cause) =>
            new PluginLoadError({
              pluginId,
              reason: "Compile",
              message: `plugin ${pluginId}: plugin.wasm is not a valid WebAssembly module (${cause instanceof Error ? cause.message : String(cause)})`
            })
        })
        const compiled: CompiledModule = {
          sha256,
          module,
          shape,
          memoryLimitBytes: maxPages * WASM_PAGE_BYTES
        }
        remember(key, compiled, wasm.byteLength)
        return compiled
      })

    const instantiate = (instance: InstantiateOptions) =>
      Effect.gen(function* () {
        const runtime = yield* Effect.runtime<never>()
        const runFork = Runtime.runFork(runtime)
        const runCallback = Runtime.runCallback(runtime)
        const pluginId = instance.pluginId
        const key = `${pluginId}#${nextKey++}`
        const timeoutMs = instance.timeoutMs ?? options.defaultTimeoutMs
        const logLevel = instance.logLevel ?? LogLevel.Info
        const workerFunctions = options.hostCallsInWorker ? (instance.workerFunctions ?? []) : []
        const localCounts = workerFunctions.length > 0 ? new LocalCounts(workerFunctions) : undefined
        const localCache = options.hostCallsInWorker ? instance.localCache : undefined
        // Only the cache's copies judge expiry in the worker, so only they need the engine's time.
        const engineClock = localCache === undefined ? undefined : new EngineClockView(makeEngineClock())
        // Host calls the worker answered count as host calls too, once their plugin call is over.
        const countLocal = Effect.suspend(() => {
          const drained = localCounts?.drain() ?? []
          return drained.length === 0
            ? Effect.void
            : Effect.forEach(drained, ([fn, calls]) => PluginMetrics.countHostCall(pluginId, fn, calls), {
                discard: true
              })
        })
        const spec: PluginSpec = {
          key,
          id: pluginId,
          module: instance.compiled.module,
          config: instance.config,
          userFunctions: instance.userFunctions,
          workerFunctions,
          localKvStore: options.hostCallsInWorker ? instance.localKvStore : undefined,
          localCache,
          engineClock: engineClock?.buffer,
          localCounts: localCounts?.buffer,
          envHttp: instance.envHttp,
          logLevel: toExtismLevel(logLevel),
          freshInstance: instance.freshInstance ?? false,
          mounts: instance.mounts ?? [],
          logBudget: makeLogBudget(resolveLogBudget(options.logBudget, instance.logBudget)),
          limits: {
            maxHostMemoryBytes: instance.compiled.memoryLimitBytes,
            maxOutputBytes: options.maxOutputBytes,
            maxVarBytes: options.maxVarBytes,
            maxLinearMemoryBytes: instance.compiled.memoryLimitBytes
          }
        }
        let open = true
        yield* Effect.acquireRelease(
          Effect.sync(() =>
            pool.register(key, {
              host: (fn, payload, reply, callFinished) => {
                let answered = false
                const answer = instance.host(fn, payload, {
                  callFinished: Effect.promise(() => callFinished)
                })
                const cancel = runCallback(
                  // The worker counts the plugin's call that needed an internal one.
                  isInternal(fn)
                    ? answer
                    : Effect.zipRight(PluginMetrics.countHostCall(pluginId, fn), answer),
                  {
                    onExit: (exit) => {
                      answered = true
                      reply(
                        Exit.isSuccess(exit)
                          ? exit.value
                          : new TextEncoder().encode(JSON.stringify({ error: `host function ${fn} failed` }))
                      )
                    }
                  }
                )
                // Nobody waits for the answer once the plugin call is over (e.g. it timed out).
                // Most handlers answer synchronously: no listener then, so an export making many
                // host calls does not pile one up per call on its finish signal.
                if (!answered) void callFinished.then(() => cancel())
              },
              log: (level, message) =>
                runFork(
                  Effect.logWithLevel(fromExtismLevel(level), message).pipe(
                    Effect.annotateLogs("plugin", pluginId)
                  )
                )
            })
          ),
          () =>
            Effect.sync(() => {
              open = false
              pool.unregister(key)
            })
        )

        const call = (exportName: string, input: Uint8Array, callOptions?: CallOptions) =>
          Effect.suspend(() => {
            if (!open) {
              return Effect.fail(
                new PluginUnavailableError({
                  pluginId,
                  export: exportName,
                  message: `plugin ${pluginId} is unloaded; load it again before calling ${exportName}`
                })
              )
            }
            if (input.byteLength > options.maxInputBytes) {
              return Effect.fail(
                new PluginInputTooLargeError({
                  pluginId,
                  export: exportName,
                  inputBytes: input.byteLength,
                  limitBytes: options.maxInputBytes,
                  message: `the input of ${input.byteLength} bytes for ${exportName} of plugin ${pluginId} exceeds the limit of ${options.maxInputBytes} bytes; send a smaller input, or raise the runtime option maxInputBytes`
                })
              )
            }
            const submit = Effect.async<Uint8Array | null, PluginCallError>((resume) => {
              const cancel = pool.submit(
                spec,
                exportName,
                input,
                callOptions?.timeoutMs ?? timeoutMs,
                (outcome) => resume(outcomeToExit(pluginId, exportName, outcome))
              )
              return Effect.sync(cancel)
            })
            return engineClock === undefined
              ? submit
              : Effect.clockWith((clock) => {
                  engineClock.publish(clock.unsafeCurrentTimeMillis())
                  return submit
                })
          }).pipe(Effect.ensuring(countLocal), PluginMetrics.trackCall(pluginId, exportName))

        // Run the module's start code once now, so a broken or looping start fails the load.
        const started = yield* Effect.async<CallOutcome>((resume) => {
          // A load waits longer for a worker than a call does: a plugin with a short call timeout
          // must still load while the pool is busy.
          const cancel = pool.submit(
            spec,
            null,
            new Uint8Array(0),
            timeoutMs,
            (outcome) => resume(Effect.succeed(outcome)),
            Math.max(timeoutMs, LOAD_QUEUE_TIMEOUT_MS)
          )
          // An interrupted load leaves the queue at once, not only when its scope unregisters it.
          return Effect.sync(cancel)
        })
        if (started._tag !== "Done") {
          open = false
          pool.unregister(key)
          const detail =
            started._tag === "Failed"
              ? started.failure.message
              : started._tag === "TimedOut"
                ? `its start code did not finish within ${timeoutMs} ms`
                : started._tag === "QueueTimedOut"
                  ? `no worker was free within ${started.timeoutMs} ms (${started.busy} of ${started.workers} busy); retry later, or raise the runtime options poolSize / maxBurstWorkers`
                  : started._tag === "WorkerStart"
                    ? workerStartAdvice(started)
                    : started._tag === "Crashed"
                      ? started.message
                      : "the engine is shutting down"
          return yield* new PluginLoadError({
            pluginId,
            reason: started._tag === "Failed" && started.failure.kind === "link" ? "Link" : "Start",
            message: `plugin ${pluginId} could not start: ${detail}`
          })
        }
        const exports = new Set(
          instance.compiled.shape.exports.filter((e) => e.kind === "function").map((e) => e.name)
        )
        return { pluginId, exports, call } satisfies RunningPlugin
      })

    return WasmRuntime.of({
      options,
      compile: Effect.fn("WasmRuntime.compile")(compile),
      instantiate: Effect.fn("WasmRuntime.instantiate")(instantiate),
      workerThreadIds: Effect.sync(() => pool.threadIds),
      poolStats: Effect.sync(() => pool.stats())
    })
  })

/** The execution layer with the given settings (missing ones take their defaults). */
export const layer = (options: Partial<RuntimeOptions> = {}): Layer.Layer<WasmRuntime, WorkerScriptError> => {
  const merged = { ...RuntimeOptions.defaults(), ...options }
  // The per-plugin cap and the burst follow the pool size actually used, unless set explicitly.
  const maxWorkersPerPlugin = options.maxWorkersPerPlugin ?? Math.max(1, merged.poolSize - 1)
  const maxBurstWorkers = options.maxBurstWorkers ?? 2 * merged.poolSize
  return Layer.scoped(WasmRuntime, make({ ...merged, maxWorkersPerPlugin, maxBurstWorkers }))
}

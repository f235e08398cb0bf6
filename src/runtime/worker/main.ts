/**
 * An execution worker: holds Wasm instances of many plugins and runs one export call at a time.
 * Host functions are synchronous stubs that block on the shared control block until the main
 * thread answers, so the guest sees an ordinary synchronous call.
 */
import { type MessagePort, parentPort, receiveMessageOnPort, workerData } from "node:worker_threads"
import { GuestLog, SUMMARY_INTERVAL_MS } from "./GuestLog.js"
import { Kernel, KernelAbort } from "./Kernel.js"
import { KvReader } from "./KvReader.js"
import { CacheCopies } from "./CacheCopies.js"
import { lookupFunction } from "../../host/cache/CacheAnswers.js"
import { countLocal } from "../abi/LocalCounts.js"
import { localHandler } from "./LocalHost.js"
import {
  type CallFailure,
  type CallRequest,
  Control,
  type MainToWorker,
  type PluginSpec,
  type WorkerToMain
} from "../abi/protocol.js"
import { makeWasi } from "./Wasi.js"

interface Live {
  readonly spec: PluginSpec
  readonly kernel: Kernel
  readonly instance: WebAssembly.Instance
  readonly flushWasi: () => void
  /** When its last call ended (ms, `performance.now()`), for the idle release. */
  usedAt: number
}

const { control, replyPort, instanceIdleMs } = workerData as {
  control: SharedArrayBuffer
  replyPort: MessagePort
  /** An instance unused this long is dropped (its spec stays); Infinity: never. */
  instanceIdleMs: number
}
const port = parentPort!
const header = new Int32Array(control, 0, Control.headerBytes / 4)
const inline = new Uint8Array(control, Control.headerBytes, Control.inlineBytes)
const startedAt = new Float64Array(control, Control.startedAtByte, 1)
const resultsOffset = Control.headerBytes + Control.inlineBytes
const results = new Uint8Array(control, resultsOffset, Control.resultsBytes)
const resultWords = new DataView(control, resultsOffset, Control.resultsBytes)
const encoder = new TextEncoder()

const specs = new Map<string, PluginSpec>()
/** One per loaded plugin (not per instance), so fresh instances share drop counts and summaries. */
const logs = new Map<string, GuestLog>()
const live = new Map<string, Live>()
/** This worker's read-only connections to KV store files, per loaded plugin; closed with its spec or instance. */
const kvReaders = new Map<string, KvReader>()
/** This worker's copies of plugins' cache entries, per loaded plugin; dropped with its spec or instance. */
const cacheCopies = new Map<string, CacheCopies>()
let currentCall = 0
/** Log lines were posted during the current call. */
let logged = false
/** Sleeps at least this long are reported to the pool; shorter ones are not worth a message. */
const SLEEP_NOTICE_MS = 10

const post = (message: WorkerToMain, transfer?: Array<ArrayBuffer>): void =>
  port.postMessage(message, transfer ?? [])

/** Sends a host call to the main thread and blocks until its reply is in. Never throws for service errors. */
const hostCall = (key: string, fn: string, payload: Uint8Array): Uint8Array => {
  // Lines written before the host call reach the main thread before it.
  logs.get(key)?.flush()
  Atomics.store(header, Control.state, Control.idle)
  post({ t: "host", callId: currentCall, key, fn, payload })
  // Loop: a notify left over from the previous reply may wake us before this reply is written.
  let state: number
  while ((state = Atomics.load(header, Control.state)) === Control.idle) {
    Atomics.wait(header, Control.state, Control.idle)
  }
  Atomics.store(header, Control.state, Control.idle)
  if (state === Control.inlineReply) {
    return inline.slice(0, Atomics.load(header, Control.length))
  }
  const message = receiveMessageOnPort(replyPort)
  return message === undefined
    ? encoder.encode('{"error":"host reply lost"}')
    : (message.message as Uint8Array)
}

const instantiate = (spec: PluginSpec): Live => {
  // Filled in once the instance exists; WASI reads it lazily.
  const memory: { current?: WebAssembly.Memory } = {}
  const log = logOf(spec)
  const kernel = new Kernel(spec.config, spec.limits, spec.logLevel, (level, line) => log.write(level, line))
  const env: Record<string, unknown> = kernel.imports()
  if (spec.envHttp) {
    // Extism's built-in HTTP functions, answered by the host's HTTP service.
    let lastStatus = 0
    let lastHeaders = ""
    env.http_request = (request: bigint, body: bigint) => {
      const payload = JSON.stringify({
        request: JSON.parse(kernel.readString(request) || "{}") as unknown,
        body: Buffer.from(kernel.read(body)).toString("base64")
      })
      const reply = JSON.parse(
        new TextDecoder().decode(hostCall(spec.key, "http_request", encoder.encode(payload)))
      ) as {
        status?: number
        headers?: Record<string, string>
        body?: string
        error?: string
      }
      lastStatus = reply.status ?? 0
      lastHeaders = JSON.stringify(reply.headers ?? {})
      if (reply.error !== undefined) {
        log.text(4, `http_request failed: ${reply.error}`)
        return 0n
      }
      return kernel.store(Buffer.from(reply.body ?? "", "base64"))
    }
    env.http_status_code = () => lastStatus
    env.http_headers = () => kernel.storeString(lastHeaders)
  }
  const user: Record<string, (handle: bigint) => bigint> = {}
  const sources = { config: spec.config, kv: kvReaderOf(spec), cache: cacheCopiesOf(spec) }
  const counts = spec.localCounts === undefined ? undefined : new Int32Array(spec.localCounts)
  for (const fn of spec.userFunctions) {
    const slot = spec.workerFunctions.indexOf(fn)
    const local = slot >= 0 ? localHandler(fn, sources) : undefined
    user[fn] =
      local === undefined
        ? (handle: bigint) => kernel.store(hostCall(spec.key, fn, kernel.read(handle)))
        : (handle: bigint) => {
            const payload = kernel.read(handle)
            const answer = local(payload)
            if (answer === undefined) return kernel.store(hostCall(spec.key, fn, payload))
            if (counts !== undefined) countLocal(counts, slot)
            return kernel.store(answer)
          }
  }
  const wasi = makeWasi({
    memory: () => memory.current,
    log: {
      write: (level, line, cut) => log.write(level, line, cut),
      text: (level, text) => log.text(level, text)
    },
    maxLineBytes: spec.logBudget.limits.maxLineBytes,
    mounts: spec.mounts,
    // Long sleeps only: the pool may lend another worker meanwhile (see WorkerPool's burst).
    onSleep: (ms) => {
      if (ms >= SLEEP_NOTICE_MS) post({ t: "sleep", callId: currentCall, ms })
    }
  })
  const instance = new WebAssembly.Instance(spec.module, {
    "extism:host/env": env as WebAssembly.ModuleImports,
    "extism:host/user": user,
    wasi_snapshot_preview1: wasi.imports as WebAssembly.ModuleImports
  })
  const exported = instance.exports.memory
  if (exported instanceof WebAssembly.Memory) memory.current = exported
  kernel.begin(new Uint8Array(0))
  try {
    if (typeof instance.exports._initialize === "function") instance.exports._initialize()
    else if (typeof instance.exports._start === "function")
      runCommandStart(instance.exports._start as () => void)
    if (typeof instance.exports.hs_init === "function") instance.exports.hs_init()
  } finally {
    kernel.end()
  }
  return { spec, kernel, instance, flushWasi: wasi.flush, usedAt: performance.now() }
}

/** The plugin's KV reader on this worker; its connection opens on the first read. */
const kvReaderOf = (spec: PluginSpec): KvReader | undefined => {
  if (spec.localKvStore === undefined) return undefined
  let reader = kvReaders.get(spec.key)
  if (reader === undefined) {
    reader = new KvReader(spec.localKvStore.filename, spec.localKvStore.driver)
    kvReaders.set(spec.key, reader)
  }
  return reader
}

/** Closes the plugin's KV connection here (its file descriptors with it); the next read reopens it. */
const closeKvReader = (key: string): void => {
  kvReaders.get(key)?.close()
  kvReaders.delete(key)
}

/** The plugin's cache copies on this worker; misses ask the main thread. */
const cacheCopiesOf = (spec: PluginSpec): CacheCopies | undefined => {
  if (spec.localCache === undefined || spec.engineClock === undefined) return undefined
  let copies = cacheCopies.get(spec.key)
  if (copies === undefined) {
    copies = new CacheCopies(spec.localCache, spec.engineClock, (payload) =>
      hostCall(spec.key, lookupFunction, payload)
    )
    cacheCopies.set(spec.key, copies)
  }
  return copies
}

/** Everything this worker holds for a plugin besides its spec: store connection and cache copies. */
const releaseLocal = (key: string): void => {
  closeKvReader(key)
  cacheCopies.delete(key)
}

const logOf = (spec: PluginSpec): GuestLog => {
  let log = logs.get(spec.key)
  if (log === undefined) {
    log = new GuestLog(spec.id, spec.logLevel, spec.logBudget, (lines) => {
      logged = true
      post({ t: "log", key: spec.key, lines })
    })
    logs.set(spec.key, log)
  }
  return log
}

const runCommandStart = (start: () => void): void => {
  try {
    start()
  } catch (error) {
    // A command module's `_start` commonly ends with proc_exit(0); that is a normal start.
    if (!(error instanceof KernelAbort && error.kind === "procExit" && error.code === 0)) throw error
  }
}

const classify = (error: unknown, instance: Live | undefined): CallFailure => {
  if (error instanceof KernelAbort) {
    return error.code === undefined
      ? { kind: error.kind, message: error.message }
      : { kind: error.kind, message: error.message, code: error.code }
  }
  if (error instanceof RangeError && /call stack/i.test(error.message)) {
    return { kind: "stack", message: "the plugin exhausted its stack (runaway recursion)" }
  }
  if (error instanceof WebAssembly.LinkError) return { kind: "link", message: error.message }
  if (error instanceof WebAssembly.RuntimeError) {
    const memory = instance?.instance.exports.memory
    const cap = instance?.spec.limits.maxLinearMemoryBytes ?? Infinity
    if (memory instanceof WebAssembly.Memory && cap - memory.buffer.byteLength < 2 * 1024 * 1024) {
      return {
        kind: "memory",
        message: `the plugin trapped (${error.message}) after reaching its memory limit of ${cap} bytes`
      }
    }
    return { kind: "trap", message: error.message }
  }
  if (error instanceof Error) return { kind: "trap", message: `${error.name}: ${error.message}` }
  return { kind: "trap", message: String(error) }
}

const runCall = (message: CallRequest): Extract<WorkerToMain, { t: "done" | "failed" }> => {
  const callId = message.callId
  const spec = message.spec ?? specs.get(message.key)
  if (spec === undefined) {
    return {
      t: "failed",
      callId,
      failure: { kind: "instantiate", message: `plugin ${message.key} is not loaded here` }
    }
  }
  specs.set(spec.key, spec)
  let entry = spec.freshInstance ? undefined : live.get(spec.key)
  if (entry === undefined) {
    try {
      entry = instantiate(spec)
    } catch (error) {
      const failure = classify(error, undefined)
      return {
        t: "failed",
        callId,
        failure:
          failure.kind === "link"
            ? failure
            : { ...failure, kind: failure.kind === "trap" ? "instantiate" : failure.kind }
      }
    }
    if (!spec.freshInstance) live.set(spec.key, entry)
  }
  if (message.fn === null) return { t: "done", callId, output: null }
  const fn = entry.instance.exports[message.fn]
  if (typeof fn !== "function") {
    return {
      t: "failed",
      callId,
      failure: { kind: "missingExport", message: `the plugin has no export ${message.fn}` }
    }
  }
  const kernel = entry.kernel
  kernel.begin(message.input)
  try {
    const rc = Number((fn as () => number | bigint)())
    // As in Extism's Go SDK (which Navidrome uses), the error is read only when rc is non-zero.
    const error = rc === 0 ? null : kernel.error()
    if (error !== null) return { t: "failed", callId, failure: { kind: "plugin", message: error } }
    if (rc === -2)
      return { t: "failed", callId, failure: { kind: "notImplemented", message: "not implemented" } }
    if (rc !== 0) {
      return {
        t: "failed",
        callId,
        failure: { kind: "exitCode", message: `exited with code ${rc}`, code: rc }
      }
    }
    return { t: "done", callId, output: kernel.output() }
  } catch (error) {
    // After a trap the guest's own state may be half-updated: never reuse that instance.
    live.delete(spec.key)
    const failure = classify(error, entry)
    // A guest that aborts (e.g. AssemblyScript's abort) often sets its reason before trapping.
    const reason = kernel.error()
    return {
      t: "failed",
      callId,
      failure:
        reason !== null && failure.kind === "trap"
          ? { ...failure, message: `${reason} (${failure.message})` }
          : failure
    }
  } finally {
    entry.flushWasi()
    kernel.end()
    entry.usedAt = performance.now()
  }
}

/**
 * Memory grows with use, not with pool size × plugins: an instance (its linear memory, its kernel)
 * that served no call for `instanceIdleMs` is dropped; the next call on this worker instantiates
 * the plugin again from the spec it keeps (docs/decisions/0037-memory-grows-with-use.md).
 */
const releaseIdle = (): void => {
  const now = performance.now()
  for (const [key, entry] of live) {
    if (now - entry.usedAt >= instanceIdleMs) {
      live.delete(key)
      releaseLocal(key)
    }
  }
}
if (Number.isFinite(instanceIdleMs) && instanceIdleMs > 0) {
  // The sweep must not keep the worker alive on its own.
  setInterval(releaseIdle, Math.max(50, Math.min(instanceIdleMs / 2, 30_000))).unref()
}

/** Bytes of the results area used by the current batch. */
let resultBytes = 0

/**
 * Appends a result to the shared results area; false when it does not fit (it then goes as a
 * message). Entries survive the worker, so a later call that loops or crashes loses none of them.
 */
const writeResult = (
  index: number,
  reply: Extract<WorkerToMain, { t: "done" | "failed" }>,
  flags: number
): boolean => {
  const body =
    reply.t === "failed" ? encoder.encode(JSON.stringify(reply.failure)) : (reply.output ?? new Uint8Array(0))
  const size = 12 + ((body.byteLength + 3) & ~3)
  if (resultBytes + size > Control.resultsBytes) return false
  const kind =
    reply.t === "failed" ? Control.failed : reply.output === null ? Control.doneEmpty : Control.doneOutput
  resultWords.setInt32(resultBytes, index, true)
  resultWords.setInt32(resultBytes + 4, kind | flags, true)
  resultWords.setInt32(resultBytes + 8, body.byteLength, true)
  results.set(body, resultBytes + 12)
  resultBytes += size
  Atomics.add(header, Control.resultCount, 1)
  return true
}

const runBatch = (batch: Extract<MainToWorker, { t: "batch" }>): void => {
  const count = batch.callIds.length
  // The pool reset the claim, the count and `current` before posting the batch.
  resultBytes = 0
  /** When the oldest result not yet announced was written (0: none). */
  let pendingSince = 0
  let ran = 0
  for (let index = 0; index < count; index++) {
    // Later calls start only if the pool has not taken them back meanwhile.
    if (index > 0 && Atomics.compareExchange(header, Control.claim, index, index + 1) !== index) break
    if (pendingSince !== 0 && performance.now() - pendingSince >= Control.noticeMs) {
      post({ t: "results" })
      pendingSince = 0
    }
    const call: CallRequest = {
      callId: batch.callIds[index]!,
      key: batch.key,
      fn: batch.fns[index]!,
      input: batch.inputs.subarray(index === 0 ? 0 : batch.ends[index - 1], batch.ends[index]),
      ...(index === 0 && batch.spec !== undefined ? { spec: batch.spec } : {})
    }
    currentCall = call.callId
    startedAt[0] = Date.now()
    Atomics.store(header, Control.current, index)
    logged = false
    const reply = runCall(call)
    // Every line of the call (and the drop summary, when due) goes before its result.
    logs.get(call.key)?.endCall()
    if (writeResult(index, reply, logged ? Control.logged : 0)) {
      if (logged) {
        post({ t: "results" })
        pendingSince = 0
      } else if (pendingSince === 0) pendingSince = performance.now()
    } else if (reply.t === "done" && reply.output !== null) {
      post(reply, [reply.output.buffer as ArrayBuffer])
    } else {
      post(reply)
    }
    Atomics.store(header, Control.current, -1)
    ran++
  }
  post({ t: "batchEnd", ran })
  // A batch is of one plugin: only its log can have new drops.
  if (logs.get(batch.key)?.dropsPending === true) reportDropsLater()
}

let dropsTimer: ReturnType<typeof setTimeout> | undefined

/**
 * Dropped output is summarised at the end of a call once its interval has passed; a plugin whose
 * next calls run on other workers would leave this worker's count unreported, so an idle worker
 * reports it itself when it is due.
 */
const reportDropsLater = (): void => {
  if (dropsTimer !== undefined) return
  dropsTimer = setTimeout(() => {
    dropsTimer = undefined
    let pending = false
    for (const log of logs.values()) {
      if (log.dropsPending) log.endCall()
      pending ||= log.dropsPending
    }
    // Drops whose summary was not due yet are reported at the next round.
    if (pending) reportDropsLater()
  }, SUMMARY_INTERVAL_MS)
  // The report must not keep the worker alive on its own.
  dropsTimer.unref()
}

port.on("message", (message: MainToWorker) => {
  if (message.t === "drop") {
    specs.delete(message.key)
    live.delete(message.key)
    releaseLocal(message.key)
    logs.get(message.key)?.endCall()
    logs.delete(message.key)
    return
  }
  runBatch(message)
})

post({ t: "ready" })

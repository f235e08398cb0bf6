/**
 * The pool of execution workers. This is the engine's hot path, so it is a plain class driven by
 * worker messages; `WasmRuntime` wraps it in Effect (scope, typed errors, logging).
 *
 * Rules it keeps (why: docs/decisions/0013-fair-worker-pool.md):
 * - one batch of calls of one plugin per worker at a time, run in order; the pool takes back the
 *   calls not started yet when the running one blocks, another worker is idle, or a caller gives
 *   up (docs/decisions/0043-dispatch-in-batches.md);
 * - a call that outlives its timeout ends its worker, and only that worker, which is replaced;
 * - a plugin never occupies every worker, so one looping plugin cannot starve the others;
 * - fair queueing: each plugin has its own queue, and a free worker goes to the waiting plugin that
 *   used the least worker time lately, not to the oldest call;
 * - burst: a plugin with nothing running gets an extra worker (up to `maxBurstWorkers`) when every
 *   worker is taken but fewer than `size` of them compute (the rest sleep or wait on a host call);
 *   extras only ever run calls of plugins that had nothing running; idle extras are reclaimed;
 * - a queued call fails at its own deadline; workers that die while starting are retried with
 *   exponential back-off;
 * - host-call replies are written only while the worker that asked is still running that call,
 *   so a late reply can never reach a later call or a replacement worker;
 * - one worker's host calls take at most `HOST_CALL_MS_PER_TURN` of the main thread per event-loop
 *   turn; the next waits for the following turn, so a plugin making host calls back to back cannot
 *   hold the main thread (docs/decisions/0048-host-calls-per-turn.md).
 */
import { MessageChannel, type MessagePort, Worker } from "node:worker_threads"
import {
  CONTROL_BUFFER_BYTES,
  Control,
  type CallFailure,
  type MainToWorker,
  type PluginSpec,
  type WorkerToMain
} from "../abi/protocol.js"
import { loadWorkerSource } from "./WorkerScript.js"

export type CallOutcome =
  | { readonly _tag: "Done"; readonly output: Uint8Array | null }
  | { readonly _tag: "Failed"; readonly failure: CallFailure }
  | { readonly _tag: "TimedOut"; readonly timeoutMs: number }
  /** Waited its whole timeout in the queue and never started. */
  | {
      readonly _tag: "QueueTimedOut"
      readonly timeoutMs: number
      readonly workers: number
      readonly starting: number
      readonly busy: number
      readonly blocked: number
    }
  /** Waited its whole timeout while no worker could be started. */
  | { readonly _tag: "WorkerStart"; readonly message: string; readonly attempts: number }
  | { readonly _tag: "Crashed"; readonly message: string }
  | { readonly _tag: "Closed" }

/** Answers one host call; must call `reply` exactly once and never throw. */
export type HostHandler = (
  fn: string,
  payload: Uint8Array,
  reply: (response: Uint8Array) => void,
  /** Resolves once the plugin call that made this host call has finished, however it ended. */
  callFinished: Promise<void>
) => void

export interface PluginRegistration {
  readonly host: HostHandler
  readonly log: (level: number, message: string) => void
}

export interface PoolOptions {
  readonly size: number
  /** How many workers one plugin may occupy at once. */
  readonly maxWorkersPerPlugin: number
  readonly workerHeapMb: number
  /** Extra workers beyond `size`, lent while the busy ones sleep or wait on host calls. Default 0. */
  readonly maxBurstWorkers?: number | undefined
  /** How long an extra worker may stay idle before it is stopped. Default 10 s. */
  readonly burstIdleMs?: number | undefined
  /** How long a plugin instance may stay unused in a worker before it is dropped. Default: never. */
  readonly instanceIdleMs?: number | undefined
  /** Told every time a worker dies before it is ready. */
  readonly onStartFailure?: ((failure: StartFailure) => void) | undefined
}

/** A worker that died while starting, and when the pool tries again. */
export interface StartFailure {
  readonly message: string
  /** Failed starts in a row, across the pool. */
  readonly attempts: number
  readonly retryInMs: number
}

/** What the pool is doing right now (for status, and for tests that wait on saturation). */
export interface PoolStats {
  /** Worker threads alive or starting, extras included. */
  readonly workers: number
  readonly burstWorkers: number
  /** Workers not ready yet (starting, or replacing one that timed out or crashed). */
  readonly starting: number
  readonly busy: number
  /** Busy workers that sleep in `poll_oneoff` or wait for a host-call reply. */
  readonly blocked: number
  readonly queued: number
  /** Host calls so far whose answer waited for the next event-loop turn (`HOST_CALL_MS_PER_TURN`). */
  readonly hostCallsDeferred: number
}

interface Job {
  readonly callId: number
  readonly spec: PluginSpec
  readonly fn: string | null
  readonly input: Uint8Array
  readonly timeoutMs: number
  /** How long it may wait for a worker. */
  readonly queueTimeoutMs: number
  readonly resolve: (outcome: CallOutcome) => void
  readonly queuedAt: number
  settled: boolean
  /** Fails the call if it is still queued at its deadline. */
  deadline: ReturnType<typeof setTimeout> | undefined
  /** Created on first use by a host call, resolved when the job settles. */
  finished?: { readonly promise: Promise<void>; readonly resolve: () => void }
  /** The worker whose batch holds it (started or not), and its place in that batch. */
  slot: Slot | undefined
  index: number
}

interface Slot {
  readonly index: number
  /** An extra worker beyond the pool size, stopped when idle. */
  readonly burst: boolean
  readonly worker: Worker
  readonly header: Int32Array
  readonly inline: Uint8Array
  readonly startedAt: Float64Array
  readonly results: Uint8Array
  readonly resultWords: DataView
  readonly replyPort: MessagePort
  readonly known: Set<string>
  /** The calls handed to it, all of one plugin; those past the claim are taken back on revoke. */
  batch: Array<Job> | undefined
  batchStartedAt: number
  /** Results of the batch read so far from the results area, and where the next one begins. */
  readCount: number
  readOffset: number
  timer: ReturnType<typeof setTimeout> | undefined
  idleTimer: ReturnType<typeof setTimeout> | undefined
  ready: boolean
  /** Exited, failed to start, replaced or reclaimed: its events are ignored. */
  gone: boolean
  /** The running call waits for a host-call reply. */
  inHostCall: boolean
  /** The running call sleeps in `poll_oneoff` until then (ms since epoch). */
  sleepsUntil: number
  /** The event-loop turn of its last host calls, and the main thread's time (ms) they took in it. */
  hostTurn: number
  hostMsInTurn: number
}

/** Recent worker time of one plugin, halving every `USAGE_HALF_LIFE_MS`. */
interface Usage {
  ms: number
  at: number
}

/** How long a plugin that timed out is held to a single worker. */
const PENALTY_MS = 60_000
/** Worker time older than this counts half as much when choosing whose call runs next. */
const USAGE_HALF_LIFE_MS = 10_000
/** Back-off after a worker dies while starting: doubles from the first value up to the second. */
export const START_RETRY_MS = { first: 100, max: 10_000 } as const
const DEFAULT_BURST_IDLE_MS = 10_000
/** Most calls handed to a worker in one message. */
export const MAX_BATCH = 16
/**
 * A call that has run this long gives up the calls queued behind it in its batch, and the results
 * of the batch are collected at least this often (ms).
 */
const BATCH_TICK_MS = 5
/**
 * Main-thread time (ms) one worker's host calls may take in one event-loop turn, counted over the
 * handlers' synchronous part; the call that crosses it ends the worker's share of the turn. Node
 * delivers up to 1,000 messages of a port in one turn, and a worker asks again as soon as it has
 * its answer, so without this one plugin making host calls back to back held the main thread for
 * tens of milliseconds.
 */
export const HOST_CALL_MS_PER_TURN = 1
const decoder = new TextDecoder()

/** Batch inputs at least this large are transferred to the worker; smaller ones are copied. */
const TRANSFER_MIN_BYTES = 64 * 1024

export class WorkerPool {
  /** Indexes below `size` are the pool proper; above, extras lent in bursts (holes when reclaimed). */
  private readonly slots: Array<Slot | undefined> = []
  /** One FIFO queue per plugin key, present only while non-empty. */
  private readonly queues = new Map<string, Array<Job>>()
  private readonly registrations = new Map<string, PluginRegistration>()
  private readonly running = new Map<string, number>()
  private readonly usage = new Map<string, Usage>()
  /** Plugins held to one worker until the given time (ms), after a timeout. */
  private readonly penalised = new Map<string, number>()
  /** Back-off and pump timers, cleared on close. */
  private readonly timers = new Set<ReturnType<typeof setTimeout>>()
  private pumpTimer: ReturnType<typeof setTimeout> | undefined
  /** A pump is due once the current event is handled (calls taken back wait for it). */
  private pumpQueued = false
  private queued = 0
  /** Workers that died before they were ready, in a row; reset by any worker becoming ready. */
  private startFailures = 0
  private lastStartError: string | undefined
  /** No extra worker is started before this time (ms) while starts keep failing. */
  private retryAt = 0
  private nextCallId = 1
  private closed = false
  /** Event-loop turns as the pool counts them: advanced by an immediate armed on first use in a turn. */
  private turn = 0
  private turnArmed = false
  private hostCallsDeferred = 0

  private constructor(
    private readonly source: string,
    private readonly options: PoolOptions
  ) {}

  static async make(options: PoolOptions): Promise<WorkerPool> {
    const pool = new WorkerPool(await loadWorkerSource(), options)
    // Each resolves once its worker is ready or has failed its first start (then it is retried).
    await Promise.all(Array.from({ length: options.size }, (_, index) => pool.spawn(index, false)))
    return pool
  }

  get size(): number {
    return this.live().length
  }

  /** Live worker threads (for leak checks and status). */
  get threadIds(): ReadonlyArray<number> {
    return this.live().map((slot) => slot.worker.threadId)
  }

  stats(): PoolStats {
    const now = Date.now()
    const live = this.live()
    const busy = live.filter((slot) => slot.batch !== undefined)
    return {
      workers: live.length,
      burstWorkers: live.filter((slot) => slot.burst).length,
      starting: live.filter((slot) => !slot.ready).length,
      busy: busy.length,
      blocked: busy.filter((slot) => isBlocked(slot, now)).length,
      queued: this.queued,
      hostCallsDeferred: this.hostCallsDeferred
    }
  }

  register(key: string, registration: PluginRegistration): void {
    this.registrations.set(key, registration)
  }

  /**
   * Forgets a plugin: its instances are dropped from every worker; its queued calls, and calls
   * still running (their worker is replaced), fail as closed.
   */
  unregister(key: string): void {
    this.registrations.delete(key)
    this.penalised.delete(key)
    // Nobody waits for such a call (the unload interrupted its caller): left alone it would hold
    // its worker until its own timeout.
    for (const slot of this.live()) {
      const batch = slot.batch
      if (batch?.[0]?.spec.key !== key) continue
      // Results already written still count; calls not started are closed where they wait.
      this.harvest(slot)
      for (const job of this.revoke(slot)) this.settle(job, { _tag: "Closed" })
      // A batch whose calls are all answered is only waiting for its closing message: the worker
      // stays. One still running a call is ended, or it would hold the worker until its timeout.
      const running = (slot.batch ?? []).filter((job) => !job.settled)
      if (running.length === 0) continue
      for (const job of running) this.settle(job, { _tag: "Closed" })
      this.finish(slot)
      this.retire(slot)
    }
    this.usage.delete(key)
    const queue = this.queues.get(key)
    if (queue !== undefined) {
      this.queues.delete(key)
      this.queued -= queue.length
      for (const job of queue) this.settle(job, { _tag: "Closed" })
    }
    for (const slot of this.live()) {
      if (slot.known.delete(key)) this.send(slot, { t: "drop", key })
    }
  }

  call(spec: PluginSpec, fn: string | null, input: Uint8Array, timeoutMs: number): Promise<CallOutcome> {
    return new Promise((resolve) => this.submit(spec, fn, input, timeoutMs, resolve))
  }

  /** Callback form of `call`, used by the Effect wrapper to avoid a promise per call. */
  submit(
    spec: PluginSpec,
    fn: string | null,
    input: Uint8Array,
    timeoutMs: number,
    resolve: (outcome: CallOutcome) => void,
    /** How long the call may wait for a worker (default: `timeoutMs`). */
    queueTimeoutMs: number = timeoutMs
  ): () => void {
    const job: Job = {
      callId: this.nextCallId++,
      spec,
      fn,
      input,
      timeoutMs,
      queueTimeoutMs,
      resolve,
      queuedAt: Date.now(),
      settled: false,
      deadline: undefined,
      slot: undefined,
      index: 0
    }
    if (this.closed || !this.registrations.has(spec.key)) {
      resolve({ _tag: "Closed" })
      return () => undefined
    }
    const queue = this.queues.get(spec.key)
    if (queue === undefined) this.queues.set(spec.key, [job])
    else queue.push(job)
    this.queued++
    // Dispatched at the end of the current run of code: the callers a batch's results resumed
    // submit their next calls together, and those leave as one batch, not a batch of one followed
    // by the rest.
    this.submitted.push(job)
    this.pumpSoon()
    // Cancelling only removes a call not started yet (queued, or waiting in a batch): a running
    // call cannot be stopped without ending its worker.
    return () => {
      if (job.settled) return
      if (job.slot !== undefined) this.takeBack(job.slot)
      if (this.dequeue(job)) {
        clearTimeout(job.deadline)
        job.settled = true
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    clearTimeout(this.pumpTimer)
    for (const queue of this.queues.values()) {
      for (const job of queue) this.settle(job, { _tag: "Closed" })
    }
    this.queues.clear()
    this.queued = 0
    await Promise.all(
      this.slots.map((slot) => {
        if (slot === undefined) return undefined
        clearTimeout(slot.timer)
        clearTimeout(slot.idleTimer)
        for (const job of slot.batch ?? []) this.settle(job, { _tag: "Closed" })
        slot.gone = true
        slot.replyPort.close()
        return slot.worker.terminate()
      })
    )
  }

  private live(): Array<Slot> {
    return this.slots.filter((slot): slot is Slot => slot !== undefined && !slot.gone)
  }

  private spawn(index: number, burst: boolean): Promise<void> {
    const control = new SharedArrayBuffer(CONTROL_BUFFER_BYTES)
    const { port1, port2 } = new MessageChannel()
    const worker = new Worker(this.source, {
      eval: true,
      name: `ndp-exec-${index}`,
      workerData: { control, replyPort: port2, instanceIdleMs: this.options.instanceIdleMs ?? Infinity },
      transferList: [port2],
      resourceLimits: { maxOldGenerationSizeMb: this.options.workerHeapMb, stackSizeMb: 4 },
      stdout: false,
      stderr: false
    })
    const slot: Slot = {
      index,
      burst,
      worker,
      header: new Int32Array(control, 0, Control.headerBytes / 4),
      inline: new Uint8Array(control, Control.headerBytes, Control.inlineBytes),
      startedAt: new Float64Array(control, Control.startedAtByte, 1),
      results: new Uint8Array(control, Control.headerBytes + Control.inlineBytes, Control.resultsBytes),
      resultWords: new DataView(control, Control.headerBytes + Control.inlineBytes, Control.resultsBytes),
      replyPort: port1,
      known: new Set(),
      batch: undefined,
      batchStartedAt: 0,
      readCount: 0,
      readOffset: 0,
      timer: undefined,
      idleTimer: undefined,
      ready: false,
      gone: false,
      inHostCall: false,
      sleepsUntil: 0,
      hostTurn: -1,
      hostMsInTurn: 0
    }
    this.slots[index] = slot
    return new Promise((resolve) => {
      worker.on("message", (message: WorkerToMain) => {
        if (message.t !== "ready") return this.onMessage(slot, message)
        if (!this.isCurrent(slot)) return
        slot.ready = true
        this.startFailures = 0
        this.lastStartError = undefined
        this.retryAt = 0
        resolve()
        if (burst) this.idleFor(slot)
        this.pump()
      })
      worker.on("error", (error) => {
        const code = (error as { code?: unknown }).code
        this.onExit(slot, typeof code === "string" ? `${code}: ${error.message}` : error.message)
        resolve()
      })
      worker.on("exit", (code) => {
        this.onExit(slot, `worker exited with code ${code}`)
        resolve()
      })
    })
  }

  /** Events of a replaced, reclaimed or failed worker are ignored: its slot has moved on. */
  private isCurrent(slot: Slot): boolean {
    return !slot.gone && this.slots[slot.index] === slot
  }

  private onMessage(slot: Slot, message: WorkerToMain): void {
    if (!this.isCurrent(slot)) return
    switch (message.t) {
      case "log": {
        const registration = this.registrations.get(message.key)
        for (const [level, line] of message.lines) registration?.log(level, line)
        return
      }
      case "sleep": {
        const job = this.runningJob(slot, message.callId)
        if (job === undefined) return
        slot.sleepsUntil = Date.now() + message.ms
        // Neither the results nor the calls behind a sleeping call should wait for it.
        this.harvest(slot)
        this.takeBack(slot)
        // A waiting plugin may now get an extra worker.
        if (this.queued > 0) this.pump()
        return
      }
      case "host": {
        const job = this.runningJob(slot, message.callId)
        if (job === undefined) return
        slot.inHostCall = true
        this.harvest(slot)
        this.takeBack(slot)
        this.admitHost(slot, job, message.key, message.fn, message.payload, false)
        if (slot.inHostCall && this.queued > 0) this.pump()
        return
      }
      case "done":
      case "failed": {
        const job = this.runningJob(slot, message.callId)
        if (job === undefined) return
        this.settle(
          job,
          message.t === "done"
            ? { _tag: "Done", output: message.output }
            : { _tag: "Failed", failure: message.failure }
        )
        return
      }
      case "results": {
        this.harvest(slot)
        return
      }
      case "batchEnd": {
        if (slot.batch === undefined) return
        this.harvest(slot)
        this.endBatch(slot, "the worker ended the batch without the call's result")
        this.pump()
        return
      }
      case "ready":
        return
    }
  }

  /**
   * Answers a host call now if its worker's host calls have main-thread time left in this turn,
   * else in the next turn (the worker waits blocked; other workers' messages, timers and sockets
   * go first).
   */
  private admitHost(
    slot: Slot,
    job: Job,
    key: string,
    fn: string,
    payload: Uint8Array,
    deferred: boolean
  ): void {
    if (this.closed) return
    const turn = this.currentTurn()
    if (slot.hostTurn !== turn) {
      slot.hostTurn = turn
      slot.hostMsInTurn = 0
    }
    if (slot.hostMsInTurn >= HOST_CALL_MS_PER_TURN) {
      if (!deferred) this.hostCallsDeferred++
      setImmediate(() => this.admitHost(slot, job, key, fn, payload, true))
      return
    }
    const began = performance.now()
    this.answerHost(slot, job, key, fn, payload)
    slot.hostMsInTurn += performance.now() - began
  }

  /** Hands a host call to its plugin's handler, unless its call is over or its worker gone. */
  private answerHost(slot: Slot, job: Job, key: string, fn: string, payload: Uint8Array): void {
    const reply = (response: Uint8Array): void => {
      // Only the call that asked may receive the answer (generation check).
      if (!this.isCurrent(slot) || job.settled || job.slot !== slot) return
      this.writeReply(slot, response)
    }
    if (!this.isCurrent(slot) || job.settled || job.slot !== slot) return
    const registration = this.registrations.get(key)
    if (registration === undefined) reply(new TextEncoder().encode('{"error":"plugin is unloaded"}'))
    else registration.host(fn, payload, reply, this.finishedOf(job))
  }

  /** The pool's count of event-loop turns; the first use in a turn arms the immediate ending it. */
  private currentTurn(): number {
    if (!this.turnArmed) {
      this.turnArmed = true
      setImmediate(() => {
        this.turnArmed = false
        this.turn++
      })
    }
    return this.turn
  }

  /** A call of the slot's batch not settled yet, by id. */
  private runningJob(slot: Slot, callId: number): Job | undefined {
    const job = slot.batch?.find((candidate) => candidate.callId === callId)
    return job === undefined || job.settled ? undefined : job
  }

  /**
   * Settles the calls whose results the worker wrote to the results area since the last read. On
   * a tick (`beforeLogged`) it stops at a call that logged: its lines may still be on their way,
   * and the message announcing its result comes after them.
   */
  private harvest(slot: Slot, beforeLogged = false): void {
    const count = Atomics.load(slot.header, Control.resultCount)
    while (slot.readCount < count) {
      const at = slot.readOffset
      const index = slot.resultWords.getInt32(at, true)
      const flagged = slot.resultWords.getInt32(at + 4, true)
      if (beforeLogged && (flagged & Control.logged) !== 0) return
      const kind = flagged & ~Control.logged
      const length = slot.resultWords.getInt32(at + 8, true)
      const body = slot.results.slice(at + 12, at + 12 + length)
      slot.readOffset += 12 + ((length + 3) & ~3)
      slot.readCount++
      const job = slot.batch?.[index]
      if (job === undefined || job.settled) continue
      this.settle(
        job,
        kind === Control.failed
          ? { _tag: "Failed", failure: JSON.parse(decoder.decode(body)) as CallFailure }
          : { _tag: "Done", output: kind === Control.doneEmpty ? null : body }
      )
    }
  }

  /**
   * Takes back the calls of the slot's batch the worker has not started, and returns them. After
   * the swap the worker cannot start them any more: it starts a call only by advancing the claim.
   */
  private revoke(slot: Slot): Array<Job> {
    const batch = slot.batch
    if (batch === undefined) return []
    for (;;) {
      const next = Atomics.load(slot.header, Control.claim)
      if (next >= batch.length) return []
      if (Atomics.compareExchange(slot.header, Control.claim, next, Control.revoked) === next) {
        slot.batch = batch.slice(0, next)
        const back = batch.slice(next).filter((job) => !job.settled)
        for (const job of back) job.slot = undefined
        return back
      }
    }
  }

  /** Puts calls taken back from a batch at the head of their queue, in their order. */
  private requeue(jobs: ReadonlyArray<Job>): void {
    for (let at = jobs.length - 1; at >= 0; at--) {
      const job = jobs[at]!
      const queue = this.queues.get(job.spec.key)
      if (queue === undefined) this.queues.set(job.spec.key, [job])
      else queue.unshift(job)
      this.queued++
    }
  }

  /** Takes back the slot's calls not started yet and offers them to the other workers. */
  private takeBack(slot: Slot): void {
    const back = this.revoke(slot)
    if (back.length === 0) return
    this.requeue(back)
    this.pumpSoon()
  }

  /**
   * The slot's batch is over (its worker said so, or is being ended): calls it started and did not
   * answer fail with `lost`, the ones it never started go back to their queues.
   */
  private endBatch(slot: Slot, lost: string): void {
    const back = this.revoke(slot)
    for (const job of slot.batch ?? []) this.settle(job, { _tag: "Crashed", message: lost })
    this.finish(slot)
    this.requeue(back)
  }

  private writeReply(slot: Slot, response: Uint8Array): void {
    slot.inHostCall = false
    if (response.byteLength <= slot.inline.byteLength) {
      slot.inline.set(response)
      Atomics.store(slot.header, Control.length, response.byteLength)
      Atomics.store(slot.header, Control.state, Control.inlineReply)
    } else {
      slot.replyPort.postMessage(response)
      Atomics.store(slot.header, Control.state, Control.portReply)
    }
    Atomics.notify(slot.header, Control.state)
  }

  private onExit(slot: Slot, message: string): void {
    if (!this.isCurrent(slot) || this.closed) return
    if (!slot.ready) return this.onStartFailure(slot, message)
    // Results the worker wrote before it died still count.
    this.harvest(slot)
    this.endBatch(slot, message)
    this.retire(slot)
  }

  /**
   * A worker died before it was ready (e.g. its heap limit is too small to load the worker code).
   * Starting another one at once would loop, so each retry waits twice as long as the last.
   */
  private onStartFailure(slot: Slot, message: string): void {
    slot.gone = true
    slot.replyPort.close()
    this.startFailures++
    this.lastStartError = message
    const retryInMs = Math.min(START_RETRY_MS.first * 2 ** (this.startFailures - 1), START_RETRY_MS.max)
    this.retryAt = Date.now() + retryInMs
    this.options.onStartFailure?.({ message, attempts: this.startFailures, retryInMs })
    if (slot.burst) {
      this.slots[slot.index] = undefined
      this.pumpIn(retryInMs)
    } else {
      this.later(retryInMs, () => {
        if (this.slots[slot.index] === slot) void this.spawn(slot.index, false)
      })
    }
  }

  /**
   * The slot's timer: ends the worker if its running call is past its own timeout, otherwise
   * looks again at that call's deadline. Calls start without telling the pool, so the worker
   * publishes which call runs and since when in the control block. While a batch holds more than
   * one call it also ticks every `BATCH_TICK_MS`: it collects results finished behind a long call
   * and takes back the calls waiting behind it, so neither waits on a neighbour for long.
   */
  private onTimer(slot: Slot): void {
    slot.timer = undefined
    const batch = slot.batch
    if (!this.isCurrent(slot) || batch === undefined) return
    this.harvest(slot, true)
    let index: number
    let startedAt: number
    // Read both for the same call: indexes only grow within a batch.
    do {
      index = Atomics.load(slot.header, Control.current)
      startedAt = slot.startedAt[0]!
    } while (Atomics.load(slot.header, Control.current) !== index)
    const now = Date.now()
    const job = index >= 0 ? batch[index] : undefined
    if (job !== undefined && !job.settled) {
      const deadline = startedAt + job.timeoutMs
      if (now >= deadline) return this.onTimeout(slot, job)
      if (now - startedAt >= BATCH_TICK_MS) this.takeBack(slot)
      return this.arm(slot, Math.min(deadline - now, this.tickOf(slot)))
    }
    this.armFor(slot)
  }

  /**
   * Every `BATCH_TICK_MS` while calls of the batch may still be taken back or results wait to be
   * read, else never.
   */
  private tickOf(slot: Slot): number {
    const batch = slot.batch
    if (batch === undefined) return Infinity
    return Atomics.load(slot.header, Control.claim) < batch.length ||
      Atomics.load(slot.header, Control.resultCount) > slot.readCount
      ? BATCH_TICK_MS
      : Infinity
  }

  /**
   * Arms the timer when no call's start time is known: a call that starts later cannot pass its
   * deadline sooner than the shortest timeout of the batch.
   */
  private armFor(slot: Slot): void {
    let shortest = this.tickOf(slot)
    for (const job of slot.batch ?? []) {
      if (!job.settled) shortest = Math.min(shortest, job.timeoutMs)
    }
    if (shortest < Infinity) this.arm(slot, shortest)
  }

  private arm(slot: Slot, ms: number): void {
    clearTimeout(slot.timer)
    slot.timer = setTimeout(() => this.onTimer(slot), ms)
  }

  private onTimeout(slot: Slot, job: Job): void {
    // A plugin that just ran into its timeout is held to one worker for a while: a looping
    // plugin then burns at most one core, whatever its callers do.
    this.penalised.set(job.spec.key, Date.now() + PENALTY_MS)
    // Calls of the batch that finished keep their results, those that logged included.
    this.harvest(slot)
    this.settle(job, { _tag: "TimedOut", timeoutMs: job.timeoutMs })
    this.endBatch(
      slot,
      `the worker was ended because call ${job.fn ?? "(start)"} of the same batch timed out`
    )
    this.retire(slot)
  }

  /** Stops a worker; a worker of the pool proper is replaced, an extra one is not. */
  private retire(slot: Slot): void {
    slot.gone = true
    clearTimeout(slot.timer)
    clearTimeout(slot.idleTimer)
    slot.replyPort.close()
    void slot.worker.terminate()
    if (slot.burst) {
      this.slots[slot.index] = undefined
      this.pump()
    } else {
      // Spawning puts a new slot object in the array, so the old worker's exit event is ignored.
      void this.spawn(slot.index, false)
    }
  }

  private finish(slot: Slot): void {
    clearTimeout(slot.timer)
    slot.timer = undefined
    const job = slot.batch?.[0]
    slot.batch = undefined
    slot.inHostCall = false
    slot.sleepsUntil = 0
    if (job === undefined) return
    const key = job.spec.key
    const count = (this.running.get(key) ?? 1) - 1
    if (count <= 0) this.running.delete(key)
    else this.running.set(key, count)
    if (this.registrations.has(key)) {
      const now = Date.now()
      this.usage.set(key, { ms: this.usageOf(key, now) + (now - slot.batchStartedAt), at: now })
    }
    if (slot.burst) this.idleFor(slot)
  }

  /** Reclaims an extra worker that stays idle for `burstIdleMs`. */
  private idleFor(slot: Slot): void {
    clearTimeout(slot.idleTimer)
    slot.idleTimer = setTimeout(() => {
      if (this.isCurrent(slot) && slot.batch === undefined) this.retire(slot)
    }, this.options.burstIdleMs ?? DEFAULT_BURST_IDLE_MS)
    slot.idleTimer.unref()
  }

  private settle(job: Job, outcome: CallOutcome): void {
    if (job.settled) return
    job.settled = true
    clearTimeout(job.deadline)
    job.resolve(outcome)
    job.finished?.resolve()
  }

  private finishedOf(job: Job): Promise<void> {
    if (job.finished === undefined) {
      let resolve: () => void = () => undefined
      const promise = new Promise<void>((done) => {
        resolve = done
      })
      job.finished = { promise, resolve }
      if (job.settled) resolve()
    }
    return job.finished.promise
  }

  /** A queued call reached its deadline without starting. */
  private expire(job: Job): void {
    const left = job.queuedAt + job.queueTimeoutMs - Date.now()
    if (this.lastStartError === undefined && left > 0) {
      job.deadline = setTimeout(() => this.expire(job), left)
      return
    }
    // Still waiting in a batch: take it back (with the calls behind it) unless it has started.
    if (job.slot !== undefined) this.takeBack(job.slot)
    if (!this.dequeue(job)) return
    if (this.lastStartError !== undefined) {
      this.settle(job, { _tag: "WorkerStart", message: this.lastStartError, attempts: this.startFailures })
      return
    }
    const stats = this.stats()
    this.settle(job, {
      _tag: "QueueTimedOut",
      timeoutMs: job.queueTimeoutMs,
      workers: stats.workers,
      starting: stats.starting,
      busy: stats.busy,
      blocked: stats.blocked
    })
  }

  private dequeue(job: Job): boolean {
    const queue = this.queues.get(job.spec.key)
    const at = queue?.indexOf(job) ?? -1
    if (queue === undefined || at < 0) return false
    queue.splice(at, 1)
    if (queue.length === 0) this.queues.delete(job.spec.key)
    this.queued--
    return true
  }

  private usageOf(key: string, now: number): number {
    const usage = this.usage.get(key)
    return usage === undefined ? 0 : usage.ms * 0.5 ** ((now - usage.at) / USAGE_HALF_LIFE_MS)
  }

  /**
   * Starts queued calls while it can. Among the plugins allowed to start one more call, the one
   * that used the least worker time lately (running calls included) goes first; ties go to the
   * plugin whose queue is oldest. Extra workers run only calls of plugins that had nothing running.
   */
  /** Calls submitted since the last pump, whose deadline timers are not set yet. */
  private submitted: Array<Job> = []

  /**
   * Pumps at the end of the current run of code, once however many calls were submitted or taken
   * back meanwhile, then gives the submitted calls that still wait their deadline timer.
   */
  private pumpSoon(): void {
    if (this.pumpQueued) return
    this.pumpQueued = true
    queueMicrotask(() => {
      this.pumpQueued = false
      this.pump()
      const submitted = this.submitted
      this.submitted = []
      // Only calls that may wait get a deadline timer: the first call of a batch starts for sure.
      // Checked first at the call's own timeout: if workers cannot start at all, waiting longer
      // helps nobody; otherwise the job waits on to its queue deadline. It keeps running while the
      // call waits in a batch, and is cleared when the call settles.
      for (const job of submitted) {
        if (job.settled || (job.slot !== undefined && job.index === 0)) continue
        job.deadline = setTimeout(() => this.expire(job), Math.min(job.timeoutMs, job.queueTimeoutMs))
      }
    })
  }

  private pump(): void {
    if (this.closed) return
    for (;;) {
      this.pumpQueue()
      // An idle worker takes the calls another one has not started yet.
      if (this.queued > 0 || !this.steal()) return
    }
  }

  /**
   * Takes back the unstarted calls of one busy worker while a worker of the pool proper is idle
   * and their plugin may use one more worker.
   */
  private steal(): boolean {
    let idle = false
    let victim: Slot | undefined
    let most = 0
    const now = Date.now()
    for (const slot of this.slots) {
      if (slot === undefined || slot.gone || !slot.ready) continue
      const batch = slot.batch
      if (batch === undefined) {
        if (!slot.burst) idle = true
        continue
      }
      const key = batch[0]!.spec.key
      if ((this.running.get(key) ?? 0) >= this.capOf(key, now)) continue
      const unstarted = batch.length - Atomics.load(slot.header, Control.claim)
      if (unstarted > most) {
        most = unstarted
        victim = slot
      }
    }
    if (!idle || victim === undefined) return false
    const back = this.revoke(victim)
    this.requeue(back)
    return back.length > 0
  }

  private pumpQueue(): void {
    while (this.queued > 0) {
      const now = Date.now()
      const ongoing = new Map<string, number>()
      for (const slot of this.slots) {
        const key = slot?.batch?.[0]?.spec.key
        if (key === undefined || slot === undefined) continue
        ongoing.set(key, (ongoing.get(key) ?? 0) + now - slot.batchStartedAt)
      }
      const candidates: Array<{ readonly key: string; readonly used: number; readonly idle: boolean }> = []
      for (const key of this.queues.keys()) {
        const running = this.running.get(key) ?? 0
        if (running >= this.capOf(key, now)) continue
        candidates.push({ key, used: this.usageOf(key, now) + (ongoing.get(key) ?? 0), idle: running === 0 })
      }
      // Stable: equal usage keeps the queues' order.
      candidates.sort((a, b) => a.used - b.used)
      let started = false
      for (const { idle, key } of candidates) {
        const slot = this.pickSlot(key, idle)
        if (slot === undefined) continue
        const queue = this.queues.get(key)!
        // Share the queue among the workers free for it; the rest waits for the next free one.
        const size = Math.min(MAX_BATCH, Math.ceil(queue.length / this.freeWorkers(idle)))
        const jobs = queue.splice(0, size)
        if (queue.length === 0) this.queues.delete(key)
        this.queued -= jobs.length
        this.start(slot, jobs)
        started = true
        break
      }
      if (!started) return this.lend(candidates.filter((c) => c.idle).length, now)
    }
  }

  /**
   * Every worker is taken and `wanted` plugins with nothing running wait. Start extra workers for
   * them, plus one spare, but only while fewer than `size` busy workers compute (the others sleep
   * or wait on the host), so extras never add CPU load beyond the pool size.
   */
  private lend(wanted: number, now: number): void {
    if (wanted > 0) this.startExtras(wanted + 1, now)
  }

  /**
   * An extra worker was just taken: keep one more started and idle, so the next plugin with nothing
   * running does not wait for a thread to start (that can take hundreds of ms on a busy machine).
   */
  private keepSpare(now: number): void {
    this.startExtras(1, now)
  }

  /** Starts extras until `count` of them are starting or idle, within the limits above. */
  private startExtras(count: number, now: number): void {
    const extra = this.options.maxBurstWorkers ?? 0
    if (extra === 0) return
    if (now < this.retryAt) return this.pumpIn(this.retryAt - now)
    let busy = 0
    let computing = 0
    let available = 0
    for (const slot of this.live()) {
      if (!slot.ready || slot.batch === undefined) {
        if (slot.burst) available++
      } else {
        busy++
        if (!isBlocked(slot, now)) computing++
      }
    }
    // Workers of the pool proper that are still starting will take the call; extras are no cure
    // for workers that cannot start.
    if (busy < this.options.size || computing >= this.options.size) return
    for (let index = this.options.size; index < this.options.size + extra && available < count; index++) {
      const slot = this.slots[index]
      if (slot !== undefined && !slot.gone) continue
      void this.spawn(index, true)
      available++
    }
  }

  private pumpIn(ms: number): void {
    if (this.pumpTimer !== undefined || this.closed) return
    this.pumpTimer = setTimeout(() => {
      this.pumpTimer = undefined
      this.pump()
    }, ms)
  }

  private later(ms: number, f: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      if (!this.closed) f()
    }, ms)
    this.timers.add(timer)
  }

  private capOf(key: string, now: number): number {
    const until = this.penalised.get(key)
    if (until === undefined) return this.options.maxWorkersPerPlugin
    if (until > now) return 1
    this.penalised.delete(key)
    return this.options.maxWorkersPerPlugin
  }

  /** Idle, ready workers a plugin may use now (at least 1). */
  private freeWorkers(mayUseExtra: boolean): number {
    let free = 0
    for (const slot of this.slots) {
      if (slot === undefined || slot.gone || !slot.ready || slot.batch !== undefined) continue
      if (!slot.burst || mayUseExtra) free++
    }
    return Math.max(1, free)
  }

  /** An idle worker, preferring one that already has the plugin, then one of the pool proper. */
  private pickSlot(key: string, mayUseExtra: boolean): Slot | undefined {
    let best: Slot | undefined
    let bestScore = Infinity
    for (const slot of this.slots) {
      if (slot === undefined || slot.gone || !slot.ready || slot.batch !== undefined) continue
      if (slot.burst && !mayUseExtra) continue
      const score = (slot.known.has(key) ? 0 : 2) + (slot.burst ? 1 : 0)
      if (score === 0) return slot
      if (score < bestScore) {
        best = slot
        bestScore = score
      }
    }
    return best
  }

  /** Hands `jobs` (all of one plugin, at least one) to an idle worker; the first always runs. */
  private start(slot: Slot, jobs: Array<Job>): void {
    const head = jobs[0]!
    const key = head.spec.key
    const now = Date.now()
    // The first call starts for sure, so it cannot expire in the queue any more.
    clearTimeout(head.deadline)
    clearTimeout(slot.idleTimer)
    jobs.forEach((job, index) => {
      job.slot = slot
      job.index = index
    })
    slot.batch = jobs
    slot.batchStartedAt = now
    slot.inHostCall = false
    slot.sleepsUntil = 0
    slot.readCount = 0
    slot.readOffset = 0
    // The worker is idle, so nothing races these stores; postMessage publishes them.
    Atomics.store(slot.header, Control.claim, 1)
    Atomics.store(slot.header, Control.current, -1)
    Atomics.store(slot.header, Control.resultCount, 0)
    this.running.set(key, (this.running.get(key) ?? 0) + 1)
    const known = slot.known.has(key)
    if (!known) slot.known.add(key)
    this.armFor(slot)
    let size = 0
    for (const job of jobs) size += job.input.byteLength
    const inputs = new Uint8Array(size)
    const ends: Array<number> = []
    size = 0
    for (const job of jobs) {
      inputs.set(job.input, size)
      size += job.input.byteLength
      ends.push(size)
    }
    const message: MainToWorker = {
      t: "batch",
      key,
      callIds: jobs.map((job) => job.callId),
      fns: jobs.map((job) => job.fn),
      inputs,
      ends,
      ...(known ? {} : { spec: head.spec })
    }
    // Transferring a buffer costs more than copying a small one (~7 µs a message here): only large
    // inputs are moved rather than cloned.
    slot.worker.postMessage(message, size >= TRANSFER_MIN_BYTES ? [inputs.buffer] : [])
    if (slot.burst) this.keepSpare(now)
  }

  private send(slot: Slot, message: MainToWorker): void {
    slot.worker.postMessage(message)
  }
}

/** A busy worker that burns no CPU: it sleeps in `poll_oneoff` or waits for a host-call reply. */
const isBlocked = (slot: Slot, now: number): boolean => slot.inHostCall || slot.sleepsUntil > now

/**
 * The pool of execution workers. This is the engine's hot path, so it is a plain class driven by
 * worker messages; `WasmRuntime` wraps it in Effect (scope, typed errors, logging).
 *
 * Rules it keeps:
 * - one call per worker at a time; a call that outlives its timeout ends its worker, and only
 *   that worker, which is replaced;
 * - a plugin never occupies every worker, so one looping plugin cannot starve the others;
 * - host-call replies are written only while the worker that asked is still running that call,
 *   so a late reply can never reach a later call or a replacement worker.
 */
import { MessageChannel, type MessagePort, Worker } from "node:worker_threads"
import {
  CONTROL_BUFFER_BYTES,
  Control,
  type CallFailure,
  type MainToWorker,
  type PluginSpec,
  type WorkerToMain
} from "../worker/protocol.js"
import { loadWorkerSource } from "./WorkerScript.js"

export type CallOutcome =
  | { readonly _tag: "Done"; readonly output: Uint8Array | null }
  | { readonly _tag: "Failed"; readonly failure: CallFailure }
  | { readonly _tag: "TimedOut"; readonly timeoutMs: number }
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
}

interface Job {
  readonly callId: number
  readonly spec: PluginSpec
  readonly fn: string | null
  readonly input: Uint8Array
  readonly timeoutMs: number
  readonly resolve: (outcome: CallOutcome) => void
  settled: boolean
  /** Created on first use by a host call, resolved when the job settles. */
  finished?: { readonly promise: Promise<void>; readonly resolve: () => void }
}

interface Slot {
  readonly index: number
  worker: Worker
  header: Int32Array
  inline: Uint8Array
  replyPort: MessagePort
  known: Set<string>
  job: Job | undefined
  timer: ReturnType<typeof setTimeout> | undefined
  ready: boolean
}

/** How long a plugin that timed out is held to a single worker. */
const PENALTY_MS = 60_000

export class WorkerPool {
  private readonly slots: Array<Slot> = []
  private readonly queue: Array<Job> = []
  private readonly registrations = new Map<string, PluginRegistration>()
  private readonly running = new Map<string, number>()
  /** Plugins held to one worker until the given time (ms), after a timeout. */
  private readonly penalised = new Map<string, number>()
  private nextCallId = 1
  private closed = false

  private constructor(
    private readonly source: string,
    private readonly options: PoolOptions
  ) {}

  static async make(options: PoolOptions): Promise<WorkerPool> {
    const pool = new WorkerPool(await loadWorkerSource(), options)
    await Promise.all(Array.from({ length: options.size }, (_, index) => pool.spawn(index)))
    return pool
  }

  get size(): number {
    return this.slots.length
  }

  /** Live worker threads (for leak checks and status). */
  get threadIds(): ReadonlyArray<number> {
    return this.slots.map((slot) => slot.worker.threadId)
  }

  register(key: string, registration: PluginRegistration): void {
    this.registrations.set(key, registration)
  }

  /** Forgets a plugin: its instances are dropped from every worker; its queued calls fail as closed. */
  unregister(key: string): void {
    this.registrations.delete(key)
    this.penalised.delete(key)
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const job = this.queue[i]!
      if (job.spec.key === key) {
        this.queue.splice(i, 1)
        this.settle(job, { _tag: "Closed" })
      }
    }
    for (const slot of this.slots) {
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
    resolve: (outcome: CallOutcome) => void
  ): () => void {
    const job: Job = { callId: this.nextCallId++, spec, fn, input, timeoutMs, resolve, settled: false }
    if (this.closed || !this.registrations.has(spec.key)) {
      resolve({ _tag: "Closed" })
      return () => undefined
    }
    this.queue.push(job)
    this.pump()
    // Cancelling only removes a queued job: a running call cannot be stopped without ending its worker.
    return () => {
      const at = this.queue.indexOf(job)
      if (at >= 0) {
        this.queue.splice(at, 1)
        job.settled = true
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true
    for (const job of this.queue.splice(0)) this.settle(job, { _tag: "Closed" })
    await Promise.all(
      this.slots.map((slot) => {
        if (slot.timer !== undefined) clearTimeout(slot.timer)
        if (slot.job !== undefined) this.settle(slot.job, { _tag: "Closed" })
        slot.replyPort.close()
        return slot.worker.terminate()
      })
    )
  }

  private spawn(index: number): Promise<void> {
    const control = new SharedArrayBuffer(CONTROL_BUFFER_BYTES)
    const { port1, port2 } = new MessageChannel()
    const worker = new Worker(this.source, {
      eval: true,
      name: `ndp-exec-${index}`,
      workerData: { control, replyPort: port2 },
      transferList: [port2],
      resourceLimits: { maxOldGenerationSizeMb: this.options.workerHeapMb, stackSizeMb: 4 },
      stdout: false,
      stderr: false
    })
    const slot: Slot = {
      index,
      worker,
      header: new Int32Array(control, 0, Control.headerBytes / 4),
      inline: new Uint8Array(control, Control.headerBytes, Control.inlineBytes),
      replyPort: port1,
      known: new Set(),
      job: undefined,
      timer: undefined,
      ready: false
    }
    this.slots[index] = slot
    return new Promise((resolve) => {
      worker.on("message", (message: WorkerToMain) => {
        if (message.t === "ready") {
          slot.ready = true
          resolve()
          this.pump()
        } else {
          this.onMessage(slot, worker, message)
        }
      })
      worker.on("error", (error) => this.onCrash(slot, worker, error.message))
      worker.on("exit", (code) => {
        this.onCrash(slot, worker, `worker exited with code ${code}`)
        resolve()
      })
    })
  }

  /** Events of a replaced worker (or of its slot object) are ignored: the slot has moved on. */
  private isCurrent(slot: Slot, worker: Worker): boolean {
    return this.slots[slot.index] === slot && slot.worker === worker
  }

  private onMessage(slot: Slot, worker: Worker, message: WorkerToMain): void {
    if (!this.isCurrent(slot, worker)) return
    switch (message.t) {
      case "log": {
        this.registrations.get(message.key)?.log(message.level, message.message)
        return
      }
      case "host": {
        const job = slot.job
        const registration = this.registrations.get(message.key)
        if (job === undefined || job.callId !== message.callId) return
        const reply = (response: Uint8Array): void => {
          // Only the call that asked may receive the answer (generation check).
          if (!this.isCurrent(slot, worker) || slot.job !== job) return
          this.writeReply(slot, response)
        }
        if (registration === undefined) {
          reply(new TextEncoder().encode('{"error":"plugin is unloaded"}'))
        } else {
          registration.host(message.fn, message.payload, reply, this.finishedOf(job))
        }
        return
      }
      case "done":
      case "failed": {
        const job = slot.job
        if (job === undefined || job.callId !== message.callId) return
        this.finish(slot, job)
        this.settle(
          job,
          message.t === "done"
            ? { _tag: "Done", output: message.output }
            : { _tag: "Failed", failure: message.failure }
        )
        this.pump()
        return
      }
      case "ready":
        return
    }
  }

  private writeReply(slot: Slot, response: Uint8Array): void {
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

  private onCrash(slot: Slot, worker: Worker, message: string): void {
    if (!this.isCurrent(slot, worker) || this.closed) return
    const job = slot.job
    this.finish(slot, job)
    if (job !== undefined) this.settle(job, { _tag: "Crashed", message })
    void this.replace(slot)
  }

  private onTimeout(slot: Slot, job: Job): void {
    if (slot.job !== job) return
    // A plugin that just ran into its timeout is held to one worker for a while: a looping
    // plugin then burns at most one core, whatever its callers do.
    this.penalised.set(job.spec.key, Date.now() + PENALTY_MS)
    this.finish(slot, job)
    this.settle(job, { _tag: "TimedOut", timeoutMs: job.timeoutMs })
    void this.replace(slot)
  }

  private async replace(slot: Slot): Promise<void> {
    const old = slot.worker
    slot.ready = false
    slot.replyPort.close()
    // Spawning puts a new slot object in the array, so the old worker's exit event is ignored.
    const spawned = this.spawn(slot.index)
    await old.terminate()
    await spawned
  }

  private finish(slot: Slot, job: Job | undefined): void {
    if (slot.timer !== undefined) clearTimeout(slot.timer)
    slot.timer = undefined
    slot.job = undefined
    if (job !== undefined) {
      const count = (this.running.get(job.spec.key) ?? 1) - 1
      if (count <= 0) this.running.delete(job.spec.key)
      else this.running.set(job.spec.key, count)
    }
  }

  private settle(job: Job, outcome: CallOutcome): void {
    if (job.settled) return
    job.settled = true
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

  private pump(): void {
    if (this.closed) return
    for (let i = 0; i < this.queue.length;) {
      const job = this.queue[i]!
      if ((this.running.get(job.spec.key) ?? 0) >= this.capOf(job.spec.key)) {
        i++
        continue
      }
      const slot = this.pickSlot(job.spec.key)
      if (slot === undefined) return
      this.queue.splice(i, 1)
      this.start(slot, job)
    }
  }

  private capOf(key: string): number {
    const until = this.penalised.get(key)
    if (until === undefined) return this.options.maxWorkersPerPlugin
    if (until > Date.now()) return 1
    this.penalised.delete(key)
    return this.options.maxWorkersPerPlugin
  }

  private pickSlot(key: string): Slot | undefined {
    let fallback: Slot | undefined
    for (const slot of this.slots) {
      if (slot === undefined || !slot.ready || slot.job !== undefined) continue
      if (slot.known.has(key)) return slot
      fallback ??= slot
    }
    return fallback
  }

  private start(slot: Slot, job: Job): void {
    slot.job = job
    this.running.set(job.spec.key, (this.running.get(job.spec.key) ?? 0) + 1)
    const known = slot.known.has(job.spec.key)
    if (!known) slot.known.add(job.spec.key)
    slot.timer = setTimeout(() => this.onTimeout(slot, job), job.timeoutMs)
    this.send(slot, {
      t: "call",
      callId: job.callId,
      key: job.spec.key,
      fn: job.fn,
      input: job.input,
      ...(known ? {} : { spec: job.spec })
    })
  }

  private send(slot: Slot, message: MainToWorker): void {
    slot.worker.postMessage(message)
  }
}

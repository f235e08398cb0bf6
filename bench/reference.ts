/**
 * A reference point for the throughput figures: how many bare `postMessage` round trips per second
 * this machine's Node can do between the main thread and a few worker threads, with no Wasm, no
 * engine and no Effect. Any design that sends one message each way per call is bounded by it.
 */
import { Worker } from "node:worker_threads"

const echo = `
const { parentPort } = require("node:worker_threads")
parentPort.on("message", (m) => parentPort.postMessage({ t: "done", callId: m.callId, output: null }))
`

const runFor = (workers: ReadonlyArray<Worker>, durationMs: number): Promise<number> =>
  new Promise((resolve) => {
    let trips = 0
    let open = workers.length
    const start = performance.now()
    const deadline = start + durationMs
    for (const worker of workers) {
      worker.removeAllListeners("message")
      const send = () =>
        worker.postMessage({ t: "call", callId: trips, key: "k#1", fn: "noop", input: new Uint8Array(0) })
      worker.on("message", () => {
        trips++
        if (performance.now() < deadline) return send()
        if (--open === 0) resolve((trips / (performance.now() - start)) * 1000)
      })
      send()
    }
  })

/** Round trips per second with `workerCount` workers each kept busy by one message in flight. */
export const postMessageRoundTrips = async (
  workerCount: number,
  warmupMs: number,
  durationMs: number
): Promise<number> => {
  const workers = Array.from({ length: workerCount }, () => new Worker(echo, { eval: true }))
  try {
    await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once("online", resolve))))
    await runFor(workers, warmupMs)
    return await runFor(workers, durationMs)
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()))
  }
}

/**
 * The same ping-pong without messages: each worker waits with `Atomics.waitAsync` on a shared
 * counter and answers by bumping another one, which the main thread awaits with `waitAsync` too.
 * This is the floor of a shared-memory ring that still wakes a sleeping thread once each way per
 * call (docs/decisions/0036-dispatch-stays-one-message-each-way.md).
 */
const sharedEcho = `
const { workerData } = require("node:worker_threads")
const counters = new Int32Array(workerData)
// A pending waitAsync does not keep a thread alive.
setInterval(() => {}, 1 << 30)
let seen = 0
const next = () => {
  const wait = Atomics.waitAsync(counters, 0, seen)
  const answer = () => {
    seen = Atomics.load(counters, 0)
    Atomics.store(counters, 1, seen)
    Atomics.notify(counters, 1)
    next()
  }
  if (wait.async) wait.value.then(answer)
  else answer()
}
next()
`

/** `Atomics.waitAsync` (Node ≥ 16), missing from the ES library this project compiles against. */
const waitAsync = (
  Atomics as unknown as {
    waitAsync: (
      array: Int32Array,
      index: number,
      value: number
    ) => { readonly async: boolean; readonly value: Promise<string> | string }
  }
).waitAsync

const sharedRunFor = async (counters: ReadonlyArray<Int32Array>, durationMs: number): Promise<number> => {
  let trips = 0
  const start = performance.now()
  const deadline = start + durationMs
  await Promise.all(
    counters.map(async (shared) => {
      let sequence = Atomics.load(shared, 0)
      while (performance.now() < deadline) {
        sequence++
        Atomics.store(shared, 0, sequence)
        Atomics.notify(shared, 0)
        while (Atomics.load(shared, 1) !== sequence) {
          const wait = waitAsync(shared, 1, sequence - 1)
          if (wait.async) await wait.value
        }
        trips++
      }
    })
  )
  return (trips / (performance.now() - start)) * 1000
}

/** Round trips per second through shared memory and `Atomics.waitAsync`, one in flight per worker. */
export const sharedMemoryRoundTrips = async (
  workerCount: number,
  warmupMs: number,
  durationMs: number
): Promise<number> => {
  const buffers = Array.from({ length: workerCount }, () => new SharedArrayBuffer(8))
  const workers = buffers.map((buffer) => new Worker(sharedEcho, { eval: true, workerData: buffer }))
  // A pending waitAsync does not keep the main thread alive either.
  const alive = setInterval(() => undefined, 1 << 30)
  try {
    await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once("online", resolve))))
    const counters = buffers.map((buffer) => new Int32Array(buffer))
    await sharedRunFor(counters, warmupMs)
    return await sharedRunFor(counters, durationMs)
  } finally {
    clearInterval(alive)
    await Promise.all(workers.map((worker) => worker.terminate()))
  }
}

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

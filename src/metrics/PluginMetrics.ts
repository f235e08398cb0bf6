/**
 * Per-plugin metrics, kept with Effect's `Metric` (one process-wide registry), and their two
 * renderings: the Prometheus text exposition format (`/metrics`) and plain JSON (the admin API).
 *
 * Every metric is tagged with `plugin`; names follow Prometheus conventions (`_total` counters,
 * `_seconds` histograms). The runtime updates the call metrics, the host-call handler the host
 * metrics; gauges read from a live state (pool queue) are set just before a snapshot is taken.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import * as MetricLabel from "effect/MetricLabel"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"

const callsKey = MetricKey.counter("ndp_plugin_calls_total", {
  description: "Export calls started, by plugin and export",
  incremental: true
})
/** Export calls started, by plugin and export. */
export const calls = Metric.fromMetricKey(callsKey)

/** Export calls that failed, by plugin, export and error tag. */
export const failures = Metric.counter("ndp_plugin_call_failures_total", {
  description: "Export calls that failed, by plugin, export and error tag",
  incremental: true
})

const timeoutsKey = MetricKey.counter("ndp_plugin_call_timeouts_total", {
  description: "Export calls stopped by their timeout, by plugin and export",
  incremental: true
})
/** Export calls stopped by their timeout, by plugin and export. */
export const timeouts = Metric.fromMetricKey(timeoutsKey)

const callDurationKey = MetricKey.histogram(
  "ndp_plugin_call_duration_seconds",
  MetricBoundaries.fromIterable([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]),
  "Seconds from submitting an export call to its outcome, queue wait included"
)
/** Seconds from submitting a call to its outcome (queue wait included). */
export const callDuration = Metric.fromMetricKey(callDurationKey)

const hostCallsKey = MetricKey.counter("ndp_plugin_host_calls_total", {
  description: "Host function calls made by plugins, by plugin and host service",
  incremental: true
})
/** Host calls made by plugins, by plugin and host service. */
export const hostCalls = Metric.fromMetricKey(hostCallsKey)

/** Bytes a plugin holds in its key-value store. */
export const kvBytes = Metric.gauge("ndp_plugin_kvstore_bytes", {
  description: "Bytes a plugin holds in its key-value store"
})

/** Schedules a plugin has registered and not cancelled. */
export const schedules = Metric.gauge("ndp_plugin_schedules", {
  description: "Live schedules a plugin has registered"
})

/** WebSocket connections a plugin holds open. */
export const sockets = Metric.gauge("ndp_plugin_open_sockets", {
  description: "WebSocket connections a plugin holds open"
})

/** Calls waiting for a free worker, across every plugin. */
export const queuedCalls = Metric.gauge("ndp_pool_queued_calls", {
  description: "Export calls waiting for a free worker"
})

/** Workers running a call right now. */
export const busyWorkers = Metric.gauge("ndp_pool_busy_workers", {
  description: "Workers running an export call"
})

/** The host service of a host function (`kvstore_set` → `kvstore`). */
export const serviceOf = (fn: string): string => {
  const at = fn.indexOf("_")
  return at <= 0 ? fn : fn.slice(0, at)
}

// Tagged metrics are made once per plugin and export, not per call: tagging builds a new metric
// key whose registry lookup on every call cost more than the call itself.
const series = new Map<
  string,
  {
    readonly calls: Metric.Metric.Counter<number>
    readonly failures: Metric.Metric.Counter<number>
    readonly timeouts: Metric.Metric.Counter<number>
    readonly callDuration: Metric.Metric.Histogram<number>
  }
>()
const seriesOf = (pluginId: string, exportName: string) => {
  const key = `${pluginId}\u0000${exportName}`
  let found = series.get(key)
  if (found === undefined) {
    const labels = [MetricLabel.make("plugin", pluginId), MetricLabel.make("export", exportName)]
    // The labels go into the key itself: `Metric.tagged` would union its labels into a new array
    // on every update, missing the metric's hook cache and building a key and a registry lookup
    // per call (a quarter of the main thread's time per trivial call).
    found = {
      calls: Metric.fromMetricKey(MetricKey.taggedWithLabels(callsKey, labels)),
      failures: Metric.tagged(Metric.tagged(failures, "plugin", pluginId), "export", exportName),
      timeouts: Metric.fromMetricKey(MetricKey.taggedWithLabels(timeoutsKey, labels)),
      callDuration: Metric.fromMetricKey(MetricKey.taggedWithLabels(callDurationKey, labels))
    }
    series.set(key, found)
  }
  return found
}

/**
 * Counts one export call of `effect`, its failure by error tag, a timeout, and its duration.
 * Interruption (the caller gave up) is neither a failure nor a timeout.
 */
export const trackCall =
  (pluginId: string, exportName: string) =>
  <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    // One fiber step before and one after the call, updating the series directly: this runs on
    // every call, and a chain of metric Effects was a tenth of a trivial call's main-thread time.
    Effect.clockWith((clock) =>
      Effect.withFiberRuntime<A, E, R>((fiber) => {
        const series = seriesOf(pluginId, exportName)
        // Labels a caller added with `Effect.tagMetrics`, as `Metric.update` would apply them.
        const tags = fiber.getFiberRef(FiberRef.currentMetricLabels)
        series.calls.unsafeUpdate(1, tags)
        const started = clock.unsafeCurrentTimeMillis()
        return Effect.onExit(effect, (exit) =>
          Effect.sync(() => {
            series.callDuration.unsafeUpdate((clock.unsafeCurrentTimeMillis() - started) / 1000, tags)
            if (Exit.isSuccess(exit)) return
            // Typed failures only: a defect or an interruption carries no error tag.
            const failure = Option.getOrUndefined(Cause.failureOption(exit.cause))
            if (failure === undefined) return
            series.failures.unsafeUpdate(1, [...tags, MetricLabel.make("error", failure._tag)])
            if (failure._tag === "PluginTimeoutError") series.timeouts.unsafeUpdate(1, tags)
          })
        )
      })
    )

/** Counts host calls of a plugin under its service (one unless told; the worker's own answers come in batches). */
export const countHostCall = (pluginId: string, fn: string, calls = 1): Effect.Effect<void> => {
  const key = `${pluginId}\u0000${fn}`
  let counter = hostCallSeries.get(key)
  if (counter === undefined) {
    // Labels in the key, as for calls: `Metric.tagged` pays a key and a lookup on every update.
    counter = Metric.fromMetricKey(
      MetricKey.taggedWithLabels(hostCallsKey, [
        MetricLabel.make("plugin", pluginId),
        MetricLabel.make("service", serviceOf(fn))
      ])
    )
    hostCallSeries.set(key, counter)
  }
  return calls === 1 ? Metric.increment(counter) : Metric.incrementBy(counter, calls)
}

// As for calls: one tagged counter per plugin and function, made once.
const hostCallSeries = new Map<string, Metric.Metric.Counter<number>>()

/** Sets a per-plugin gauge (KV bytes, schedules, sockets). */
export const setGauge = (
  gauge: Metric.Metric.Gauge<number>,
  pluginId: string,
  value: number
): Effect.Effect<void> => Metric.set(Metric.tagged(gauge, "plugin", pluginId), value)

/** `setGauge` for code that is not an Effect (socket bookkeeping in callbacks). */
export const setGaugeNow = (gauge: Metric.Metric.Gauge<number>, pluginId: string, value: number): void =>
  Metric.tagged(gauge, "plugin", pluginId).unsafeUpdate(value, [])

/** One metric series as the JSON API shows it. */
export interface MetricSample {
  readonly name: string
  readonly type: "counter" | "gauge" | "histogram" | "summary" | "frequency"
  readonly tags: Readonly<Record<string, string>>
  readonly help?: string
  /** Counter or gauge value; histogram sum. */
  readonly value: number
  /** Histograms: observations. */
  readonly count?: number
  /** Histograms: cumulative counts by upper bound (`"+Inf"` last). */
  readonly buckets?: ReadonlyArray<readonly [string, number]>
}

const isEngineMetric = (pair: MetricPair.MetricPair.Untyped) => pair.metricKey.name.startsWith("ndp_")

const tagsOf = (pair: MetricPair.MetricPair.Untyped): Record<string, string> =>
  Object.fromEntries(pair.metricKey.tags.map((t) => [t.key, t.value]))

const bound = (le: number): string => (Number.isFinite(le) ? String(le) : "+Inf")

const sampleOf = (pair: MetricPair.MetricPair.Untyped): MetricSample | undefined => {
  const state: unknown = pair.metricState
  const base = {
    name: pair.metricKey.name,
    tags: tagsOf(pair),
    ...Option.match(pair.metricKey.description, { onNone: () => ({}), onSome: (help) => ({ help }) })
  }
  if (MetricState.isCounterState(state)) return { ...base, type: "counter", value: Number(state.count) }
  if (MetricState.isGaugeState(state)) return { ...base, type: "gauge", value: Number(state.value) }
  if (MetricState.isHistogramState(state)) {
    const buckets = state.buckets.map(([le, n]) => [bound(le), n] as const)
    const withInf = buckets.some(([le]) => le === "+Inf")
      ? buckets
      : [...buckets, ["+Inf", state.count] as const]
    return { ...base, type: "histogram", value: state.sum, count: state.count, buckets: withInf }
  }
  return undefined
}

/** The engine's metric series now, optionally of one plugin only. */
export const samples = (pluginId?: string): Effect.Effect<ReadonlyArray<MetricSample>> =>
  Effect.map(Metric.snapshot, (pairs) =>
    pairs
      .filter(isEngineMetric)
      .flatMap((pair) => {
        const sample = sampleOf(pair)
        return sample === undefined ? [] : [sample]
      })
      .filter((s) => pluginId === undefined || s.tags.plugin === pluginId)
      .sort((a, b) =>
        a.name === b.name ? labelText(a.tags).localeCompare(labelText(b.tags)) : a.name < b.name ? -1 : 1
      )
  )

const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')

const labelText = (tags: Readonly<Record<string, string>>, extra?: readonly [string, string]): string => {
  const entries = Object.entries(tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  if (extra !== undefined) entries.push([extra[0], extra[1]])
  return entries.length === 0 ? "" : `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`
}

/** The samples in the Prometheus text exposition format (version 0.0.4). */
export const prometheusText = (all: ReadonlyArray<MetricSample>): string => {
  const lines: Array<string> = []
  let current = ""
  for (const s of all) {
    if (s.name !== current) {
      current = s.name
      const help = s.help
      if (help !== undefined)
        lines.push(`# HELP ${s.name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`)
      lines.push(`# TYPE ${s.name} ${s.type}`)
    }
    if (s.type === "histogram") {
      for (const [le, n] of s.buckets ?? [])
        lines.push(`${s.name}_bucket${labelText(s.tags, ["le", le])} ${n}`)
      lines.push(`${s.name}_sum${labelText(s.tags)} ${s.value}`)
      lines.push(`${s.name}_count${labelText(s.tags)} ${s.count ?? 0}`)
    } else {
      lines.push(`${s.name}${labelText(s.tags)} ${s.value}`)
    }
  }
  return `${lines.join("\n")}\n`
}

// The status store's figures for the dashboard, kept up to date inside the transaction that applies the events,
// so that reading them never scans the tasks: counts per status, per-second throughput, per-minute latency
// histograms, each task's timeline, and the workers' last heartbeats. What they are and how they add up lives
// here, once; each backend only stores and reads the rows.
import {
  type DashboardStats,
  LATENCY_PHASES,
  TASK_STATUSES,
  type TaskEvent,
  type TaskStatus,
  type WorkerHeartbeat,
  type WorkerRecord,
} from "../../shared/contracts.ts"
import type { Applied, TaskRow } from "./task-state.ts"

export type { Applied }

/** The status a task entered through this event, or null when the event changed nothing (late, outranked). */
export function enteredStatus({ before, after }: Applied): TaskStatus | null {
  return after.rank !== (before?.rank ?? -1) ? after.status : null
}

/** Latency phases of a task that ended: submitted → started (wait), started → finished (run), and in all. */
export type LatencyPhase = "wait" | "run" | "total"

const hasLatency = (row: TaskRow) =>
  (row.status === "SUCCESS" || row.status === "FAILURE") && row.submitted_at !== null

/**
 * The phases, in milliseconds (never below 0), of a task whose record this event completed: it ended SUCCESS
 * or FAILURE, or it had ended and its submission time arrived now (a fast worker's outcome often reaches the
 * store before the gateway's PENDING). Each run of a task is measured once; a replay's, from the first submission.
 */
export function latencyOf({ before, after }: Applied): Partial<Record<LatencyPhase, number>> {
  if (!hasLatency(after) || (before && hasLatency(before) && before.rank === after.rank)) return {}
  const { submitted_at: submitted, started_at: started, finished_at: finished } = after
  const spans: [LatencyPhase, number | null, number | null][] = [
    ["wait", submitted, started],
    ["run", started, finished],
    ["total", submitted, finished],
  ]
  const phases: Partial<Record<LatencyPhase, number>> = {}
  for (const [phase, from, to] of spans)
    if (from !== null && to !== null) phases[phase] = Math.max(0, to - from)
  return phases
}

// Latency histograms: bucket 0 holds [0, 1) ms, bucket b ≥ 1 holds [2^((b-1)/4), 2^(b/4)) ms, so each bucket is
// 19 % wider than the one before: a percentile is within 19 % whatever the scale, from 1 ms to hours.
const BUCKETS_PER_DOUBLING = 4

export function latencyBucket(ms: number): number {
  return ms < 1 ? 0 : 1 + Math.floor(BUCKETS_PER_DOUBLING * Math.log2(ms))
}

function bucketBounds(bucket: number): [number, number] {
  return bucket === 0
    ? [0, 1]
    : [2 ** ((bucket - 1) / BUCKETS_PER_DOUBLING), 2 ** (bucket / BUCKETS_PER_DOUBLING)]
}

/** Like Prometheus' histogram_quantile: the bucket that holds the rank, and a straight line within it. */
export function percentile(buckets: [bucket: number, tasks: number][], q: number): number {
  const total = buckets.reduce((sum, [, tasks]) => sum + tasks, 0)
  const rank = q * total
  let below = 0
  for (const [bucket, tasks] of buckets) {
    if (below + tasks >= rank) {
      const [low, high] = bucketBounds(bucket)
      return Math.round((low + ((high - low) * (rank - below)) / tasks) * 10) / 10
    }
    below += tasks
  }
  return 0
}

export const SERIES = ["submitted", "succeeded", "failed", "retried"] as const
export type Series = (typeof SERIES)[number]
const SERIES_OF: Partial<Record<TaskStatus, Series>> = {
  SUCCESS: "succeeded",
  FAILURE: "failed",
  RETRY: "retried",
}
/** Rates are per second over this many whole seconds before the current one. */
const RATE_SECONDS = 10

/** What one event adds to its task's timeline beyond its state, attempt, run and time (kept in the inbox). */
export function timelineDetail(event: TaskEvent): string | null {
  switch (event.state) {
    case "STARTED":
      return JSON.stringify({ worker: event.worker })
    case "RETRY":
      return JSON.stringify({ error: event.error, started_at: event.started_at, retry_at: event.retry_at })
    case "SUCCESS":
      return JSON.stringify({ started_at: event.started_at })
    case "FAILURE":
      return JSON.stringify({ error: event.error, started_at: event.started_at })
    case "PENDING":
      return event.eta === undefined ? null : JSON.stringify({ eta: event.eta })
    default:
      return null
  }
}

/** Within an attempt: queued, started, then how it ended; REVOKED last, as it outranks the rest. */
const TIMELINE_STAGE: Record<TaskStatus, number> = {
  SCHEDULED: 0,
  PENDING: 0,
  STARTED: 1,
  RETRY: 2,
  SUCCESS: 3,
  FAILURE: 3,
  EXPIRED: 3,
  REVOKED: 4,
}

export interface TimelineRow {
  state: TaskStatus
  attempt: number
  run: number
  at: number
  detail: string | null
}

/** A task's event as the inbox keeps it: its id (`<task id>:<state>:<attempt>`), run, time and detail. */
export interface InboxRow {
  event_id: string
  run: number
  at: number
  detail: string | null
}

const iso = (millis: number) => new Date(millis).toISOString()
const isoOrNull = (millis: unknown) => (typeof millis === "number" ? iso(millis) : null)

/** What a batch of applied events adds to the figures, added up: one write per key. */
export interface FigureDeltas {
  /** Tasks per status, as [status, change]; changes of 0 are left out. */
  statuses: [TaskStatus, number][]
  /** [second, submitted, succeeded, failed, retried], by second. */
  throughput: [number, number, number, number, number][]
  /** [minute, phase, bucket, tasks], by minute, phase and bucket. */
  latency: [number, LatencyPhase, number, number][]
}

export function figureDeltas(applied: Applied[]): FigureDeltas {
  const statusDeltas = new Map<TaskStatus, number>()
  const throughput = new Map<number, Record<Series, number>>()
  const latency = new Map<string, number>()
  const add = <K>(map: Map<K, number>, key: K, n: number) => map.set(key, (map.get(key) ?? 0) + n)
  const count = (at: number, series: Series) => {
    const second = Math.floor(at / 1000)
    const row = throughput.get(second) ?? { submitted: 0, succeeded: 0, failed: 0, retried: 0 }
    row[series]++
    throughput.set(second, row)
  }
  for (const change of applied) {
    const { event, before, after } = change
    if (before?.status !== after.status) {
      if (before) add(statusDeltas, before.status, -1)
      add(statusDeltas, after.status, 1)
    }
    if (event.state === "PENDING" && event.run === 1) count(event.at, "submitted")
    const entered = enteredStatus(change)
    const series = entered && SERIES_OF[entered]
    if (series) count(event.at, series)
    const minute = Math.floor((after.finished_at ?? event.at) / 60_000)
    for (const [phase, ms] of Object.entries(latencyOf(change))) {
      add(latency, `${minute}:${phase}:${latencyBucket(ms)}`, 1)
    }
  }
  // Sorted, so that concurrent transactions (replicas) take the rows' locks in one order and never deadlock.
  const byKey = <T extends unknown[]>(a: T, b: T) => (a[0] as number) - (b[0] as number)
  return {
    statuses: [...statusDeltas].filter(([, delta]) => delta !== 0).toSorted(([a], [b]) => a.localeCompare(b)),
    throughput: [...throughput]
      .map(([second, row]): [number, number, number, number, number] => [
        second,
        row.submitted,
        row.succeeded,
        row.failed,
        row.retried,
      ])
      .toSorted(byKey),
    latency: [...latency]
      .map(([key, tasks]): [number, LatencyPhase, number, number] => {
        const [minute, phase, bucket] = key.split(":")
        return [Number(minute), phase as LatencyPhase, Number(bucket), tasks]
      })
      .toSorted((a, b) => a[0] - b[0] || a[1].localeCompare(b[1]) || a[2] - b[2]),
  }
}

/** The rows a backend reads for the dashboard's figures. */
export interface FigureRows {
  counts: { status: TaskStatus; tasks: number }[]
  /** Per second, from the first second of the series on, in order. */
  series: (Record<Series, number> & { second: number })[]
  /** Summed over the RATE_SECONDS whole seconds before the current one. */
  sums: Record<Series, number | null> | null
  /** Per phase and bucket, summed over the latency window, by bucket. */
  latency: { phase: string; bucket: number; tasks: number }[]
}

/** Where the rows of `stats` start: the series' first second, the rates' seconds and the latency's first minute. */
export function figureWindow(now: number, seriesSeconds: number, windowSeconds: number) {
  const second = Math.floor(now / 1000)
  return {
    seriesFrom: second - seriesSeconds + 1,
    ratesFrom: second - RATE_SECONDS,
    ratesTo: second,
    latencyFrom: Math.floor((now - windowSeconds * 1000) / 60_000),
  }
}

/** Tasks per status, every status present. */
export function toCounts(rows: FigureRows["counts"]): Record<TaskStatus, number> {
  const byStatus = Object.fromEntries(TASK_STATUSES.map((status) => [status, 0])) as Record<
    TaskStatus,
    number
  >
  for (const { status, tasks } of rows) byStatus[status] = tasks
  return byStatus
}

export function toStats(now: number, windowSeconds: number, rows: FigureRows): DashboardStats {
  const series = {
    t: [] as number[],
    submitted: [] as number[],
    succeeded: [] as number[],
    failed: [] as number[],
    retried: [] as number[],
  }
  for (const row of rows.series) {
    series.t.push(row.second)
    for (const name of SERIES) series[name].push(row[name])
  }
  const rate = (name: Series) => (rows.sums?.[name] ?? 0) / RATE_SECONDS
  const buckets = new Map<string, [number, number][]>()
  for (const { phase, bucket, tasks } of rows.latency) {
    buckets.set(phase, [...(buckets.get(phase) ?? []), [bucket, tasks]])
  }
  const percentiles = (phase: LatencyPhase) => {
    const histogram = buckets.get(phase)
    if (!histogram) return null
    const count = histogram.reduce((sum, [, tasks]) => sum + tasks, 0)
    return {
      count,
      p50: percentile(histogram, 0.5),
      p90: percentile(histogram, 0.9),
      p99: percentile(histogram, 0.99),
    }
  }
  return {
    at: iso(now),
    counts: toCounts(rows.counts),
    rates: {
      window_s: RATE_SECONDS,
      ...(Object.fromEntries(SERIES.map((name) => [name, rate(name)])) as Record<Series, number>),
    },
    latency: {
      window_s: windowSeconds,
      ...(Object.fromEntries(LATENCY_PHASES.map((phase) => [phase, percentiles(phase)])) as Record<
        LatencyPhase,
        ReturnType<typeof percentiles>
      >),
    },
    series,
  }
}

/**
 * A task's timeline from its inbox rows, in the order the state machine ranks the events (run, attempt, stage),
 * not by their clocks. A delayed task's PENDING event shows as SCHEDULED when it was submitted, then as PENDING
 * at its eta once that has come.
 */
export function toTimeline(rows: InboxRow[], now = Date.now()) {
  const order = (a: TimelineRow, b: TimelineRow) =>
    a.run - b.run || a.attempt - b.attempt || TIMELINE_STAGE[a.state] - TIMELINE_STAGE[b.state]
  return rows
    .map(({ event_id, run, at, detail }): TimelineRow => {
      const [, state, attempt] = event_id.split(":")
      return { state: state as TaskStatus, attempt: Number(attempt), run, at, detail }
    })
    .toSorted(order)
    .flatMap(({ state, attempt, run, at, detail }) => {
      const extra = (detail ? JSON.parse(detail) : {}) as Record<string, unknown>
      const entry = {
        at: iso(at),
        state,
        attempt,
        run,
        worker: typeof extra.worker === "string" ? extra.worker : null,
        error: typeof extra.error === "string" ? extra.error : null,
        started_at: isoOrNull(extra.started_at),
        retry_at: isoOrNull(extra.retry_at),
      }
      const eta = typeof extra.eta === "number" ? extra.eta : undefined
      if (eta === undefined) return [entry]
      const scheduled = { ...entry, state: "SCHEDULED" as const }
      return eta <= now ? [scheduled, { ...entry, at: iso(eta) }] : [scheduled]
    })
}

/** Every worker heard from; `lost` once `lostAfterMissed` heartbeats in a row did not come (by this clock). */
export function toWorkerRecords(
  rows: { heartbeat: string; seen_at: number }[],
  now: number,
  lostAfterMissed: number,
): WorkerRecord[] {
  return rows.map(({ heartbeat, seen_at: seenAt }) => {
    const { state, started_at, sent_at: _sent, ...fields } = JSON.parse(heartbeat) as WorkerHeartbeat
    const lost = now - seenAt > lostAfterMissed * fields.interval_ms
    return {
      ...fields,
      status: state === "offline" ? "offline" : lost ? "lost" : "online",
      started_at: iso(started_at),
      last_heartbeat_at: iso(seenAt),
    }
  })
}

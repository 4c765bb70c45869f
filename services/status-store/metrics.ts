// The status store's own metrics: events applied and skipped, the states tasks entered, the time tasks spent
// waiting, running and in all, commit durations and queries answered.
import type { StatusQuery, TaskStatus } from "../../shared/contracts.ts"
import { Counter, Gauge, Histogram, type ServiceMetrics } from "../../shared/metrics.ts"
import { type Applied, enteredStatus, latencyOf } from "./dashboard.ts"

const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
]
const COMMIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]

export class StoreMetrics {
  private readonly applied: Counter<"state">
  private readonly duplicates: Counter
  private readonly entered: Counter<"status">
  private readonly latency: Histogram<"phase">
  readonly commitSeconds: Histogram
  private readonly queries: Counter<"op">
  private readonly expired: Counter
  readonly expirySeconds: Histogram

  constructor({ registry }: ServiceMetrics, statusCounts: () => Promise<Record<TaskStatus, number>>) {
    const registers = [registry]
    new Gauge({
      name: "polarity_tasks",
      help: "Tasks in the store, by status.",
      labelNames: ["status"],
      registers,
      async collect() {
        for (const [status, tasks] of Object.entries(await statusCounts())) this.set({ status }, tasks)
      },
    })
    this.applied = new Counter({
      name: "polarity_events_applied_total",
      help: "Task events applied to the database, by the state they report.",
      labelNames: ["state"],
      registers,
    })
    this.duplicates = new Counter({
      name: "polarity_events_duplicate_total",
      help: "Task events skipped because the inbox had them already (redelivered or sent twice).",
      registers,
    })
    this.entered = new Counter({
      name: "polarity_task_status_changes_total",
      help: "Times a task entered a status, as recorded (an outranked or late event changes nothing).",
      labelNames: ["status"],
      registers,
    })
    this.latency = new Histogram({
      name: "polarity_task_latency_seconds",
      help: "Of tasks that ended SUCCESS or FAILURE: submitted to started (wait), started to finished (run), submitted to finished (total).",
      labelNames: ["phase"],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.commitSeconds = new Histogram({
      name: "polarity_event_commit_duration_seconds",
      help: "How long one transaction of events took to commit.",
      buckets: COMMIT_BUCKETS,
      registers,
    })
    this.queries = new Counter({
      name: "polarity_status_queries_total",
      help: "Status queries answered, by operation.",
      labelNames: ["op"],
      registers,
    })
    this.expired = new Counter({
      name: "polarity_results_expired_total",
      help: "Final tasks deleted, with their timelines, once older than RESULT_EXPIRES.",
      registers,
    })
    this.expirySeconds = new Histogram({
      name: "polarity_result_expiry_duration_seconds",
      help: "How long one batch of expired results took to delete (and, on SQLite, to give back its pages).",
      buckets: COMMIT_BUCKETS,
      registers,
    })
  }

  resultsExpired(tasks: number): void {
    if (tasks > 0) this.expired.inc(tasks)
  }

  /** After a commit: `received` events, of which `applied` were new. */
  /** Counted per commit rather than per event: a busy store applies thousands of events a second. */
  eventsCommitted(received: number, applied: Applied[]): void {
    if (received > applied.length) this.duplicates.inc(received - applied.length)
    const states = new Map<TaskStatus, number>()
    const entered = new Map<TaskStatus, number>()
    for (const change of applied) {
      states.set(change.event.state, (states.get(change.event.state) ?? 0) + 1)
      const status = enteredStatus(change)
      if (status) entered.set(status, (entered.get(status) ?? 0) + 1)
      for (const [phase, ms] of Object.entries(latencyOf(change))) this.latency.observe({ phase }, ms / 1000)
    }
    for (const [state, n] of states) this.applied.inc({ state }, n)
    for (const [status, n] of entered) this.entered.inc({ status }, n)
  }

  queryAnswered(op: StatusQuery["op"]): void {
    this.queries.inc({ op })
  }
}

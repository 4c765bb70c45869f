// The worker's own metrics: tasks started and how each attempt ended, attempt durations, tasks in hand. The
// totals also go out in the worker's heartbeats.
import type { TaskEvent, TaskKind } from "../../shared/contracts.ts"
import { Counter, Gauge, Histogram, type ServiceMetrics } from "../../shared/metrics.ts"

const RUN_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
const LATENESS_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5, 10, 30, 60, 300]

export class WorkerMetrics {
  /** Since this process started, for its heartbeats. */
  readonly totals = { succeeded: 0, failed: 0, retried: 0 }
  private readonly started: Counter<"kind">
  private readonly ended: Partial<Record<TaskEvent["state"], Counter<"kind">>>
  private readonly skipped: Counter<"kind">
  private readonly terminated: Counter<"kind">
  private readonly rateLimitWait: Counter<"kind">
  private readonly progressReports: Counter
  private readonly runSeconds: Histogram<"kind" | "outcome">
  private readonly latenessSeconds: Histogram<"kind">

  constructor({ registry }: ServiceMetrics, inHand: () => number) {
    const registers = [registry]
    const counter = (name: string, help: string) =>
      new Counter({ name, help, labelNames: ["kind"] as const, registers })
    this.started = counter("polarity_tasks_started_total", "Attempts started, by task kind.")
    this.ended = {
      SUCCESS: counter("polarity_tasks_succeeded_total", "Attempts that succeeded, by task kind."),
      FAILURE: counter(
        "polarity_tasks_failed_total",
        "Tasks that ended FAILURE here: out of retries, non-retryable, or a crasher caught in quarantine.",
      ),
      RETRY: counter(
        "polarity_tasks_retried_total",
        "Attempts that failed and were sent to wait for a retry.",
      ),
      EXPIRED: counter("polarity_tasks_expired_total", "Tasks taken after their deadline, ended unrun."),
    }
    this.skipped = counter("polarity_tasks_revoked_skipped_total", "Revoked tasks dropped unrun.")
    this.terminated = counter(
      "polarity_tasks_terminated_total",
      "Running attempts aborted by a terminate (DELETE ?terminate=true), by task kind.",
    )
    this.rateLimitWait = new Counter({
      name: "polarity_rate_limit_wait_seconds_total",
      help: "Time tasks waited in hand for their kind's rate limit (RATE_LIMITS), by task kind.",
      labelNames: ["kind"] as const,
      registers,
    })
    this.progressReports = new Counter({
      name: "polarity_progress_reports_total",
      help: "Progress reports of running tasks published (at most one per task per PROGRESS_INTERVAL_MS).",
      registers,
    })
    this.runSeconds = new Histogram({
      name: "polarity_task_run_duration_seconds",
      help: "How long an attempt ran, by task kind and outcome (SUCCESS, RETRY, FAILURE).",
      labelNames: ["kind", "outcome"],
      buckets: RUN_BUCKETS,
      registers,
    })
    this.latenessSeconds = new Histogram({
      name: "polarity_delayed_task_lateness_seconds",
      help: "How long after its eta a delayed task's first attempt started, by task kind.",
      labelNames: ["kind"],
      buckets: LATENESS_BUCKETS,
      registers,
    })
    new Gauge({
      name: "polarity_tasks_in_hand",
      help: "Tasks delivered to this worker and not yet acked.",
      registers,
      collect() {
        this.set(inHand())
      },
    })
  }

  taskStarted(kind: TaskKind): void {
    this.started.inc({ kind })
  }

  delayedTaskStarted(kind: TaskKind, latenessMs: number): void {
    this.latenessSeconds.observe({ kind }, Math.max(0, latenessMs) / 1000)
  }

  /** How an attempt ended, or how a task ended without one (EXPIRED, or FAILURE after too many crashes). */
  taskEnded(kind: TaskKind, event: TaskEvent): void {
    this.ended[event.state]?.inc({ kind })
    if (event.state === "SUCCESS") this.totals.succeeded++
    if (event.state === "FAILURE") this.totals.failed++
    if (event.state === "RETRY") this.totals.retried++
    if ("started_at" in event && event.started_at != null) {
      this.runSeconds.observe({ kind, outcome: event.state }, (event.at - event.started_at) / 1000)
    }
  }

  taskSkipped(kind: TaskKind): void {
    this.skipped.inc({ kind })
  }

  /** A terminated attempt ended: its outcome is dropped, since the store holds the task REVOKED. */
  taskTerminated(kind: TaskKind): void {
    this.terminated.inc({ kind })
  }

  rateLimited(kind: TaskKind, waitMs: number): void {
    this.rateLimitWait.inc({ kind }, waitMs / 1000)
  }

  progressReported(): void {
    this.progressReports.inc()
  }
}

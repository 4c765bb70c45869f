// The gateway's task counters: tasks published to a work queue, as new submissions or as new runs of old ones.
import type { Task } from "../../shared/contracts.ts"
import { Counter, type ServiceMetrics } from "../../shared/metrics.ts"

export class TaskMetrics {
  private readonly submitted: Counter<"kind">
  private readonly rerun: Counter<"kind">

  constructor({ registry }: ServiceMetrics) {
    const registers = [registry]
    this.submitted = new Counter({
      name: "polarity_tasks_submitted_total",
      help: "Tasks accepted and published to a work queue, by task kind (a batch counts each of its tasks).",
      labelNames: ["kind"],
      registers,
    })
    this.rerun = new Counter({
      name: "polarity_tasks_rerun_total",
      help: "Tasks published again as a new run (dead-letter replays and retries), by task kind.",
      labelNames: ["kind"],
      registers,
    })
  }

  /** A task whose message the broker has confirmed. */
  published(task: Task): void {
    ;(task.run === 1 ? this.submitted : this.rerun).inc({ kind: task.kind })
  }
}

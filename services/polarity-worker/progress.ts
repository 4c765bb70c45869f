// Progress reports of running attempts, throttled: a task may report after every step of its work, and at most
// one report per task goes out each PROGRESS_INTERVAL_MS, the latest. An attempt that ends within the interval
// publishes none, so that short tasks (nearly all of them) cost nothing; a report still held when the attempt
// ends is dropped, since the outcome says more.
import * as v from "valibot"
import type { Broker } from "../../shared/amqp.ts"
import {
  explainIssues,
  MessageType,
  Progress,
  type Task,
  type TaskProgress,
  type TaskProgressBatch,
} from "../../shared/contracts.ts"
import { CoalescingPublisher } from "../../shared/events.ts"
import type { Logger } from "../../shared/log.ts"
import { TASK_PROGRESS_KEY } from "../../shared/topology.ts"

/** What task code calls; a report that breaks the contract is a bug in the task, so it throws. */
export type ReportProgress = (progress: Progress) => void

export interface AttemptProgress {
  report: ReportProgress
  /** The attempt is over: drop a report still held back. */
  close(): void
}

export class ProgressReports {
  private readonly reports: CoalescingPublisher<TaskProgress>

  constructor(
    broker: Broker,
    private readonly intervalMs: number,
    private readonly log: Logger,
    /** Told of each report that goes out, for the metrics. */
    private readonly onSent: () => void,
  ) {
    // Transient: a report lost with the broker is superseded by the next, or by the outcome.
    this.reports = new CoalescingPublisher(broker, {
      exchange: broker.names.eventsExchange,
      type: MessageType.taskProgress,
      body: (reports): TaskProgressBatch => ({ reports }),
      deliveryMode: 1,
    })
  }

  /** A reporter for one attempt of `task`, which started at `startedAt`. */
  forAttempt(task: Task, startedAt: number): AttemptProgress {
    let lastSentAt = startedAt
    let held: Progress | undefined
    let timer: ReturnType<typeof setTimeout> | undefined
    let closed = false
    const send = (progress: Progress) => {
      lastSentAt = Date.now()
      held = undefined
      this.onSent()
      const report = { task_id: task.task_id, attempt: task.attempt, run: task.run, at: lastSentAt, progress }
      this.reports
        .publish(TASK_PROGRESS_KEY, report)
        .catch((err: Error) => this.log.debug("progress report not sent", { err: err.message }))
    }
    return {
      report: (raw) => {
        const checked = v.safeParse(Progress, raw)
        if (!checked.success) throw new TypeError(`progress report: ${explainIssues(checked.issues)}`)
        if (closed) return
        const wait = lastSentAt + this.intervalMs - Date.now()
        if (wait <= 0 && timer === undefined) return send(checked.output)
        held = checked.output
        timer ??= setTimeout(() => {
          timer = undefined
          if (held && !closed) send(held)
        }, wait)
      },
      close: () => {
        closed = true
        clearTimeout(timer)
      },
    }
  }
}

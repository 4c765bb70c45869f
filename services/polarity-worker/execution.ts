// Running one attempt of a task: its kind's work under the attempt's time limit and abort signal, reporting its
// progress, and what follows from the way it ended (SUCCESS, RETRY with a delay, or FAILURE).
import { setTimeout as sleep } from "node:timers/promises"
import {
  type DocumentTask,
  type FlakyTask,
  MAX_ATTEMPT,
  MAX_ERROR_LENGTH,
  type PolarityReport,
  type ReportTask,
  type Task,
  type TaskEvent,
  type TaskResult,
} from "../../shared/contracts.ts"
import { type RetryPolicy, retryDelayMs } from "../../shared/topology.ts"
import type { ReportProgress } from "./progress.ts"
import { scoreDocument, scoreReview } from "./scoring.ts"

/** Thrown by a task to fail at once, skipping the retries (BullMQ's UnrecoverableError). */
export class NonRetryableError extends Error {
  override name = "NonRetryableError"
}

/** An attempt ran past its `time_limit`: a failure like any other, so it goes through the retry policy. */
export class TimeLimitExceeded extends Error {
  override name = "TimeLimitExceeded"
}

/** The reason a terminated attempt's signal is aborted with: what it reports afterwards is dropped. */
export class TaskTerminated extends Error {
  override name = "TaskTerminated"
}

/**
 * What one attempt's code gets: its time limit, its abort signal (a terminate), and a way to report progress.
 * JavaScript cannot stop a function from outside, so the limit and the signal act where the task lets them:
 * `race` abandons an asynchronous wait, `check` is called by a task between steps of its work, and `finish`
 * fails an attempt that came back after its limit with nothing in between.
 */
export class AttemptContext {
  private readonly deadline: number

  constructor(
    private readonly limitMs: number | undefined,
    startedAt: number,
    readonly signal: AbortSignal,
    readonly reportProgress: ReportProgress,
  ) {
    this.deadline = limitMs === undefined ? Number.POSITIVE_INFINITY : startedAt + limitMs
  }

  private exceeded(): TimeLimitExceeded {
    return new TimeLimitExceeded(`the attempt ran past its time limit of ${this.limitMs} ms`)
  }

  check(): void {
    this.signal.throwIfAborted()
    if (Date.now() > this.deadline) throw this.exceeded()
  }

  /** `work`, abandoned at the time limit or when the attempt is aborted. */
  async race<T>(work: Promise<T>): Promise<T> {
    this.check()
    const { promise: stopped, reject } = Promise.withResolvers<never>()
    const timer =
      this.deadline === Number.POSITIVE_INFINITY
        ? undefined
        : setTimeout(() => reject(this.exceeded()), Math.max(0, this.deadline - Date.now()))
    const onAbort = () => reject(this.signal.reason)
    this.signal.addEventListener("abort", onAbort, { once: true })
    return Promise.race([work, stopped]).finally(() => {
      clearTimeout(timer)
      this.signal.removeEventListener("abort", onAbort)
    })
  }

  finish<T>(result: T): T {
    this.check()
    return result
  }
}

/** What the worker lets tasks do beyond their own work. */
export interface ExecutionOptions {
  /** The polarity report over [from, to) of the tasks of `owner` (all when absent), as the status store adds it up. */
  report: (from: number, to: number, owner: string | undefined, timeoutMs: number) => Promise<PolarityReport>
  /** Run `test:flaky` (ENABLE_TEST_TASKS). */
  testTasks: boolean
  /** Test only: a wait before each sentence of a document, so that a test sees a slow one report progress. */
  sentenceDelayMs: number
}

async function runFlakyTask(task: FlakyTask, enabled: boolean, context: AttemptContext): Promise<TaskResult> {
  if (!enabled)
    throw new NonRetryableError("test tasks are disabled on this worker (ENABLE_TEST_TASKS=false)")
  if (task.crash_worker) crash()
  if (task.sleep_ms > 0) await (task.ignore_abort ? sleep(task.sleep_ms) : context.race(sleep(task.sleep_ms)))
  if (task.attempt <= task.fail_times) {
    const message = `planned failure on attempt ${task.attempt} of the first ${task.fail_times}`
    throw task.non_retryable ? new NonRetryableError(message) : new Error(message)
  }
  return { succeeded_on_attempt: task.attempt }
}

/** A document reports how many of its sentences are scored, and stops between two when it must. */
function runDocument(task: DocumentTask, options: ExecutionOptions, context: AttemptContext) {
  return scoreDocument(task.document, task.language, async (done, total) => {
    context.check()
    context.reportProgress({ done, total })
    if (options.sentenceDelayMs > 0) await context.race(sleep(options.sentenceDelayMs))
  })
}

/** The test task that kills its worker once, after its outcome is confirmed and before the ack. */
export function crashesBeforeAck(task: unknown): boolean {
  return (
    (task as Partial<FlakyTask>).kind === "test:flaky" &&
    (task as Partial<FlakyTask>).crash_before_ack === true
  )
}

/** A real crash, not an exception: nothing is cleaned up and the tasks in hand stay unacked. */
export function crash(): never {
  process.kill(process.pid, "SIGKILL")
  throw new Error("unreachable: SIGKILL was sent")
}

const WINDOW_MS = { hour: 3_600_000, day: 86_400_000 } as const
/** How long a report may take when its task has no time limit of its own. */
const REPORT_TIMEOUT_MS = 60_000

/** A report's window: the hour or day before its submission (so a retry covers the same one), or its range. */
function runReport(
  task: ReportTask,
  options: ExecutionOptions,
  context: AttemptContext,
): Promise<PolarityReport> {
  const to = task.window ? task.submitted_at : (task.to ?? task.submitted_at)
  const from = task.window ? to - WINDOW_MS[task.window] : (task.from ?? to)
  return context.race(options.report(from, to, task.owner, task.time_limit_ms ?? REPORT_TIMEOUT_MS))
}

export async function execute(
  task: Task,
  options: ExecutionOptions,
  context: AttemptContext,
): Promise<TaskResult> {
  switch (task.kind) {
    case "polarity:review":
      return context.finish(scoreReview(task.review, task.language))
    case "document:sentences":
      return context.finish(await runDocument(task, options, context))
    case "test:flaky":
      return context.finish(await runFlakyTask(task, options.testTasks, context))
    case "report:polarity":
      return context.finish(await runReport(task, options, context))
  }
}

/** SUCCESS, or after a failure: RETRY while the run has retries left and the error allows it, else FAILURE. */
export async function outcomeOf(
  task: Task,
  startedAt: number,
  run: () => Promise<TaskResult>,
  policy: RetryPolicy,
): Promise<TaskEvent> {
  const base = { task_id: task.task_id, attempt: task.attempt, run: task.run, started_at: startedAt }
  try {
    const result = await run()
    return { ...base, state: "SUCCESS", at: Date.now(), result }
  } catch (err) {
    const error = (err instanceof Error ? `${err.name}: ${err.message}` : String(err)).slice(
      0,
      MAX_ERROR_LENGTH,
    )
    const retry = task.attempt - task.run + 1
    const outOfAttempts = retry > policy.maxRetries || task.attempt >= MAX_ATTEMPT
    if (err instanceof NonRetryableError || outOfAttempts) {
      return { ...base, state: "FAILURE", at: Date.now(), error }
    }
    // Equal jitter: half the tier's delay plus a random half, so retries of a burst spread out.
    const tierMs = retryDelayMs(policy, retry)
    const delayMs = Math.round(tierMs / 2 + (Math.random() * tierMs) / 2)
    // One clock reading, so that retry_at - at is exactly the planned delay.
    const at = Date.now()
    return { ...base, state: "RETRY", at, error, retry_at: at + delayMs }
  }
}

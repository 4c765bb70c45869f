// Running one attempt of a task: its kind's work under the attempt's time limit, and what follows from the
// way it ended (SUCCESS, RETRY with a delay, or FAILURE).
import { setTimeout as sleep } from "node:timers/promises"
import type { FlakyTask, Task, TaskEvent, TaskResult } from "../../shared/contracts.ts"
import { type RetryPolicy, retryDelayMs } from "../../shared/topology.ts"
import { scoreDocument, scoreReview } from "./scoring.ts"

/** Thrown by a task to fail at once, skipping the retries (BullMQ's UnrecoverableError). */
export class NonRetryableError extends Error {
  override name = "NonRetryableError"
}

/** An attempt ran past its `time_limit`: a failure like any other, so it goes through the retry policy. */
export class TimeLimitExceeded extends Error {
  override name = "TimeLimitExceeded"
}

/**
 * An attempt's time limit. JavaScript cannot stop a function from outside, so the limit is enforced where the
 * task lets it be: `race` abandons an asynchronous wait at the limit, `check` is called by a task between steps
 * of its work, and `finish` fails an attempt that came back after the limit with nothing in between.
 */
export class AttemptLimit {
  private readonly deadline: number

  constructor(
    private readonly limitMs: number | undefined,
    startedAt: number,
  ) {
    this.deadline = limitMs === undefined ? Number.POSITIVE_INFINITY : startedAt + limitMs
  }

  private exceeded(): TimeLimitExceeded {
    return new TimeLimitExceeded(`the attempt ran past its time limit of ${this.limitMs} ms`)
  }

  check(): void {
    if (Date.now() > this.deadline) throw this.exceeded()
  }

  async race<T>(work: Promise<T>): Promise<T> {
    if (this.deadline === Number.POSITIVE_INFINITY) return work
    let timer: ReturnType<typeof setTimeout> | undefined
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.exceeded()), Math.max(0, this.deadline - Date.now()))
    })
    return Promise.race([work, limit]).finally(() => clearTimeout(timer))
  }

  finish<T>(result: T): T {
    this.check()
    return result
  }
}

async function runFlakyTask(task: FlakyTask, enabled: boolean, limit: AttemptLimit): Promise<TaskResult> {
  if (!enabled)
    throw new NonRetryableError("test tasks are disabled on this worker (ENABLE_TEST_TASKS=false)")
  if (task.crash_worker) crash()
  if (task.sleep_ms > 0) await limit.race(sleep(task.sleep_ms))
  if (task.attempt <= task.fail_times) {
    const message = `planned failure on attempt ${task.attempt} of the first ${task.fail_times}`
    throw task.non_retryable ? new NonRetryableError(message) : new Error(message)
  }
  return { succeeded_on_attempt: task.attempt }
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

export async function execute(task: Task, testTasks: boolean, limit: AttemptLimit): Promise<TaskResult> {
  switch (task.kind) {
    case "polarity:review":
      return limit.finish(scoreReview(task.review, task.language))
    case "document:sentences":
      return limit.finish(scoreDocument(task.document, task.language, limit))
    case "test:flaky":
      return limit.finish(await runFlakyTask(task, testTasks, limit))
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
    const error = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
    const retry = task.attempt - task.run + 1
    if (err instanceof NonRetryableError || retry > policy.maxRetries) {
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

// A task from what a client (or a schedule) asked for: the fields every submission shares, and its PENDING event.
// The gateway builds tasks from requests, the status store from the schedules it fires.
import type * as v from "valibot"
import type { Deadlines, PendingEvent, Task } from "./contracts.ts"

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never
type TaskBaseFields = Pick<
  Task,
  "task_id" | "submitted_at" | "attempt" | "run" | "expires_at" | "time_limit_ms" | "eta"
>
/** A task as asked for: its kind, its own fields and its deadlines, before it has an id. */
export type TaskFields = DistributiveOmit<Task, keyof TaskBaseFields> & Deadlines
export type PendingGroup = NonNullable<v.InferOutput<typeof PendingEvent>["group"]>

/**
 * The first run of a task: deadlines in seconds become an instant and milliseconds. A deadline counts from when
 * the task is due: its eta, or now.
 */
export function buildTask(
  { expires_in, time_limit, ...fields }: TaskFields,
  { taskId, now, eta }: { taskId: string; now: number; eta?: number | undefined },
): Task {
  return {
    ...fields,
    task_id: taskId,
    submitted_at: now,
    attempt: 1,
    run: 1,
    ...(eta !== undefined && { eta }),
    ...(expires_in !== undefined && { expires_at: (eta ?? now) + Math.round(expires_in * 1000) }),
    ...(time_limit !== undefined && { time_limit_ms: Math.max(1, Math.round(time_limit * 1000)) }),
  } as Task
}

/** What the task was asked to do, as the status store keeps it for display. */
export function inputOf(task: Task): Record<string, unknown> {
  const { task_id: _id, kind: _kind, submitted_at: _at, attempt: _attempt, run: _run, ...input } = task
  return input
}

/**
 * The PENDING event of a task's run (attempt = run - 1): what the status store learns the task from. A new
 * submission names its owner (the API key's name); a replay's or a retry's names none.
 */
export function pendingEvent(
  task: Task,
  owner: string | null,
  group?: PendingGroup,
): v.InferOutput<typeof PendingEvent> {
  return {
    state: "PENDING",
    task_id: task.task_id,
    attempt: task.run - 1,
    run: task.run,
    // A first run was submitted when it was accepted, before it was published; a replay, now.
    at: task.run === 1 ? task.submitted_at : Date.now(),
    kind: task.kind,
    input: inputOf(task),
    ...(owner !== null && { owner }),
    ...(task.eta !== undefined && { eta: task.eta }),
    ...(group && { group }),
  }
}

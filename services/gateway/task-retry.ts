// POST /polarities/tasks/{id}/retry: a task that ended without succeeding (FAILURE, EXPIRED, REVOKED) runs again
// as a new run, as a dead-letter replay would start one, from the input the status store kept.
import type { Context } from "hono"
import * as v from "valibot"
import { Task, type TaskStatus } from "../../shared/contracts.ts"
import { Problem } from "../../shared/http.ts"
import { callerOf, ownerFilter } from "./access.ts"
import type { Route } from "./openapi.ts"
import { parseTaskId, TaskIdParam } from "./requests.ts"
import type { StatusStoreClient } from "./status-store-client.ts"

export const RETRYABLE_STATUSES: ReadonlySet<TaskStatus> = new Set(["FAILURE", "EXPIRED", "REVOKED"])

/**
 * The task of the new run. Its number follows every attempt and run so far, so that its events outrank the old
 * run's final state. The old `expires_at` and `eta` are dropped: the deadline and the delay were the
 * submission's, and a retry is an operator's new decision, run now; `time_limit` is kept.
 */
export async function taskToRetry(
  store: StatusStoreClient,
  taskId: string,
  owner: string | undefined,
): Promise<Task> {
  const detail = await store.taskDetail(taskId, owner)
  if (!detail) throw new Problem(404, `no task with id ${taskId}`)
  const { task, input, run } = detail
  if (!RETRYABLE_STATUSES.has(task.status)) {
    throw new Problem(
      409,
      `task ${taskId} is ${task.status}; only a task that ended FAILURE, EXPIRED or REVOKED can be retried`,
    )
  }
  const nextRun = Math.max(task.attempts, run) + 1
  const { expires_at: _deadline, eta: _eta, ...fields } = input ?? {}
  const submittedAt = task.submitted_at ? Date.parse(task.submitted_at) : Date.now()
  const candidate = {
    ...fields,
    kind: task.kind,
    task_id: taskId,
    submitted_at: submittedAt,
    attempt: nextRun,
    run: nextRun,
  }
  const parsed = v.safeParse(Task, candidate)
  if (!parsed.success)
    throw new Problem(409, `task ${taskId} cannot be retried: the store does not hold its input`)
  return parsed.output
}

/**
 * Publish a new run of a task the store holds, and resolve once the store has applied its PENDING: the store
 * answers a known task from its row, so without the catch-up (a barrier behind the confirmed PENDING) a GET right
 * after the 202 could still read the old run's final state, and a client waiting for the task to be final would
 * stop at once. One barrier per retry or replay, an operator's action.
 */
export function publishNewRun(store: StatusStoreClient, publishTask: (task: Task) => Promise<void>) {
  return async (task: Task): Promise<void> => {
    await publishTask(task)
    await store.getTask(task.task_id, { catchUp: true })
  }
}

/** The retry as a handler: `/polarities/tasks/{id}/retry`, and the dashboard's Retry button. */
export function retryTask(store: StatusStoreClient, publishTask: (task: Task) => Promise<void>) {
  return async (c: Context) => {
    const taskId = parseTaskId(c.req.param("taskId") ?? "")
    await publishTask(await taskToRetry(store, taskId, ownerFilter(callerOf(c))))
    return c.json({ task_id: taskId, status: "PENDING" }, 202, { location: `/polarities/tasks/${taskId}` })
  }
}

export function retryRoute(route: Route<"TaskAccepted">, retry: ReturnType<typeof retryTask>): void {
  route(
    "post",
    "/polarities/tasks/:taskId/retry",
    {
      summary: "Run a task that ended FAILURE, EXPIRED or REVOKED again, as a new run",
      description:
        "Publishes the task again from the input the status store kept, as a new run (as a dead-letter replay does): its attempts go on counting, it gets MAX_RETRIES retries again, and its events outrank the old run's final state. A deadline (`expires_in`) and a delay (`countdown`, `eta`) are dropped: it runs now; a `time_limit` is kept. Two retries at the same moment may both publish; the task then runs twice and its record converges.",
      tag: "tasks",
      path: { taskId: TaskIdParam },
      responses: {
        202: {
          description: "Published again; the task is PENDING",
          schema: "TaskAccepted",
          headers: { location: "The task's URL: `/polarities/tasks/{task_id}`" },
        },
      },
      problems: [404, 409, 410, 503],
    },
    retry,
  )
}

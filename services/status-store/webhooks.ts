// Completion webhooks as the status store keeps them, whatever the backend: a delivery is due when a task with a
// callback_url enters a final state (once per run: a retried task that ends again is delivered again), it is
// recorded in the transaction that applied the event (an outbox: a crash cannot lose it), then published to the
// webhook queue for a worker to POST; the workers' attempts come back as events and join the task's timeline.
import { FINAL_STATUSES, type WebhookAttempt } from "../../shared/contracts.ts"
import { currentRun, type TaskRow, toRecord } from "./task-state.ts"

export interface DeliveryRow {
  delivery_id: string
  task_id: string
  url: string
  /** The task's record when it became final, as JSON: the body POSTed. */
  record: string
  created_at: number
}

export interface WebhookStore {
  /** Deliveries not yet published to the webhook queue, created before `createdBefore`, oldest first. */
  unqueued(createdBefore: number, limit: number): Promise<DeliveryRow[]>
  markQueued(deliveryId: string, at: number): Promise<void>
  /** Attempts as the workers report them, each once. */
  recordAttempts(attempts: WebhookAttempt[]): Promise<void>
}

/** One delivery per run of a task: the id receivers de-duplicate by, whichever replica or retry sent it. */
export function deliveryId(row: Pick<TaskRow, "task_id" | "rank">): string {
  return `${row.task_id}.${Math.max(1, currentRun(row))}`
}

/** The delivery that `after` makes due, if any: the task has a callback and just became final (or its URL came late). */
export function dueDelivery(before: TaskRow | null, after: TaskRow, now: number): DeliveryRow | null {
  if (after.callback_url === null || !FINAL_STATUSES.has(after.status)) return null
  const wasDue =
    before !== null &&
    before.callback_url !== null &&
    FINAL_STATUSES.has(before.status) &&
    currentRun(before) === currentRun(after)
  if (wasDue) return null
  return {
    delivery_id: deliveryId(after),
    task_id: after.task_id,
    url: after.callback_url,
    record: JSON.stringify(toRecord(after)),
    created_at: now,
  }
}

const iso = (at: number | null) => (at === null ? null : new Date(at).toISOString())

/** A task's webhook attempts as its detail lists them, by time. */
export function toWebhookEntries(attempts: WebhookAttempt[]) {
  return attempts
    .toSorted((a, b) => a.at - b.at || a.attempt - b.attempt)
    .map((attempt) => ({
      at: new Date(attempt.at).toISOString(),
      webhook: {
        delivery_id: attempt.delivery_id,
        attempt: attempt.attempt,
        outcome: attempt.outcome,
        status_code: attempt.status_code,
        error: attempt.error,
        next_attempt_at: iso(attempt.next_attempt_at),
      },
    }))
}

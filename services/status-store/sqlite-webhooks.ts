// The webhook deliveries and attempts on SQLite (the tables of sqlite.ts's migration 10).
import type { WebhookAttempt } from "../../shared/contracts.ts"
import type { SqliteDatabase } from "../../shared/runtime.ts"
import type { DeliveryRow, WebhookStore } from "./webhooks.ts"

export function sqliteWebhooks(db: SqliteDatabase) {
  const insertDelivery = db.query<void, [string, string, string, string, number]>(
    "INSERT OR IGNORE INTO webhook_deliveries (delivery_id, task_id, url, record, created_at) VALUES (?, ?, ?, ?, ?)",
  )
  const selectUnqueued = db.query<DeliveryRow, [number, number]>(
    `SELECT delivery_id, task_id, url, record, created_at FROM webhook_deliveries
     WHERE queued_at IS NULL AND created_at < ? ORDER BY created_at LIMIT ?`,
  )
  const markQueued = db.query<void, [number, string]>(
    "UPDATE webhook_deliveries SET queued_at = ? WHERE delivery_id = ?",
  )
  // Not for a task the store no longer holds: an attempt reported after its task's result expired.
  const insertAttempt = db.query<void, Record<string, string | number | null>>(
    `INSERT OR IGNORE INTO webhook_attempts SELECT $delivery_id, $attempt, $task_id, $at, $outcome, $status_code,
       $error, $next_attempt_at WHERE EXISTS (SELECT 1 FROM tasks WHERE task_id = $task_id)`,
  )
  const attemptsOfTask = db.query<WebhookAttempt, [string]>(
    "SELECT * FROM webhook_attempts WHERE task_id = ? ORDER BY at, attempt",
  )
  const recordAttempts = db.transaction((attempts: WebhookAttempt[]) => {
    for (const attempt of attempts) insertAttempt.run({ ...attempt })
  })
  const store: WebhookStore = {
    unqueued: async (createdBefore, limit) => selectUnqueued.all(createdBefore, limit),
    markQueued: async (deliveryId, at) => {
      markQueued.run(at, deliveryId)
    },
    recordAttempts: async (attempts) => recordAttempts(attempts),
  }
  return {
    store,
    /** Inside the transaction that applied the events that made it due. */
    insertDelivery: (delivery: DeliveryRow) =>
      insertDelivery.run(
        delivery.delivery_id,
        delivery.task_id,
        delivery.url,
        delivery.record,
        delivery.created_at,
      ),
    attemptsOfTask: (taskId: string) => attemptsOfTask.all(taskId),
  }
}

// The webhook deliveries and attempts on PostgreSQL (postgres-schema.ts's tables); deliveries are written by
// postgres.ts in the transaction that made them due.
import type { WebhookAttempt } from "../../shared/contracts.ts"
import { asJson, type Sql } from "./postgres-schema.ts"
import type { DeliveryRow, WebhookStore } from "./webhooks.ts"

export function postgresWebhooks(sql: Sql) {
  const store: WebhookStore = {
    async unqueued(createdBefore, limit) {
      // Infinity is no BIGINT: "every delivery" is no bound at all.
      const before = Number.isFinite(createdBefore) ? sql`AND created_at < ${createdBefore}` : sql``
      return [
        ...(await sql<
          DeliveryRow[]
        >`SELECT delivery_id, task_id, url, record, created_at FROM webhook_deliveries
          WHERE queued_at IS NULL ${before} ORDER BY created_at LIMIT ${limit}`),
      ]
    },
    async markQueued(deliveryId, at) {
      await sql`UPDATE webhook_deliveries SET queued_at = ${at} WHERE delivery_id = ${deliveryId}`
    },
    async recordAttempts(attempts) {
      if (attempts.length === 0) return
      // Not for a task the store no longer holds: an attempt reported after its task's result expired.
      await sql`INSERT INTO webhook_attempts
        SELECT * FROM json_populate_recordset(NULL::webhook_attempts, ${asJson(attempts)}::text::json) AS attempt
        WHERE EXISTS (SELECT 1 FROM tasks WHERE tasks.task_id = attempt.task_id)
        ON CONFLICT DO NOTHING`
    },
  }
  return {
    store,
    attemptsOfTask: async (taskId: string) => [
      ...(await sql<
        WebhookAttempt[]
      >`SELECT * FROM webhook_attempts WHERE task_id = ${taskId} ORDER BY at, attempt`),
    ],
  }
}

// The operator's side of the dead-letter queues: look at the oldest messages without taking them, and replay
// failed tasks as new runs.
import { type Broker, checkTask, decodeMessage, PoisonMessage } from "../../shared/amqp.ts"
import { type Task, TaskBatch } from "../../shared/contracts.ts"
import type { Logger } from "../../shared/log.ts"

export class DeadLetters {
  constructor(
    private readonly broker: Broker,
    /** Publishes a task and its PENDING event, both confirmed. */
    private readonly publishTask: (task: Task) => Promise<void>,
    private readonly log: Logger,
  ) {}

  /** Move up to `limit` tasks out of the failed dead-letter queue into a new run each. */
  async replayFailed(limit: number): Promise<string[]> {
    const { broker, log } = this
    const { names } = broker
    const replayed: string[] = []
    while (replayed.length < limit) {
      const msg = await broker.get(names.failedQueue)
      if (!msg) break
      let task: Task
      try {
        // The worker dead-letters a failed task alone, in a message of its own.
        task = checkTask(decodeMessage(msg, TaskBatch, "TaskBatch").tasks[0])
      } catch (err) {
        if (!(err instanceof PoisonMessage)) throw err
        await broker.deadLetter(msg, names.failedQueue, err.message)
        continue
      }
      if (replayed.includes(task.task_id)) {
        // A second copy: a worker killed before its ack reached the broker dead-letters a task twice.
        await msg.ack()
        continue
      }
      const run = task.attempt + 1
      try {
        await this.publishTask({ ...task, attempt: run, run })
        await msg.ack()
      } catch (err) {
        await msg.nack(true).catch(() => {})
        throw err
      }
      log.info("task replayed", { taskId: task.task_id, run })
      replayed.push(task.task_id)
    }
    return replayed
  }

  /** Up to `limit` dead letters from the head of a queue, put back in their order. */
  async peek(queue: string, limit: number) {
    const { broker } = this
    const taken = []
    try {
      for (
        let msg = await broker.get(queue);
        msg;
        msg = taken.length < limit ? await broker.get(queue) : null
      ) {
        taken.push(msg)
      }
      return taken.map((msg) => ({
        message_id: msg.properties.messageId ?? null,
        reason: msg.properties.headers?.["x-dead-letter-reason"] ?? null,
        original_queue: msg.properties.headers?.["x-original-queue"] ?? null,
        dead_lettered_at: msg.properties.headers?.["x-dead-lettered-at"] ?? null,
        body: (msg.bodyString() ?? "").slice(0, 2048),
      }))
    } finally {
      // Nacking the newest first puts every message back at the head in its old order.
      for (const msg of taken.reverse()) await msg.nack(true).catch(() => {})
    }
  }
}

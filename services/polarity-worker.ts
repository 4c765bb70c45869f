// polarity-worker: consumes tasks from the work queue, scores each review with `sentiment` (AFINN),
// and reports STARTED and the outcome as events; a task is acked only after its outcome is confirmed.
import { hostname } from "node:os"
import type { AMQPMessage } from "@cloudamqp/amqp-client"
import { Hono } from "hono"
import Sentiment from "sentiment"
import { Broker, brokerOptions, decodeMessage, PoisonMessage } from "../shared/amqp.ts"
import {
  BrokerEnv,
  booleanVar,
  integerVar,
  loadConfig,
  productionRisks,
  stringVar,
} from "../shared/config.ts"
import { type PolarityResult, Task, type TaskEvent } from "../shared/contracts.ts"
import { EventPublisher } from "../shared/events.ts"
import { healthRoute, installErrorBoundary, runAsProgram, serveApp } from "../shared/http.ts"
import { createLogger } from "../shared/log.ts"

const SERVICE = "polarity-worker"

const WorkerEnv = {
  ...BrokerEnv,
  WORKER_HOST: stringVar("0.0.0.0"),
  WORKER_PORT: integerVar(9001, 0, 65535),
  /** Tasks delivered to this process before it acks any: bounds memory and how much a crash hands back. */
  WORKER_PREFETCH: integerVar(64, 1, 65535),
  /** Publish a STARTED event per task (Celery's task_track_started). */
  TRACK_STARTED: booleanVar(true),
}
export type WorkerConfig = ReturnType<typeof loadWorkerConfig>
export const loadWorkerConfig = (env: Record<string, string | undefined> = process.env) =>
  loadConfig(WorkerEnv, env)

const sentiment = new Sentiment()

export function scoreReview(review: string): PolarityResult {
  const { score, comparative, positive, negative } = sentiment.analyze(review)
  const polarity = score < 0 ? "negative" : score > 0 ? "positive" : "neutral"
  return { score, comparative, polarity, positive, negative }
}

function runTask(task: Task, startedAt: number): TaskEvent {
  const base = { task_id: task.task_id, attempt: task.attempt, started_at: startedAt }
  try {
    return { ...base, state: "SUCCESS", at: Date.now(), result: scoreReview(task.review) }
  } catch (err) {
    const error = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
    return { ...base, state: "FAILURE", at: Date.now(), error }
  }
}

export async function start(config: WorkerConfig) {
  const log = createLogger(SERVICE, config.LOG_LEVEL)
  for (const risk of productionRisks(config.AMQP_URL)) log.warn("production risk", { risk })
  const broker = await Broker.connect(brokerOptions(SERVICE, config, log))
  const events = new EventPublisher(broker)
  const workerName = `${hostname()}:${process.pid}`
  const queue = broker.names.polarityTasksQueue
  let inHand = 0
  let drained: PromiseWithResolvers<void> | undefined

  async function handleTask(msg: AMQPMessage): Promise<void> {
    let task: Task
    try {
      task = decodeMessage(msg, Task, "Task")
    } catch (err) {
      if (!(err instanceof PoisonMessage)) throw err
      return broker.deadLetter(msg, queue, err.message)
    }
    inHand++
    try {
      const startedAt = Date.now()
      if (config.TRACK_STARTED) {
        const started = {
          task_id: task.task_id,
          attempt: task.attempt,
          at: startedAt,
          state: "STARTED",
          worker: workerName,
        } as const
        // Not awaited: the outcome goes out after it on the same channel, and its confirm is what gates the ack.
        events.emit(started).catch(() => {})
      }
      await events.emit(runTask(task, startedAt))
      await msg.ack()
    } catch (err) {
      // The outcome is not confirmed, so the task must run again: hand it back to the queue.
      log.error("outcome not confirmed, requeueing task", { taskId: task.task_id, err })
      await msg.nack(true).catch(() => {})
    } finally {
      inHand--
      if (inHand === 0) drained?.resolve()
    }
  }

  const subscription = await broker.consume(queue, config.WORKER_PREFETCH, handleTask)

  const app = new Hono()
  installErrorBoundary(app, log)
  healthRoute(app, () => broker.connected)
  const server = serveApp(app, config.WORKER_PORT, config.WORKER_HOST)
  log.info("started", { url: server.url, queue, prefetch: config.WORKER_PREFETCH })

  async function stop(): Promise<void> {
    // basic.cancel alone: deliveries already here still run and get acked on this channel before it closes.
    await subscription.channel.basicCancel(subscription.consumerTag).catch(() => {})
    if (inHand > 0) {
      drained = Promise.withResolvers()
      await drained.promise
    }
    await server.stop()
    await broker.close()
    log.info("stopped")
  }
  return { url: server.url, stop }
}

if (import.meta.main) runAsProgram(SERVICE, () => start(loadWorkerConfig()))

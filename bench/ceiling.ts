// The broker's ceiling for our message shape, with our client library and nothing else: a confirmed publish
// into queue A → a consumer on A publishes a confirmed event into queue B and acks A after that confirm →
// a consumer on B acks. The services do the same hops plus HTTP, validation, scoring and SQLite.
import { AMQPSession } from "@cloudamqp/amqp-client"
import type { ReviewTask, TaskEventBatch } from "../shared/contracts.ts"
import { deleteQueuesAndExchanges } from "../tests/broker.ts"
import { forEachConcurrently, reviewText } from "./load.ts"

export interface CeilingOptions {
  amqpUrl: string
  prefix: string
  messages: number
  /**
   * Unacked deliveries on A. The relay acks each after its event's confirm, so a small prefetch makes the
   * figure a round trip, not the broker's rate: 64 measured 6,800–7,400/s here, 1,000 10,500–10,900/s.
   */
  prefetch: number
  /** Publishes awaiting their confirm at once: enough that the figure is the broker's rate, not a round trip. */
  window: number
  /** Review length, as the throughput phase submits them. */
  reviewBytes: number
  /** The type of queues A and B, the services' QUEUE_TYPE. */
  queueType: "classic" | "quorum"
  /** More arguments of queue A, the work queue's (bench/priorities.ts: `x-max-priority`). */
  tasksQueueArguments?: Record<string, unknown>
  /** The priority of each task published into A, by its index. */
  priorityOf?: (index: number) => number | undefined
}

export interface CeilingResult {
  messages: number
  seconds: number
  perSecond: number
  /** Size of the first message into A and into B. */
  taskBytes: number
  eventBytes: number
}

/** The consumer on B takes what the status store would take. */
const EVENTS_PREFETCH = 500
const STALL_TIMEOUT_MS = 30_000

export function ceilingNames(prefix: string) {
  return { tasksQueue: `${prefix}ceiling.tasks`, eventsQueue: `${prefix}ceiling.events` }
}

export function taskBody(index: number, reviewBytes: number): string {
  const task: ReviewTask = {
    task_id: crypto.randomUUID(),
    kind: "polarity:review",
    review: reviewText(index, reviewBytes),
    submitted_at: Date.now(),
    attempt: 1,
    run: 1,
  }
  return JSON.stringify(task)
}

/** A SUCCESS event batch of one, as the worker sends it. */
export function eventBody(taskId: string): string {
  const at = Date.now()
  const batch: TaskEventBatch = {
    events: [
      {
        task_id: taskId,
        attempt: 1,
        at,
        state: "SUCCESS",
        started_at: at,
        result: {
          score: 3,
          comparative: 0.2,
          polarity: "positive",
          positive: ["great"],
          negative: [],
          language: "en",
        },
        run: 1,
      },
    ],
  }
  return JSON.stringify(batch)
}

/** One connection per role, as in the services: publisher, relay (the worker), sink (the store). */
export async function runCeiling(options: CeilingOptions): Promise<CeilingResult> {
  const names = ceilingNames(options.prefix)
  const sessions = await Promise.all(
    ["bench-ceiling-publisher", "bench-ceiling-relay", "bench-ceiling-sink"].map((name) =>
      AMQPSession.connect(options.amqpUrl, { name }),
    ),
  )
  const [publisher, relay, sink] = sessions as [AMQPSession, AMQPSession, AMQPSession]
  let stallCheck: ReturnType<typeof setInterval> | undefined
  try {
    const declared = {
      durable: true,
      autoDelete: false,
      exclusive: false,
      arguments: { "x-queue-type": options.queueType },
    }
    const tasksDeclared = {
      ...declared,
      arguments: { ...declared.arguments, ...options.tasksQueueArguments },
    }
    const tasksIn = await publisher.queue(names.tasksQueue, tasksDeclared)
    const tasksOut = await relay.queue(names.tasksQueue, tasksDeclared)
    const eventsIn = await relay.queue(names.eventsQueue, declared)
    const eventsOut = await sink.queue(names.eventsQueue, declared)

    const done = Promise.withResolvers<void>()
    let consumed = 0
    let consumedBefore = -1
    stallCheck = setInterval(() => {
      if (consumed === consumedBefore) done.reject(new Error(`ceiling stalled at ${consumed} messages`))
      consumedBefore = consumed
    }, STALL_TIMEOUT_MS)
    await eventsOut.subscribe({ prefetch: EVENTS_PREFETCH, manualAck: true }, async (msg) => {
      await msg.ack()
      if (++consumed === options.messages) done.resolve()
    })
    await tasksOut.subscribe({ prefetch: options.prefetch, manualAck: true }, async (msg) => {
      const { task_id } = JSON.parse(msg.bodyString() ?? "{}") as ReviewTask
      await eventsIn.publish(eventBody(task_id))
      await msg.ack()
    })

    const start = performance.now()
    await forEachConcurrently(options.messages, options.window, async (index) => {
      const priority = options.priorityOf?.(index)
      await tasksIn.publish(taskBody(index, options.reviewBytes), priority === undefined ? {} : { priority })
    })
    await done.promise
    const seconds = (performance.now() - start) / 1000
    return {
      messages: options.messages,
      seconds,
      perSecond: options.messages / seconds,
      taskBytes: Buffer.byteLength(taskBody(0, options.reviewBytes)),
      eventBytes: Buffer.byteLength(eventBody(crypto.randomUUID())),
    }
  } finally {
    clearInterval(stallCheck)
    await Promise.allSettled(sessions.map((session) => session.stop()))
    await deleteQueuesAndExchanges({ queues: Object.values(names), exchanges: [] }, options.amqpUrl)
  }
}

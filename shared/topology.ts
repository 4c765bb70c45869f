// Every exchange, queue, binding and routing key, in one place. Each service declares all of it at start
// and after every reconnect (declares are idempotent), so services can start in any order.
import type { AMQPChannel } from "@cloudamqp/amqp-client"
import type { TaskKind, TaskStatus } from "./contracts.ts"

export interface RetryPolicy {
  /** Retries after the first attempt (Celery's max_retries); attempts = maxRetries + 1. */
  maxRetries: number
  baseDelayMs: number
  maxDelayMs: number
}

export interface TopologyOptions {
  prefix: string
  queueType: "classic" | "quorum"
  taskQueueMaxLength: number
  retry: RetryPolicy
  /** Quorum queues only: deliveries of one message before the broker dead-letters it. */
  deliveryLimit: number
}

export const TASK_ROUTES = ["polarity", "default"] as const
export type TaskRoute = (typeof TASK_ROUTES)[number]

export type Topology = ReturnType<typeof topologyNames>

export function topologyNames(prefix: string) {
  return {
    /** topic; routing key `<route>` for new tasks, `retry.<delayMs>.<route>` for retries coming back */
    tasksExchange: `${prefix}tasks`,
    /** topic; routing key `retry.<delayMs>.<route>` picks the wait queue of that delay */
    retryExchange: `${prefix}retry`,
    /** topic; `task.<state>` for task events, `progress` for progress reports, `worker.heartbeat` for heartbeats */
    eventsExchange: `${prefix}events`,
    /** direct; routing key `poison` or `failed` */
    deadLetterExchange: `${prefix}dead-letter`,
    taskQueues: { polarity: `${prefix}tasks.polarity`, default: `${prefix}tasks.default` } satisfies Record<
      TaskRoute,
      string
    >,
    /**
     * Tasks that were in hand when a worker died: consumed one at a time, so a crasher is caught alone. One per
     * route, so that a worker started for some queues (WORKER_QUEUES) never takes another queue's task here.
     */
    quarantineQueues: {
      polarity: `${prefix}tasks.quarantine.polarity`,
      default: `${prefix}tasks.quarantine.default`,
    } satisfies Record<TaskRoute, string>,
    statusEventsQueue: `${prefix}status-store.events`,
    statusRpcQueue: `${prefix}status-store.rpc`,
    poisonQueue: `${prefix}dead-letter.poison`,
    failedQueue: `${prefix}dead-letter.failed`,
    retryQueue: (delayMs: number) => `${prefix}retry.${delayMs}ms`,
  }
}

/** Every queue and exchange of a prefix, e.g. to list depths or to remove a test's topology. */
export function allNames(options: Pick<TopologyOptions, "prefix" | "retry">) {
  const names = topologyNames(options.prefix)
  return {
    queues: [
      ...Object.values(names.taskQueues),
      ...Object.values(names.quarantineQueues),
      ...retryTiers(options.retry).map(names.retryQueue),
      names.statusEventsQueue,
      names.statusRpcQueue,
      names.poisonQueue,
      names.failedQueue,
    ],
    exchanges: [names.tasksExchange, names.retryExchange, names.eventsExchange, names.deadLetterExchange],
  }
}

export const DEAD_LETTER_KEYS = { poison: "poison", failed: "failed" } as const

/** Like Celery's `route_task`: the task name's prefix picks the queue. */
export function routeTask(kind: TaskKind): TaskRoute {
  return kind.startsWith("polarity:") ? "polarity" : "default"
}

export function eventRoutingKey(state: TaskStatus): string {
  return `task.${state.toLowerCase()}`
}

/** Workers' heartbeats travel on the events exchange beside the task events, bound apart by this key. */
export const WORKER_HEARTBEAT_KEY = "worker.heartbeat"

/**
 * Running tasks' progress reports, on the events exchange: a key outside `task.#`, since a report is no state
 * and those who follow states (a worker's revoke listener, tests, other consumers of `task.#`) need not decode it.
 * The status store binds it for GET; each gateway's listener for its event streams.
 */
export const TASK_PROGRESS_KEY = "progress"

export function retryRoutingKey(delayMs: number, route: TaskRoute): string {
  return `retry.${delayMs}.${route}`
}

/** The wait before retry n (1-based): exponential, capped; each distinct value is a wait queue. */
export function retryDelayMs(policy: RetryPolicy, retry: number): number {
  return Math.min(policy.baseDelayMs * 2 ** (retry - 1), policy.maxDelayMs)
}

export function retryTiers(policy: RetryPolicy): number[] {
  const tiers = Array.from({ length: policy.maxRetries }, (_, i) => retryDelayMs(policy, i + 1))
  return [...new Set(tiers)]
}

/** Declares on a channel of its own: the session caches queue handles and would skip a redeclare. */
export async function declareTopology(channel: AMQPChannel, options: TopologyOptions): Promise<Topology> {
  const names = topologyNames(options.prefix)
  const durable = { durable: true, autoDelete: false, exclusive: false }
  const quorum = options.queueType === "quorum"
  const queueArgs = (extra: Record<string, unknown> = {}) => ({
    "x-queue-type": options.queueType,
    "x-dead-letter-exchange": names.deadLetterExchange,
    "x-dead-letter-routing-key": DEAD_LETTER_KEYS.poison,
    // Quorum queues count deliveries themselves; at-least-once dead-lettering needs reject-publish.
    ...(quorum && {
      "x-delivery-limit": options.deliveryLimit,
      "x-dead-letter-strategy": "at-least-once",
      "x-overflow": "reject-publish",
    }),
    ...extra,
  })

  await channel.exchangeDeclare(names.tasksExchange, "topic", durable)
  await channel.exchangeDeclare(names.retryExchange, "topic", durable)
  await channel.exchangeDeclare(names.eventsExchange, "topic", durable)
  await channel.exchangeDeclare(names.deadLetterExchange, "direct", durable)

  for (const route of TASK_ROUTES) {
    const queue = names.taskQueues[route]
    // A full work queue rejects the publish (the gateway answers 503) rather than dropping a task.
    await channel.queueDeclare(
      queue,
      durable,
      queueArgs({ "x-max-length": options.taskQueueMaxLength, "x-overflow": "reject-publish" }),
    )
    await channel.queueBind(queue, names.tasksExchange, route)
    await channel.queueBind(queue, names.tasksExchange, `retry.*.${route}`)
    await channel.queueDeclare(names.quarantineQueues[route], durable, queueArgs())
  }

  // One wait queue per delay: a message waits out the queue's TTL, then dead-letters back to the tasks
  // exchange with its routing key `retry.<delay>.<route>`, so a long delay never blocks a short one.
  for (const delayMs of retryTiers(options.retry)) {
    const queue = names.retryQueue(delayMs)
    await channel.queueDeclare(queue, durable, {
      "x-queue-type": options.queueType,
      "x-message-ttl": delayMs,
      "x-dead-letter-exchange": names.tasksExchange,
      ...(quorum && { "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish" }),
    })
    await channel.queueBind(queue, names.retryExchange, `retry.${delayMs}.*`)
  }

  await channel.queueDeclare(names.statusEventsQueue, durable, queueArgs())
  await channel.queueBind(names.statusEventsQueue, names.eventsExchange, "task.#")
  await channel.queueBind(names.statusEventsQueue, names.eventsExchange, "worker.#")
  await channel.queueBind(names.statusEventsQueue, names.eventsExchange, TASK_PROGRESS_KEY)
  await channel.queueDeclare(names.statusRpcQueue, durable, queueArgs())

  for (const [key, queue] of [
    [DEAD_LETTER_KEYS.poison, names.poisonQueue],
    [DEAD_LETTER_KEYS.failed, names.failedQueue],
  ] as const) {
    await channel.queueDeclare(queue, durable, { "x-queue-type": options.queueType })
    await channel.queueBind(queue, names.deadLetterExchange, key)
  }
  return names
}

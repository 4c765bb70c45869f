// Every exchange, queue, binding and routing key, in one place. Each service declares all of it at start
// (declares are idempotent), so services can start in any order.
import type { AMQPChannel } from "@cloudamqp/amqp-client"
import type { TaskKind, TaskStatus } from "./contracts.ts"

export interface TopologyOptions {
  prefix: string
  queueType: "classic" | "quorum"
  taskQueueMaxLength: number
}

export type Topology = ReturnType<typeof topologyNames>

export function topologyNames(prefix: string) {
  return {
    /** direct; routing key = the task queue picked by `routeTask` */
    tasksExchange: `${prefix}tasks`,
    /** topic; routing key `task.<state>` */
    eventsExchange: `${prefix}events`,
    /** direct; routing key `poison` */
    deadLetterExchange: `${prefix}dead-letter`,
    polarityTasksQueue: `${prefix}tasks.polarity`,
    statusEventsQueue: `${prefix}status-store.events`,
    statusRpcQueue: `${prefix}status-store.rpc`,
    poisonQueue: `${prefix}dead-letter.poison`,
  }
}

export const POISON_ROUTING_KEY = "poison"

/** Like Celery's `route_task`: the task name's prefix picks the queue. */
export function routeTask(_kind: TaskKind): "polarity" {
  return "polarity"
}

export function eventRoutingKey(state: TaskStatus): string {
  return `task.${state.toLowerCase()}`
}

/** Declares on a channel of its own: the session caches queue handles and would skip a redeclare after a reconnect. */
export async function declareTopology(channel: AMQPChannel, options: TopologyOptions): Promise<Topology> {
  const names = topologyNames(options.prefix)
  const durable = { durable: true, autoDelete: false, exclusive: false }
  const queueArgs = (extra: Record<string, unknown> = {}) => ({
    "x-queue-type": options.queueType,
    "x-dead-letter-exchange": names.deadLetterExchange,
    "x-dead-letter-routing-key": POISON_ROUTING_KEY,
    ...extra,
  })

  await channel.exchangeDeclare(names.tasksExchange, "direct", durable)
  await channel.exchangeDeclare(names.eventsExchange, "topic", durable)
  await channel.exchangeDeclare(names.deadLetterExchange, "direct", durable)

  // A full work queue rejects the publish (the gateway answers 503) rather than dropping a task.
  await channel.queueDeclare(
    names.polarityTasksQueue,
    durable,
    queueArgs({ "x-max-length": options.taskQueueMaxLength, "x-overflow": "reject-publish" }),
  )
  await channel.queueBind(names.polarityTasksQueue, names.tasksExchange, routeTask("polarity:review"))

  await channel.queueDeclare(names.statusEventsQueue, durable, queueArgs())
  await channel.queueBind(names.statusEventsQueue, names.eventsExchange, "task.#")

  await channel.queueDeclare(names.statusRpcQueue, durable, queueArgs())

  await channel.queueDeclare(names.poisonQueue, durable, { "x-queue-type": options.queueType })
  await channel.queueBind(names.poisonQueue, names.deadLetterExchange, POISON_ROUTING_KEY)
  return names
}

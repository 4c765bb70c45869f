// Every exchange, queue, binding and routing key, in one place, as data: `declareTopology` declares it (each
// service at start and after every reconnect; declares are idempotent, so services can start in any order),
// `brokerAccess` says which service publishes and consumes what, and scripts/broker-access.ts turns both into
// RabbitMQ users, permissions and definitions (docs/security.md). A new name goes in `topologyDeclarations`,
// and whoever publishes to it or consumes it in `brokerAccess`: a test checks that nothing is left unowned.
import type { AMQPChannel } from "@cloudamqp/amqp-client"
import { MAX_PRIORITY, TASK_ROUTES, type TaskKind, type TaskRoute, type TaskStatus } from "./contracts.ts"

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

export { TASK_ROUTES, type TaskRoute }

/**
 * The delay ladder: a message waits out a delay of n ticks by hopping through the wait queues of the set bits of
 * n, the longest first, without any consumer. Each wait queue has one fixed TTL, because RabbitMQ only expires
 * the message at the head of a queue: with one TTL per queue, the head is always the first due. A tick is 100 ms,
 * so a delay is rounded up to a tenth of a second; 25 levels hold 2^25 - 1 ticks (38.8 days), above MAX_DELAY_MS
 * (30 days).
 */
export const DELAY_TICK_MS = 100
export const DELAY_LEVELS = 25
/** Where a message leaves the ladder for: a work queue, or the webhook deliveries. */
export type DelayDestination = TaskRoute | "webhook"

/** Routing key of a worker's report of a webhook attempt, on the events exchange. */
export const WEBHOOK_ATTEMPT_KEY = "webhook.attempt"

/** The services, by the name each uses for its connection, its logs and its broker user. */
export const SERVICES = ["gateway", "polarity-worker", "status-store"] as const
export type Service = (typeof SERVICES)[number]

/** Who may ask the status store over RPC: the routing key of a request names its caller. */
export type StatusStoreCaller = Exclude<Service, "status-store">

export type Topology = ReturnType<typeof topologyNames>

export function topologyNames(prefix: string) {
  return {
    /**
     * topic; routing key `<route>` for new tasks, `retry.<delayMs>.<route>` for retries coming back from their
     * wait queue, `quarantine` for the tasks a dead worker had in hand.
     */
    tasksExchange: `${prefix}tasks`,
    /** topic; routing key `retry.<delayMs>.<route>` picks the wait queue of that delay */
    retryExchange: `${prefix}retry`,
    /**
     * topic; routing key `task.<state>` for task events, `progress` for progress reports, `worker.heartbeat`
     * for workers' heartbeats, `status-store.barrier` for the store's marker in its own queue.
     */
    eventsExchange: `${prefix}events`,
    /**
     * topic; requests to the status store, routing key `status-store.<caller>`. Callers publish here rather
     * than to the default exchange, which would let them publish to any queue by its name.
     */
    rpcExchange: `${prefix}rpc`,
    /** direct; routing key `poison` or `failed` */
    deadLetterExchange: `${prefix}dead-letter`,
    /** topic; remote-control commands to one worker (`worker.<id>`) or to all (`worker.all`), with a reply-to */
    controlExchange: `${prefix}control`,
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
    /** topic, one per level of the delay ladder; level DELAY_LEVELS - 1 is where a delayed message enters. */
    delayExchange: (level: number) => `${prefix}delay.level${level}`,
    /** The wait queue of a level: TTL DELAY_TICK_MS × 2^level, dead-lettering to the level below. */
    delayQueue: (level: number) => `${prefix}delay.level${level}.${DELAY_TICK_MS * 2 ** level}ms`,
    /** topic; where a delayed message leaves the ladder, routed by the destination at the end of its key. */
    delayDueExchange: `${prefix}delay.due`,
    /**
     * Completion webhooks to POST, taken by the workers. Fed through the ladder (0 ticks for a first attempt, the
     * backoff for a retry), so that a delivery and its retries take one path.
     */
    webhookQueue: `${prefix}webhooks`,
  }
}

const DELAY_LEVEL_NUMBERS = Array.from({ length: DELAY_LEVELS }, (_, level) => level)

/** The ladder's entry exchange: every delayed message is published here. */
export function delayEntryExchange(names: Topology): string {
  return names.delayExchange(DELAY_LEVELS - 1)
}

/** Whole ticks, rounded up, so a message never leaves the ladder before its time (a tick at least). */
export function delayTicks(delayMs: number): number {
  return Math.min(Math.max(1, Math.ceil(delayMs / DELAY_TICK_MS)), 2 ** DELAY_LEVELS - 1)
}

/** `<bit of level 24>.….<bit of level 0>.<destination>`: each level's exchange reads its own bit. */
export function delayRoutingKey(ticks: number, destination: DelayDestination): string {
  const bits = DELAY_LEVEL_NUMBERS.toReversed().map((level) => String(Math.floor(ticks / 2 ** level) % 2))
  return `${bits.join(".")}.${destination}`
}

/** The binding pattern of a level that matches the given bit at its place in the key. */
function delayBitPattern(level: number, bit: 0 | 1): string {
  return `${"*.".repeat(DELAY_LEVELS - 1 - level)}${bit}.#`
}

/** The pattern that takes a message leaving the ladder to its destination, whatever bits came before it. */
function dueKey(destination: DelayDestination): string {
  return `${"*.".repeat(DELAY_LEVELS)}${destination}`
}

export const DEAD_LETTER_KEYS = { poison: "poison", failed: "failed" } as const

/** A dead worker's tasks go to their route's quarantine queue through the tasks exchange by this key. */
export function quarantineRoutingKey(route: TaskRoute): string {
  return `quarantine.${route}`
}

/**
 * A work queue paused or resumed (a QueuePause), from the status store to every worker's listener on the events
 * exchange. Published without `mandatory`: with no worker running, nobody needs to hear it now, and each worker
 * asks the store for the paused queues when it starts.
 */
export const QUEUE_PAUSE_KEY = "queue.pause"

/** Workers' heartbeats travel on the events exchange beside the task events, bound apart by this key. */
export const WORKER_HEARTBEAT_KEY = "worker.heartbeat"

/** The status store's read-your-writes marker: through the events exchange into its own queue. */
export const BARRIER_KEY = "status-store.barrier"

/** Like Celery's `route_task`: the task name's prefix picks the queue. */
export function routeTask(kind: TaskKind): TaskRoute {
  return kind.startsWith("polarity:") ? "polarity" : "default"
}

export function eventRoutingKey(state: TaskStatus): string {
  return `task.${state.toLowerCase()}`
}

/**
 * Running tasks' progress reports, on the events exchange: a key outside `task.#`, since a report is no state
 * and those who follow states (a worker's revoke listener, tests, other consumers of `task.#`) need not decode it.
 * The status store binds it for GET; each gateway's listener for its event streams.
 */
export const TASK_PROGRESS_KEY = "progress"

/**
 * Remote control: each worker process (and each pool's supervisor) consumes an exclusive queue of its own bound
 * to the control exchange with its own key and the broadcast key, and answers over direct reply-to. Commands are
 * published `mandatory`: a command to a worker id that no queue is bound for comes back, which is how an unknown
 * worker is told from one that does not answer.
 */
export const CONTROL_BROADCAST_KEY = "worker.all"

export function controlRoutingKey(workerId: string): string {
  return `worker.${workerId}`
}

export function retryRoutingKey(delayMs: number, route: TaskRoute): string {
  return `retry.${delayMs}.${route}`
}

export function statusRpcKey(caller: StatusStoreCaller): string {
  return `status-store.${caller}`
}

/** The wait before retry n (1-based): exponential, capped; each distinct value is a wait queue. */
export function retryDelayMs(policy: RetryPolicy, retry: number): number {
  return Math.min(policy.baseDelayMs * 2 ** (retry - 1), policy.maxDelayMs)
}

export function retryTiers(policy: RetryPolicy): number[] {
  const tiers = Array.from({ length: policy.maxRetries }, (_, i) => retryDelayMs(policy, i + 1))
  return [...new Set(tiers)]
}

export interface ExchangeDeclaration {
  name: string
  type: "topic" | "direct"
}

export interface QueueDeclaration {
  name: string
  arguments: Record<string, unknown>
  /**
   * The arguments an earlier version declared the queue with. RabbitMQ refuses to redeclare a queue with other
   * arguments (PRECONDITION_FAILED), so a deployment upgraded in place goes on with the queue it has, and is told
   * what it misses (docs/operations.md, "Upgrading to priorities").
   */
  before?: { arguments: Record<string, unknown>; missing: string }
}

/** A binding from an exchange to a queue, or to another exchange (the delay ladder's levels). */
export interface Binding {
  exchange: string
  key: string
  queue?: string
  toExchange?: string
}

export interface TopologyDeclarations {
  exchanges: ExchangeDeclaration[]
  queues: QueueDeclaration[]
  bindings: Binding[]
}

/** Every durable exchange, queue and binding of a deployment, in the order they are declared. */
export function topologyDeclarations(options: TopologyOptions): TopologyDeclarations {
  const names = topologyNames(options.prefix)
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
  const exchanges: ExchangeDeclaration[] = [
    { name: names.tasksExchange, type: "topic" },
    { name: names.retryExchange, type: "topic" },
    { name: names.eventsExchange, type: "topic" },
    { name: names.rpcExchange, type: "topic" },
    { name: names.deadLetterExchange, type: "direct" },
    { name: names.controlExchange, type: "topic" },
  ]
  const queues: QueueDeclaration[] = []
  const bindings: Binding[] = []
  const queue = (
    name: string,
    args: Record<string, unknown>,
    ...bound: [exchange: string, key: string][]
  ) => {
    queues.push({ name, arguments: args })
    for (const [exchange, key] of bound) bindings.push({ exchange, key, queue: name })
  }

  for (const route of TASK_ROUTES) {
    // A full work queue rejects the publish (the gateway answers 503) rather than dropping a task.
    const workArgs = queueArgs({ "x-max-length": options.taskQueueMaxLength, "x-overflow": "reject-publish" })
    // Priorities (a submission's `priority`): classic queues only, since RabbitMQ 3.10's quorum queues have none.
    const prioritised = quorum ? workArgs : { ...workArgs, "x-max-priority": MAX_PRIORITY }
    queue(
      names.taskQueues[route],
      prioritised,
      [names.tasksExchange, route],
      [names.tasksExchange, `retry.*.${route}`],
    )
    const declared = queues.at(-1)
    if (!quorum && declared) {
      declared.before = {
        arguments: workArgs,
        missing: "priorities: it was declared without x-max-priority, so a task's priority is ignored",
      }
    }
    queue(names.quarantineQueues[route], queueArgs(), [names.tasksExchange, quarantineRoutingKey(route)])
  }

  // One wait queue per delay: a message waits out the queue's TTL, then dead-letters back to the tasks
  // exchange with its routing key `retry.<delay>.<route>`, so a long delay never blocks a short one.
  for (const delayMs of retryTiers(options.retry)) {
    queue(
      names.retryQueue(delayMs),
      {
        "x-queue-type": options.queueType,
        "x-message-ttl": delayMs,
        "x-dead-letter-exchange": names.tasksExchange,
        ...(quorum && { "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish" }),
      },
      [names.retryExchange, `retry.${delayMs}.*`],
    )
  }

  // The delay ladder. Level k's exchange sends a message whose bit k is 1 to its wait queue (TTL 2^k ticks), and
  // one whose bit is 0 straight on to level k - 1's exchange (an exchange-to-exchange binding: no wait). The wait
  // queue dead-letters to level k - 1's exchange with the routing key unchanged; below level 0 is the due
  // exchange, which routes by destination to the work queues. The broker does all of it: no service holds a delay.
  exchanges.push({ name: names.delayDueExchange, type: "topic" })
  for (const route of TASK_ROUTES) {
    bindings.push({ exchange: names.delayDueExchange, key: dueKey(route), queue: names.taskQueues[route] })
  }
  for (const level of DELAY_LEVEL_NUMBERS) {
    const exchange = names.delayExchange(level)
    const below = level === 0 ? names.delayDueExchange : names.delayExchange(level - 1)
    exchanges.push({ name: exchange, type: "topic" })
    queue(
      names.delayQueue(level),
      {
        "x-queue-type": options.queueType,
        "x-message-ttl": DELAY_TICK_MS * 2 ** level,
        "x-dead-letter-exchange": below,
        ...(quorum && { "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish" }),
      },
      [exchange, delayBitPattern(level, 1)],
    )
    bindings.push({ exchange, key: delayBitPattern(level, 0), toExchange: below })
  }

  // Completion webhooks leave the ladder for the workers that deliver them.
  queue(names.webhookQueue, queueArgs(), [names.delayDueExchange, dueKey("webhook")])

  queue(
    names.statusEventsQueue,
    queueArgs(),
    [names.eventsExchange, "task.#"],
    [names.eventsExchange, WORKER_HEARTBEAT_KEY],
    [names.eventsExchange, WEBHOOK_ATTEMPT_KEY],
    [names.eventsExchange, TASK_PROGRESS_KEY],
    [names.eventsExchange, BARRIER_KEY],
  )
  queue(names.statusRpcQueue, queueArgs(), [names.rpcExchange, "status-store.*"])

  for (const [key, name] of [
    [DEAD_LETTER_KEYS.poison, names.poisonQueue],
    [DEAD_LETTER_KEYS.failed, names.failedQueue],
  ] as const) {
    queue(name, { "x-queue-type": options.queueType }, [names.deadLetterExchange, key])
  }
  return { exchanges, queues, bindings }
}

/** Every queue and exchange of a deployment, e.g. to list depths or to remove a test's topology. */
export function allNames(options: TopologyOptions) {
  const { queues, exchanges } = topologyDeclarations(options)
  return { queues: queues.map((q) => q.name), exchanges: exchanges.map((e) => e.name) }
}

/**
 * Declares on channels of its own: the session caches queue handles and would skip a redeclare. A channel waits
 * for each reply before its next request, and creating a queue takes the broker tens of milliseconds, so the
 * queues and their bindings are declared side by side on several channels; the exchanges, all first, since the
 * ladder binds each level to the one below.
 * With QUEUE_TYPE=quorum every queue declared here is a quorum queue, replicated on the nodes of a cluster: the
 * work, quarantine, retry wait, delay, status events, status RPC and dead-letter queues. Classic are only the
 * queues that hold nothing to keep: each process's exclusive listener queue (Broker.listen; a quorum queue cannot
 * be exclusive, and the news it holds is for that process alone) and direct reply-to, which stores nothing.
 */
export async function declareTopology(
  channel: AMQPChannel,
  options: TopologyOptions,
  /** Told of each queue that stays as an earlier version declared it, and what it misses then. */
  onEarlierQueue: (queue: string, missing: string) => void = () => {},
): Promise<Topology> {
  const durable = { durable: true, autoDelete: false, exclusive: false }
  const { exchanges, queues, bindings } = topologyDeclarations(options)
  for (const exchange of exchanges) await channel.exchangeDeclare(exchange.name, exchange.type, durable)
  /** Items spread over lanes of a channel each; `declare` answers the channel its lane goes on with. */
  const inParallel = async <T>(
    items: T[],
    declare: (channel: AMQPChannel, item: T) => Promise<AMQPChannel>,
  ) => {
    const lanes = Array.from({ length: Math.min(8, items.length) }, (_, lane) =>
      items.filter((_, i) => i % 8 === lane),
    )
    await Promise.all(
      lanes.map(async (lane) => {
        let own = await channel.connection.channel()
        for (const item of lane) own = await declare(own, item)
        await own.close()
      }),
    )
  }
  // A refused redeclare closes its channel: the lane goes on with a new one.
  const declareQueue = async (own: AMQPChannel, queue: QueueDeclaration) => {
    try {
      await own.queueDeclare(queue.name, durable, queue.arguments)
      return own
    } catch (err) {
      if (!queue.before || !/PRECONDITION_FAILED/.test((err as Error).message)) throw err
      const fresh = await channel.connection.channel()
      await fresh.queueDeclare(queue.name, durable, queue.before.arguments)
      onEarlierQueue(queue.name, queue.before.missing)
      return fresh
    }
  }
  await inParallel(queues, declareQueue)
  await inParallel(bindings, async (own, { exchange, key, queue, toExchange }) => {
    if (queue) await own.queueBind(queue, exchange, key)
    else await own.exchangeBind(toExchange ?? "", exchange, key)
    return own
  })
  return topologyNames(options.prefix)
}

/**
 * Routing keys too many to list (the delay ladder's: 2^25 × destinations; a worker's own control key), as a
 * regular expression over the whole key, with examples that a test routes through the topology.
 */
export interface KeyPattern {
  pattern: string
  examples: string[]
}

/** What a service does on the broker: the source of its RabbitMQ user's permissions (scripts/broker-access.ts). */
export interface ServiceAccess {
  /** Exchange → the routing keys it publishes with. `""` is the default exchange: any key, i.e. any queue. */
  publishes: Record<string, (string | KeyPattern)[]>
  /** Queues it consumes or takes messages from. */
  consumes: string[]
  /**
   * Queues an operator may purge through it. RabbitMQ grants queue.purge with the read permission, which would
   * let it consume them too: kept apart from `consumes` so that each queue keeps one consumer.
   */
  purges: string[]
  /** Exchange → the binding keys of the exclusive, server-named queue it listens on while it runs. */
  listens: Record<string, (string | KeyPattern)[]>
  /** RabbitMQ user tags, e.g. `management` to read queue rates from the management API. */
  tags: string[]
}

/** Least privilege: each service publishes only the routing keys that are its to publish. */
export function brokerAccess(options: TopologyOptions): Record<Service, ServiceAccess> {
  const names = topologyNames(options.prefix)
  const poison = DEAD_LETTER_KEYS.poison
  /** Into the delay ladder: the delay's bits, then the destination (`<25 × (0|1).><destination>`). */
  const intoLadder = (...destinations: DelayDestination[]): KeyPattern => ({
    pattern: `(?:[01]\\.){${DELAY_LEVELS}}(?:${destinations.join("|")})`,
    examples: destinations.map((destination) => delayRoutingKey(1, destination)),
  })
  /** A command to one worker (`worker.<id>`, any id) or to all. */
  const controlKeys: KeyPattern = {
    pattern: "worker\\..+",
    examples: [controlRoutingKey("host-1:42"), CONTROL_BROADCAST_KEY],
  }
  return {
    gateway: {
      publishes: {
        [names.tasksExchange]: [...TASK_ROUTES],
        [delayEntryExchange(names)]: [intoLadder(...TASK_ROUTES)],
        [names.eventsExchange]: [eventRoutingKey("PENDING")],
        [names.rpcExchange]: [statusRpcKey("gateway")],
        [names.controlExchange]: [controlKeys],
        [names.deadLetterExchange]: [poison],
      },
      // The operator's dead-letter routes peek at both, and replay the failed ones.
      consumes: [names.failedQueue, names.poisonQueue],
      purges: TASK_ROUTES.flatMap((route) => [names.taskQueues[route], names.quarantineQueues[route]]),
      listens: { [names.eventsExchange]: ["task.#", TASK_PROGRESS_KEY] },
      tags: ["management"],
    },
    "polarity-worker": {
      publishes: {
        // Direct reply-to: the answer to a remote-control command goes through the default exchange.
        "": [],
        [names.eventsExchange]: [
          ...(["STARTED", "RETRY", "SUCCESS", "FAILURE", "EXPIRED"] as const).map(eventRoutingKey),
          TASK_PROGRESS_KEY,
          WORKER_HEARTBEAT_KEY,
          WEBHOOK_ATTEMPT_KEY,
        ],
        [names.retryExchange]: retryTiers(options.retry).flatMap((delayMs) =>
          TASK_ROUTES.map((route) => retryRoutingKey(delayMs, route)),
        ),
        [names.tasksExchange]: TASK_ROUTES.map(quarantineRoutingKey),
        // A webhook delivery that failed goes back into the ladder for its next attempt.
        [delayEntryExchange(names)]: [intoLadder("webhook")],
        [names.rpcExchange]: [statusRpcKey("polarity-worker")],
        [names.deadLetterExchange]: [poison, DEAD_LETTER_KEYS.failed],
      },
      consumes: [
        ...TASK_ROUTES.flatMap((route) => [names.taskQueues[route], names.quarantineQueues[route]]),
        names.webhookQueue,
      ],
      purges: [],
      listens: {
        // Heartbeats: an autoscaled pool's supervisor reads its processes' (what each holds).
        [names.eventsExchange]: [eventRoutingKey("REVOKED"), WORKER_HEARTBEAT_KEY, QUEUE_PAUSE_KEY],
        [names.controlExchange]: [controlKeys],
      },
      tags: [],
    },
    "status-store": {
      publishes: {
        // Direct reply-to: a reply goes through the default exchange, to the caller's `amq.rabbitmq.reply-to.*`.
        "": [],
        // The tasks of the periodic schedules it fires (status-store/scheduler.ts), as the gateway submits them,
        // and the first attempt of each completion webhook.
        [names.tasksExchange]: [...TASK_ROUTES],
        [delayEntryExchange(names)]: [intoLadder(...TASK_ROUTES, "webhook")],
        [names.eventsExchange]: [
          eventRoutingKey("PENDING"),
          eventRoutingKey("REVOKED"),
          BARRIER_KEY,
          QUEUE_PAUSE_KEY,
        ],
        [names.deadLetterExchange]: [poison],
      },
      consumes: [names.statusEventsQueue, names.statusRpcQueue],
      purges: [],
      listens: {},
      tags: [],
    },
  }
}

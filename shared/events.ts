// Messages leave a service in batches: what is published to one routing key in one turn of the event loop
// goes out as one confirmed message. One message per batch instead of per task is what lets the broker keep
// up; each publish still resolves only once the broker has confirmed the message holding it. A batch is also
// cut by count and by size, so that many long reviews never make a message too large for its consumer.
import type { Broker } from "./amqp.ts"
import { MessageType, type Task, type TaskEvent } from "./contracts.ts"
import { delayEntryExchange, delayRoutingKey, delayTicks, eventRoutingKey, routeTask } from "./topology.ts"

interface Batch<T> {
  routingKey: string
  /** The message's AMQP priority: items of different priorities never share a message. */
  priority: number | undefined
  items: T[]
  /** Characters of the items as JSON, to cut the batch before its message grows too large. */
  chars: number
  confirmed: PromiseWithResolvers<void>
}

interface CoalescingOptions<T> {
  exchange: string
  type: string
  /** The message body of a batch. */
  body: (items: T[]) => object
  maxItems?: number
  /**
   * Characters of JSON per message: consumers refuse messages over MAX_MESSAGE_BYTES (1 MiB), and a
   * character is at most 3 bytes of UTF-8, so a batch of long reviews is split before it gets there.
   */
  maxChars?: number
  /** Last look at the batches of a turn before they go out. */
  beforeFlush?: (pending: Map<string, Batch<T>>) => void
  /** 1 for what need not survive a broker restart (progress reports); 2, persistent, by default. */
  deliveryMode?: 1 | 2
}

export class CoalescingPublisher<T> {
  private readonly pending = new Map<string, Batch<T>>()
  private flushScheduled = false

  constructor(
    private readonly broker: Broker,
    private readonly options: CoalescingOptions<T>,
  ) {}

  /** Batches are keyed by routing key, and by priority for the few items that have one. */
  publish(routingKey: string, item: T, priority?: number): Promise<void> {
    const { maxItems = 1000, maxChars = 256 * 1024 } = this.options
    const chars = JSON.stringify(item).length + 1
    const key = priority === undefined ? routingKey : `${routingKey}\n${priority}`
    let batch = this.pending.get(key)
    if (batch && batch.chars + chars > maxChars) {
      this.send(key)
      batch = undefined
    }
    if (!batch) {
      batch = { routingKey, priority, items: [], chars: 0, confirmed: Promise.withResolvers() }
      this.pending.set(key, batch)
    }
    batch.items.push(item)
    batch.chars += chars
    if (batch.items.length >= maxItems) {
      this.send(key)
    } else if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(() => this.flush())
    }
    return batch.confirmed.promise
  }

  private flush(): void {
    this.flushScheduled = false
    this.options.beforeFlush?.(this.pending)
    for (const key of [...this.pending.keys()]) this.send(key)
  }

  private send(key: string): void {
    const batch = this.pending.get(key)
    if (!batch) return
    this.pending.delete(key)
    const body = JSON.stringify(this.options.body(batch.items))
    const { type, deliveryMode = 2 } = this.options
    const { routingKey, priority } = batch
    this.broker
      .publish(this.options.exchange, routingKey, body, {
        type,
        deliveryMode,
        ...(priority !== undefined && { priority }),
      })
      .then(batch.confirmed.resolve, batch.confirmed.reject)
  }
}

/** Task events, batched per state (routing key `task.<state>`). */
export class EventPublisher {
  private readonly batches: CoalescingPublisher<TaskEvent>

  constructor(broker: Broker) {
    this.batches = new CoalescingPublisher(broker, {
      exchange: broker.names.eventsExchange,
      type: MessageType.taskEvents,
      body: (events) => ({ events }),
      beforeFlush: dropSupersededStarts,
    })
  }

  emit(event: TaskEvent): Promise<void> {
    return this.batches.publish(eventRoutingKey(event.state), event)
  }
}

/**
 * A task that started and ended in the same turn (most do: scoring takes microseconds) needs no STARTED
 * message: its outcome carries `started_at`. Dropping it halves the events of a busy worker.
 */
function dropSupersededStarts(pending: Map<string, Batch<TaskEvent>>): void {
  const startedKey = eventRoutingKey("STARTED")
  const started = pending.get(startedKey)
  if (!started) return
  const moved = new Set<string>()
  for (const [key, batch] of pending) {
    if (key !== startedKey) for (const event of batch.items) moved.add(event.task_id)
  }
  started.items = started.items.filter((event) => !moved.has(event.task_id))
  if (started.items.length > 0) return
  pending.delete(startedKey)
  started.confirmed.resolve()
}

/**
 * New tasks, batched per work queue: a work-queue message carries every task of a turn for that queue. A task
 * with an `eta` ahead goes into the delay ladder instead, batched with those due in the same tick.
 */
export class TaskPublisher {
  private readonly batches: CoalescingPublisher<Task>
  private readonly delayed: CoalescingPublisher<Task>

  constructor(broker: Broker) {
    const options = {
      type: MessageType.task,
      body: (tasks: Task[]) => ({ tasks }),
      // A batch is one delivery and one ack: small enough to spread over several workers.
      maxItems: 100,
    }
    this.batches = new CoalescingPublisher(broker, { ...options, exchange: broker.names.tasksExchange })
    this.delayed = new CoalescingPublisher(broker, { ...options, exchange: delayEntryExchange(broker.names) })
  }

  publish(task: Task): Promise<void> {
    const route = routeTask(task.kind)
    const delayMs = task.eta === undefined ? 0 : task.eta - Date.now()
    // The priority travels as the message's property, which the delay ladder's dead-lettering keeps.
    if (delayMs <= 0) return this.batches.publish(route, task, task.priority)
    return this.delayed.publish(delayRoutingKey(delayTicks(delayMs), route), task, task.priority)
  }
}

// Task events leave a service in batches: every event emitted in one turn of the event loop, per state,
// goes out as one confirmed message. One message per batch instead of per task is what lets the broker
// keep up; `emit` still resolves only once the broker has confirmed the batch holding that event. A batch is
// also cut by size, so that many long reviews never make a message too large for its consumer.
import type { Broker } from "./amqp.ts"
import { MessageType, type TaskEvent, type TaskStatus } from "./contracts.ts"
import { eventRoutingKey } from "./topology.ts"

interface PendingBatch {
  events: TaskEvent[]
  /** Characters of the events as JSON, to cut the batch before its message grows too large. */
  chars: number
  confirmed: PromiseWithResolvers<void>
}

export class EventPublisher {
  private readonly pending = new Map<TaskStatus, PendingBatch>()
  private flushScheduled = false

  constructor(
    private readonly broker: Broker,
    private readonly maxBatch = 1000,
    /**
     * Characters of JSON per message: consumers refuse messages over MAX_MESSAGE_BYTES (1 MiB), and a
     * character is at most 3 bytes of UTF-8, so a batch of long reviews is split before it gets there.
     */
    private readonly maxChars = 256 * 1024,
  ) {}

  emit(event: TaskEvent): Promise<void> {
    const chars = JSON.stringify(event).length + 1
    let batch = this.pending.get(event.state)
    if (batch && batch.chars + chars > this.maxChars) {
      this.publish(event.state)
      batch = undefined
    }
    if (!batch) {
      batch = { events: [], chars: 0, confirmed: Promise.withResolvers() }
      this.pending.set(event.state, batch)
    }
    batch.events.push(event)
    batch.chars += chars
    if (batch.events.length >= this.maxBatch) {
      this.publish(event.state)
    } else if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(() => this.flush())
    }
    return batch.confirmed.promise
  }

  private flush(): void {
    this.flushScheduled = false
    this.dropSupersededStarts()
    for (const state of [...this.pending.keys()]) this.publish(state)
  }

  /**
   * A task that started and ended in the same turn (most do: scoring takes microseconds) needs no STARTED
   * message: its outcome carries `started_at`. Dropping it halves the events of a busy worker.
   */
  private dropSupersededStarts(): void {
    const started = this.pending.get("STARTED")
    if (!started) return
    const moved = new Set<string>()
    for (const [state, batch] of this.pending) {
      if (state !== "STARTED") for (const event of batch.events) moved.add(event.task_id)
    }
    started.events = started.events.filter((event) => !moved.has(event.task_id))
    if (started.events.length > 0) return
    this.pending.delete("STARTED")
    started.confirmed.resolve()
  }

  private publish(state: TaskStatus): void {
    const batch = this.pending.get(state)
    if (!batch) return
    this.pending.delete(state)
    const body = JSON.stringify({ events: batch.events })
    this.broker
      .publish(this.broker.names.eventsExchange, eventRoutingKey(state), body, {
        type: MessageType.taskEvents,
      })
      .then(batch.confirmed.resolve, batch.confirmed.reject)
  }
}

// What the status store takes from the broker, and from whom. The routing key is the authority, not the message's
// `type` or its body: permissions limit who may publish which routing key (docs/security.md), so an event batch
// must hold only the state its key names, and a request's key names its caller, whose queries are checked.
import type { AMQPMessage } from "@cloudamqp/amqp-client"
import { decodeMessage, directReplyTo, PoisonMessage } from "../../shared/amqp.ts"
import {
  Barrier,
  StatusQuery,
  StatusQueryBatch,
  TASK_STATUSES,
  type TaskEvent,
  TaskEventBatch,
  type TaskProgress,
  TaskProgressBatch,
  type TaskStatus,
  WebhookAttempt,
  WorkerHeartbeat,
} from "../../shared/contracts.ts"
import {
  BARRIER_KEY,
  eventRoutingKey,
  type StatusStoreCaller,
  statusRpcKey,
  TASK_PROGRESS_KEY,
  WEBHOOK_ATTEMPT_KEY,
  WORKER_HEARTBEAT_KEY,
} from "../../shared/topology.ts"

/** One message of the events queue, by what its routing key says it is. */
export type Inbound =
  | { events: TaskEvent[] }
  | { heartbeat: WorkerHeartbeat }
  | { progress: TaskProgress[] }
  | { webhookAttempt: WebhookAttempt }
  | { barrierId: string }

const STATE_OF_KEY = new Map<string, TaskStatus>(
  TASK_STATUSES.map((state) => [eventRoutingKey(state), state]),
)

/** Decode a message of the events queue against the contract of its routing key; anything else is poison. */
export function decodeInbound(msg: AMQPMessage): Inbound {
  const key = msg.routingKey
  const state = STATE_OF_KEY.get(key)
  if (state) {
    const { events } = decodeMessage(msg, TaskEventBatch, "TaskEventBatch")
    const stray = events.find((event) => event.state !== state)
    if (stray)
      throw new PoisonMessage(`a ${stray.state} event under routing key ${key}, which carries ${state} only`)
    return { events }
  }
  switch (key) {
    case WORKER_HEARTBEAT_KEY:
      return { heartbeat: decodeMessage(msg, WorkerHeartbeat, "WorkerHeartbeat") }
    case TASK_PROGRESS_KEY:
      return { progress: decodeMessage(msg, TaskProgressBatch, "TaskProgressBatch").reports }
    case WEBHOOK_ATTEMPT_KEY:
      return { webhookAttempt: decodeMessage(msg, WebhookAttempt, "WebhookAttempt") }
    case BARRIER_KEY:
      return { barrierId: decodeMessage(msg, Barrier, "Barrier").barrier_id }
    default:
      throw new PoisonMessage(
        `routing key ${JSON.stringify(key.slice(0, 100))} carries nothing the store takes`,
      )
  }
}

/**
 * The queries each caller may ask. A worker asks which tasks were revoked while it was away (`revoked`, and
 * `lookup` for the delayed tasks it takes), which queues are paused (`queue_pauses`), whether a revoke notice it
 * heard is true (`detail`), and the figures of a polarity report it runs (`polarity_report`); everything else (revoking, claiming keys, closing a refused
 * task, schedules, listings) is the gateway's.
 */
const CALLER_OPS: Record<StatusStoreCaller, ReadonlySet<StatusQuery["op"]>> = {
  gateway: new Set(StatusQuery.options.map((query) => query.entries.op.literal)),
  "polarity-worker": new Set(["revoked", "lookup", "detail", "polarity_report", "queue_pauses"]),
}

const CALLER_OF_KEY = new Map(
  (Object.keys(CALLER_OPS) as StatusStoreCaller[]).map((caller) => [statusRpcKey(caller), caller]),
)

/** A request's queries, checked against what its caller (its routing key) may ask; anything else is poison. */
export function decodeRequest(msg: AMQPMessage): StatusQuery[] {
  const caller = CALLER_OF_KEY.get(msg.routingKey)
  if (!caller)
    throw new PoisonMessage(`routing key ${JSON.stringify(msg.routingKey.slice(0, 100))} names no caller`)
  if (!directReplyTo(msg))
    throw new PoisonMessage("reply-to is not a direct reply-to address (amq.rabbitmq.reply-to.*)")
  const { queries } = decodeMessage(msg, StatusQueryBatch, "StatusQueryBatch")
  const refused = queries.find((query) => !CALLER_OPS[caller].has(query.op))
  if (refused) throw new PoisonMessage(`a ${caller} may not ask ${refused.op}`)
  return queries
}

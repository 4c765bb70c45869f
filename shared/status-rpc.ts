// The status store's RPC as its clients ask it: queries in one request, their replies in the same order in one
// reply, each checked by the caller against the contract of its op.
import * as v from "valibot"
import { type Broker, decodeMessage } from "./amqp.ts"
import {
  ErrorReply,
  MessageType,
  type StatusQuery,
  type StatusQueryBatch,
  StatusReplyBatch,
} from "./contracts.ts"
import { Problem, RETRY_AFTER_SECONDS } from "./http.ts"
import { type StatusStoreCaller, statusRpcKey } from "./topology.ts"

/** A group's results, or a worker's list of revokes, can be large; the store is trusted. */
const MAX_REPLY_BYTES = 64 * 1024 * 1024

/** The replies to `queries`, in their order, not yet checked. The routing key tells the store who asks. */
export async function askStatusStore(
  broker: Broker,
  caller: StatusStoreCaller,
  queries: StatusQuery[],
  timeoutMs: number,
): Promise<unknown[]> {
  const msg = await broker.call(
    broker.names.rpcExchange,
    statusRpcKey(caller),
    JSON.stringify({ queries } satisfies StatusQueryBatch),
    MessageType.statusQuery,
    timeoutMs,
  )
  const { replies } = decodeMessage(msg, StatusReplyBatch, "status store reply", MAX_REPLY_BYTES)
  if (replies.length !== queries.length)
    throw new Error(`status store: ${replies.length} replies to ${queries.length}`)
  return replies
}

/**
 * A reply checked against the contract of its query's op. The store's error reply (its database failing, a replica
 * stopping with reads still waiting for it) becomes a 503 with Retry-After: the store could not answer now, and
 * another try, by then on another replica or a restarted store, may well be answered.
 */
export function checkStatusReply<TSchema extends v.GenericSchema>(
  schema: TSchema,
  reply: unknown,
): v.InferOutput<TSchema> {
  if (v.is(ErrorReply, reply))
    throw new Problem(503, `the status store could not answer (${reply.error}); retry shortly`, {
      "retry-after": String(RETRY_AFTER_SECONDS),
    })
  return v.parse(schema, reply)
}

// The gateway's side of the status store's RPC: one method per query op, each reply checked against its contract.
import * as v from "valibot"
import { type Broker, decodeMessage } from "../../shared/amqp.ts"
import {
  ClaimReply,
  ErrorReply,
  GroupReply,
  MessageType,
  RevokeReply,
  type StatusQuery,
  TaskPageReply,
  type TaskRecord,
  TaskReply,
  type TaskStatus,
} from "../../shared/contracts.ts"

/** A group's results can be large; the batch body limit bounds them, and the store is trusted. */
const MAX_REPLY_BYTES = 64 * 1024 * 1024

export class StatusStoreClient {
  constructor(
    private readonly broker: Broker,
    /** How long the store may take to answer, on top of any wait the query asks it to hold. */
    private readonly timeoutMs: number,
  ) {}

  private async ask<TSchema extends v.GenericSchema>(
    query: StatusQuery,
    schema: TSchema,
    holdMs = 0,
  ): Promise<v.InferOutput<TSchema>> {
    const msg = await this.broker.call(
      this.broker.names.statusRpcQueue,
      JSON.stringify(query),
      MessageType.statusQuery,
      holdMs + this.timeoutMs,
    )
    const reply = decodeMessage(msg, v.union([schema, ErrorReply]), "status store reply", MAX_REPLY_BYTES)
    if (v.is(ErrorReply, reply)) throw new Error(`status store: ${reply.error}`)
    return reply
  }

  /** The task, or null when the store has never heard of it (after reading every event queued before). */
  async getTask(taskId: string, { waitMs = 0, catchUp = false } = {}): Promise<TaskRecord | null> {
    const query: StatusQuery = {
      op: "get",
      task_id: taskId,
      ...(waitMs > 0 && { wait_ms: waitMs }),
      ...(catchUp && { catch_up: true }),
    }
    return (await this.ask(query, TaskReply, waitMs)).task
  }

  async listTasks(status: TaskStatus | undefined, limit: number, after: string | undefined) {
    const query: StatusQuery = { op: "list", limit, ...(status && { status }), ...(after && { after }) }
    return this.ask(query, TaskPageReply)
  }

  /** Revoke a task that has not started; the reply says why not otherwise. */
  async revokeTask(taskId: string) {
    return this.ask({ op: "revoke", task_id: taskId }, RevokeReply)
  }

  /** The group, held up to `waitMs` until it is final; null when the store has never heard of it. */
  async group(groupId: string, waitMs = 0) {
    const query: StatusQuery = { op: "group", group_id: groupId, ...(waitMs > 0 && { wait_ms: waitMs }) }
    return (await this.ask(query, GroupReply, waitMs)).group
  }

  /** Claim an Idempotency-Key; held while another request with the key is still publishing. */
  async claim(query: Extract<StatusQuery, { op: "claim" }>) {
    return this.ask(query, ClaimReply, query.lease_ms)
  }
}

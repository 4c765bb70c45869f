// The gateway's side of the status store's RPC: one method per query op, each reply checked against its contract.
import * as v from "valibot"
import type { Broker } from "../../shared/amqp.ts"
import {
  ClaimReply,
  DetailReply,
  GroupReply,
  InFlightReply,
  LookupTooLarge,
  MAX_QUERIES_PER_REQUEST,
  PurgeReply,
  QueuePauseReply,
  QueuePausesReply,
  RevokeReply,
  type ScheduleDefinition,
  ScheduleListReply,
  type SchedulePatch,
  ScheduleReply,
  StatsReply,
  type StatusQuery,
  type TaskKind,
  TaskLookup,
  TaskPageReply,
  type TaskRecord,
  TaskReply,
  type TaskRoute,
  type TaskStatus,
  WorkersReply,
} from "../../shared/contracts.ts"
import { Problem } from "../../shared/http.ts"
import { askStatusStore, checkStatusReply } from "../../shared/status-rpc.ts"

const LOOKUP_ANSWER = v.union([TaskLookup, LookupTooLarge])

type Owner = string | undefined
interface LookupOptions {
  waitMs?: number
  /** The largest answer to take: past it the store answers `too_large` with how many tasks fit. */
  maxBytes?: number
  owner?: Owner
}

interface PendingQuery {
  query: StatusQuery
  answered: PromiseWithResolvers<unknown>
}

/**
 * The answer for a task or group the store held once and has deleted since (RESULT_EXPIRES): 410 rather than 404,
 * so that a client can tell a result it came too late for from an id that never was.
 */
function expired(what: "task" | "group", id: string): Problem {
  return new Problem(
    410,
    `${what} ${id} has expired: the status store deletes a task's result RESULT_EXPIRES after it ends (1 day by default)`,
  )
}

/** A task's reply, or 410 when the task expired. */
function unlessExpired<TReply extends { expired?: true | undefined }>(reply: TReply, id: string): TReply {
  if (reply.expired) throw expired("task", id)
  return reply
}

export class StatusStoreClient {
  private pending: PendingQuery[] = []

  constructor(
    private readonly broker: Broker,
    /** How long the store may take to answer, on top of any wait the query asks it to hold. */
    private readonly timeoutMs: number,
  ) {}

  /**
   * Quick queries of the same turn share one request and one reply: under load that turns a round trip per
   * GET into one per turn, which is most of what the broker saves. A query that holds its reply goes alone,
   * so that it never holds up the others.
   */
  private async ask<TSchema extends v.GenericSchema>(
    query: StatusQuery,
    schema: TSchema,
    holdMs = 0,
  ): Promise<v.InferOutput<TSchema>> {
    let answer: unknown
    if (holdMs > 0) {
      ;[answer] = await this.send([query], holdMs)
    } else {
      const answered = Promise.withResolvers<unknown>()
      this.pending.push({ query, answered })
      if (this.pending.length === 1) setImmediate(() => this.flush())
      answer = await answered.promise
    }
    return checkStatusReply(schema, answer)
  }

  private flush(): void {
    // A request carries at most MAX_QUERIES_PER_REQUEST: the rest of a busy turn goes in the next ones.
    const batch = this.pending.splice(0, MAX_QUERIES_PER_REQUEST)
    if (this.pending.length > 0) setImmediate(() => this.flush())
    this.send(batch.map((p) => p.query)).then(
      (replies) => {
        batch.forEach((p, i) => {
          p.answered.resolve(replies[i])
        })
      },
      (err) => {
        for (const p of batch) p.answered.reject(err)
      },
    )
  }

  private send(queries: StatusQuery[], holdMs = 0): Promise<unknown[]> {
    return askStatusStore(this.broker, "gateway", queries, holdMs + this.timeoutMs)
  }

  /**
   * The task, or null when the store has never heard of it (after reading every event queued before) or it is
   * not `owner`'s; a 410 Problem when it expired. Every method that reads or acts on tasks takes the owner: undefined sees them all.
   */
  async getTask(
    taskId: string,
    { waitMs = 0, catchUp = false, owner }: { waitMs?: number; catchUp?: boolean; owner?: Owner } = {},
  ): Promise<TaskRecord | null> {
    const query: StatusQuery = {
      op: "get",
      task_id: taskId,
      ...(waitMs > 0 && { wait_ms: waitMs }),
      ...(catchUp && { catch_up: true }),
      ...(owner !== undefined && { owner }),
    }
    return unlessExpired(await this.ask(query, TaskReply, waitMs), taskId).task
  }

  async listTasks(
    status: TaskStatus | undefined,
    limit: number,
    after: string | undefined,
    {
      kind,
      idPrefix,
      owner,
    }: { kind?: TaskKind | undefined; idPrefix?: string | undefined; owner?: Owner } = {},
  ) {
    const query: StatusQuery = {
      op: "list",
      limit,
      ...(owner !== undefined && { owner }),
      ...(status && { status }),
      ...(kind && { kind }),
      ...(idPrefix && { id_prefix: idPrefix }),
      ...(after && { after }),
    }
    return this.ask(query, TaskPageReply)
  }

  /**
   * Each task's record in the order asked, null for an id the store has never heard of; held up to `waitMs`
   * until all are final.
   */
  async lookupTasks(taskIds: string[], { waitMs = 0, maxBytes, owner }: LookupOptions = {}) {
    const query: StatusQuery = {
      op: "lookup",
      task_ids: taskIds,
      ...(owner !== undefined && { owner }),
      ...(waitMs > 0 && { wait_ms: waitMs }),
      ...(maxBytes !== undefined && { max_bytes: maxBytes }),
    }
    return this.ask(query, LOOKUP_ANSWER, waitMs)
  }

  /** The task with its input and timeline, or null when the store has never heard of it. */
  async taskDetail(taskId: string, owner?: Owner) {
    const query: StatusQuery = { op: "detail", task_id: taskId, ...(owner !== undefined && { owner }) }
    return unlessExpired(await this.ask(query, DetailReply), taskId).detail
  }

  /** How many of the owner's tasks are in flight (submitted, not final). */
  async inFlight(owner: string) {
    return (await this.ask({ op: "in_flight", owner }, InFlightReply)).in_flight
  }

  /** Counts, rates, latency percentiles over `windowS` and throughput per second over `seriesS`. */
  async stats(seriesS: number, windowS: number) {
    return (await this.ask({ op: "stats", series_s: seriesS, window_s: windowS }, StatsReply)).stats
  }

  /** Every worker heard from lately, with its last heartbeat and whether it is online, lost or offline. */
  async workers() {
    return (await this.ask({ op: "workers" }, WorkersReply)).workers
  }

  /** Revoke a task that has not started; the reply says why not otherwise. */
  async revokeTask(taskId: string, owner?: Owner, terminate = false) {
    const query = { op: "revoke", task_id: taskId, ...(owner !== undefined && { owner }), terminate } as const
    return unlessExpired(await this.ask(query, RevokeReply), taskId)
  }

  /** Every work queue ever paused or resumed, and whether it is paused now. */
  async queuePauses() {
    return (await this.ask({ op: "queue_pauses" }, QueuePausesReply)).queue_pauses
  }

  /** Pause or resume a work queue: kept by the store, which tells every worker. */
  async pauseQueue(queue: TaskRoute, paused: boolean) {
    return (await this.ask({ op: "pause_queue", queue, paused }, QueuePauseReply)).queue_pause
  }

  /** Revoke ("purged") every task of the queue that has not started; `extraMs` on top of the usual timeout. */
  async purgeQueue(queue: TaskRoute, extraMs: number) {
    return (await this.ask({ op: "purge_queue", queue }, PurgeReply, extraMs)).revoked
  }

  /** End FAILURE a task the broker refused to queue, if its record is still at that run's PENDING. */
  async refused(taskId: string, run: number, error: string) {
    return (await this.ask({ op: "refused", task_id: taskId, run, error }, TaskReply)).task
  }

  /** The group, held up to `waitMs` until it is final; null when the store has never heard of it. */
  async group(groupId: string, waitMs = 0, owner?: Owner) {
    const query: StatusQuery = {
      op: "group",
      group_id: groupId,
      ...(waitMs > 0 && { wait_ms: waitMs }),
      ...(owner !== undefined && { owner }),
    }
    const reply = await this.ask(query, GroupReply, waitMs)
    if (reply.expired) throw expired("group", groupId)
    return reply.group
  }

  /** Claim an Idempotency-Key; held while another request with the key is still publishing. */
  async claim(query: Extract<StatusQuery, { op: "claim" }>) {
    return this.ask(query, ClaimReply, query.lease_ms)
  }

  /** A new schedule; `conflict` when the id is taken, `invalid` when the store will not have it. */
  async createSchedule(id: string, definition: ScheduleDefinition, paused: boolean, owner: string | null) {
    return this.ask({ op: "schedule_create", id, definition, paused, owner }, ScheduleReply)
  }

  /** Every schedule, or only this owner's. */
  async schedules(owner?: string) {
    return (await this.ask({ op: "schedule_list", ...(owner && { owner }) }, ScheduleListReply)).schedules
  }

  /** The schedule, or null when there is none with this id (that the owner may see). */
  async schedule(id: string, owner?: string) {
    return (await this.ask({ op: "schedule_get", id, ...(owner && { owner }) }, ScheduleReply)).schedule
  }

  /** The patched schedule (null: no such id), or `invalid` with the reason the patch is refused. */
  async updateSchedule(id: string, patch: SchedulePatch, owner?: string) {
    return this.ask({ op: "schedule_update", id, patch, ...(owner && { owner }) }, ScheduleReply)
  }

  /** The schedule deleted, or null when there was none with this id (that the owner may see). */
  async deleteSchedule(id: string, owner?: string) {
    return (await this.ask({ op: "schedule_delete", id, ...(owner && { owner }) }, ScheduleReply)).schedule
  }
}

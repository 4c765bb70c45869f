// The status store's database, as one interface over its backends (SQLite, embedded, the default; PostgreSQL
// for several replicas). Async, as PostgreSQL is; the SQLite backend answers at once. Every backend applies
// events through task-state.ts's `mergeEvent` under a lock on the task's row, and keeps the dashboard's figures
// in the same transaction, so that what it stores never depends on which process applied what.
//
// To add state to tasks (a column, a table): add it to task-state.ts (TaskRow, TASK_COLUMNS, mergeEvent), then
// a migration to each backend's MIGRATIONS list (sqlite.ts, postgres-schema.ts); the store tests run on both.
import type {
  DashboardStats,
  QueuePause,
  TaskDetail,
  TaskEvent,
  TaskKind,
  TaskProgress,
  TaskRoute,
  TaskStatus,
  WorkerHeartbeat,
  WorkerRecord,
} from "../../shared/contracts.ts"
import type { ScheduleStore } from "./schedules.ts"
import type { Applied, GroupRow, RevokeOutcome, TaskRow } from "./task-state.ts"
import type { WebhookStore } from "./webhooks.ts"

export interface ListFilter {
  /** Only this API key's tasks. */
  owner?: string | undefined
  status?: TaskStatus | undefined
  kind?: TaskKind | undefined
  idPrefix?: string | undefined
}

/** An Idempotency-Key's claim: which request it belongs to, the ids it was given, and for how long. */
export interface Claim {
  key: string
  fingerprint: string
  group_id: string | null
  task_ids: string[]
  lease_until: number
  expires_at: number
}

/** A succeeded task as a polarity report reads it (polarity-report.ts). */
export interface ReportRow {
  task_id: string
  kind: string | null
  result: string | null
}

/** What applying a batch of events did. */
export interface EventsOutcome {
  applied: Applied[]
  refused: { event: TaskEvent; reason: string }[]
}

export interface HeldEvent {
  event: TaskEvent
  heldAt: number
  /** What it waits for, e.g. "the task's submission (its PENDING)". */
  waitingFor: string
}

export interface StatusStore {
  /**
   * Admit events (task-state.ts's `admit`) and apply those that may be, in one transaction, once each (by the
   * inbox). An event whose cause has not arrived is held, with `now` as its time, and admitted again whenever
   * another event of its task is applied; `applied` are those new to the inbox (held ones included), with their
   * rows; `refused` will never be. An event of a task the store does not hold, minted by the expiry horizon or
   * expired by a batch whose mark has not settled, is refused: its task's result expired (task-state.ts's
   * `Expiries`).
   */
  applyEvents(events: TaskEvent[], now?: number): Promise<EventsOutcome>
  /**
   * Delete up to `limit` final tasks that ended before `before` (a REVOKED one also not due before it), oldest end
   * first, with everything kept by task: inbox rows (the timeline), held events, webhook deliveries and attempts,
   * and a group once its last task is gone; the status counts go down with them. Never a task that is not final.
   * Each batch leaves a mark, its latest mint time (task-state.ts's `horizonAfter`), and the ids it deleted; marks
   * left before `settledBefore` move the expiry horizon up and go, with those ids, so that the horizon by which
   * events are refused trails the deletions: a submission may be that much later than the ones that expired before
   * it is taken for a copy of an expired task. Until then the ids refuse their own tasks' events. Returns how many tasks went (fewer than `limit`: none is left to expire for now) and the horizon
   * by which reads tell expired from unknown: the latest mark, settled or not.
   */
  expireResults(
    before: number,
    limit: number,
    settledBefore: number,
  ): Promise<{ expired: number; horizon: number | null }>
  /** Events held since before `before`, oldest first: their cause never came, so they are to be dead-lettered. */
  heldBefore(before: number, limit: number): Promise<HeldEvent[]>
  /** Drop held events, once they are dead-lettered. */
  forgetHeld(events: TaskEvent[]): Promise<void>
  /** Keep each worker's latest heartbeat, and only the `keep` workers heard from most recently. */
  recordHeartbeats(heartbeats: WorkerHeartbeat[], seenAt: number, keep?: number): Promise<void>
  /**
   * Keep each task's latest progress report (`progress_report`); one older than the report held (task-state.ts's
   * `supersedes`), or of a task the store has not heard of, is dropped.
   */
  recordProgress(reports: TaskProgress[]): Promise<void>
  find(taskId: string): Promise<TaskRow | null>
  /** The rows of these tasks, in the order asked (null for one the store has not heard of). */
  findMany(taskIds: string[]): Promise<(TaskRow | null)[]>
  /**
   * Up to `limit` tasks before `after` (all when absent), newest first: UUIDv7 ids sort by creation. Each filter
   * has an index that holds the tasks in id order, so a page reads its own rows and no others.
   */
  list(filter: ListFilter, limit: number, after?: string): Promise<TaskRow[]>
  /** The task with its input and timeline, or null for a task the store has not heard of. */
  detail(taskId: string): Promise<TaskDetail | null>
  /** The group and its tasks in input order, or null for a group the store has not heard of. */
  findGroup(groupId: string): Promise<{ group: GroupRow; members: TaskRow[] } | null>
  /**
   * Revoke a task that has not started (SCHEDULED, PENDING, or RETRY waiting for its next attempt), or with
   * `terminate` one that runs: checked and written under one lock on its row. `applied` holds the REVOKED event
   * when it was written.
   */
  revoke(
    taskId: string,
    at: number,
    terminate: boolean,
  ): Promise<{ outcome: RevokeOutcome; row: TaskRow | null; applied: Applied[] }>
  /**
   * A purge: revoke, with `reason`, up to `limit` tasks of these kinds that have not started (SCHEDULED, PENDING,
   * RETRY), each under the lock on its row as `revoke` does; the REVOKED events applied. Called until it revokes
   * fewer than `limit`.
   */
  revokeNotStarted(kinds: TaskKind[], at: number, reason: string, limit: number): Promise<Applied[]>
  /** Every work queue ever paused or resumed, with whether it is paused now. */
  queuePauses(): Promise<QueuePause[]>
  /** Pause or resume a queue; `changed_at` is `at`, or 1 ms after the change before when the clock lags. */
  setQueuePaused(queue: TaskRoute, paused: boolean, at: number): Promise<QueuePause>
  /** How many of this owner's tasks are in flight (not final): kept by the events, never counted by a scan. */
  inFlight(owner: string): Promise<number>
  /** SCHEDULED tasks whose eta has come become PENDING (their counts too); how many did. */
  promoteDueTasks(now: number): Promise<number>
  /** The most recently revoked tasks, newest first, with the run each revoke ended. */
  recentlyRevoked(limit: number): Promise<{ task_id: string; run: number }[]>
  stats(now: number, seriesSeconds: number, windowSeconds: number): Promise<DashboardStats>
  statusCounts(): Promise<Record<TaskStatus, number>>
  workers(now: number, lostAfterMissed: number): Promise<WorkerRecord[]>
  /**
   * Record `claim` unless the key holds an unexpired claim already (atomically: of two requests with one key,
   * on any replicas, one wins). Returns null when `claim` was recorded, else the claim the key holds.
   */
  claimKey(claim: Claim, now: number): Promise<Claim | null>
  /** Extend the lease of a claim whose lease is still `leaseWas` (a takeover); false when another got there first. */
  renewLease(key: string, leaseWas: number, leaseUntil: number): Promise<boolean>
  forgetExpiredClaims(now: number): Promise<number>
  /** Forget throughput and latency from before `statsBefore`, and workers not heard from since `workersBefore`. */
  prune(statsBefore: number, workersBefore: number): Promise<void>
  /**
   * Up to `limit` succeeded reviews and documents with ids in [fromId, toId) after `afterId`, in id order; only
   * `owner`'s when given. A polarity report reads its window a slice at a time with it.
   */
  succeededBetween(
    fromId: string,
    toId: string,
    afterId: string,
    limit: number,
    owner: string | undefined,
  ): Promise<ReportRow[]>
  /** Resolves once the database has answered a trivial query: what /healthz reports. */
  ping(): Promise<void>
  /** Completion webhooks due and the attempts made at them. */
  webhooks: WebhookStore
  /** The periodic schedules and the occurrences claimed of them. */
  schedules: ScheduleStore
  close(): Promise<void>
}

/** A database migrated by a newer store is refused, rather than written to on assumptions that no longer hold. */
export function newerSchemaError(version: number, known: number): Error {
  return new Error(
    `the database is at schema version ${version}, newer than this status store's ${known}: run a newer store`,
  )
}

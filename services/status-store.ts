// status-store: consumes the task events into SQLite or PostgreSQL as a monotonic state machine, and answers
// status queries over reply-to RPC (optionally holding the reply until the task is final). It keeps the
// periodic schedules too, and fires them (status-store/scheduler.ts): every replica does, each occurrence once.
import { Buffer } from "node:buffer"
import type { AMQPMessage } from "@cloudamqp/amqp-client"
import * as v from "valibot"
import { Broker, brokerOptions, type Consumer, directReplyTo, PoisonMessage } from "../shared/amqp.ts"
import { BrokerEnv, durationVar, integerVar, loadConfig, picklistVar, stringVar } from "../shared/config.ts"
import {
  FINAL_STATUSES,
  MessageType,
  type QueuePause,
  type StatusQuery,
  type StatusReply,
  TASK_KINDS,
  type TaskEvent,
  type TaskProgress,
  type WebhookAttempt,
  type WebhookDelivery,
  type WorkerHeartbeat,
} from "../shared/contracts.ts"
import { EventPublisher, TaskPublisher } from "../shared/events.ts"
import { runAsProgram, serveHealthAndMetrics } from "../shared/http.ts"
import { createLogger, type Logger } from "../shared/log.ts"
import { ServiceMetrics } from "../shared/metrics.ts"
import { pendingEvent } from "../shared/tasks.ts"
import {
  BARRIER_KEY,
  delayEntryExchange,
  delayRoutingKey,
  QUEUE_PAUSE_KEY,
  routeTask,
  type Service,
} from "../shared/topology.ts"
import { Barriers } from "./status-store/barriers.ts"
import {
  type ChangeFeed,
  type ChangeListener,
  inProcessFeed,
  postgresFeed,
} from "./status-store/change-feed.ts"
import { decodeInbound, decodeRequest } from "./status-store/inbound.ts"
import { StoreMetrics } from "./status-store/metrics.ts"
import { polarityReport } from "./status-store/polarity-report.ts"
import { openPostgresStore } from "./status-store/postgres.ts"
import { loadScheduleFile, startScheduler } from "./status-store/scheduler.ts"
import { openSqliteStore } from "./status-store/sqlite.ts"
import type { EventsOutcome, StatusStore } from "./status-store/store.ts"
import {
  type Applied,
  currentRun,
  expiredBy,
  type TaskRow,
  toGroupRecord,
  toRecord,
  visibleTo,
} from "./status-store/task-state.ts"
import { type DeliveryRow, dueDelivery } from "./status-store/webhooks.ts"

const SERVICE = "status-store" satisfies Service

/** The messages never repeat the URL: it may hold a password. */
const databaseUrl = v.pipe(
  v.string(),
  v.trim(),
  v.check(
    (url) => URL.canParse(url) && ["postgres:", "postgresql:"].includes(new URL(url).protocol),
    "must be a postgres:// or postgresql:// URL (unset, the store uses the SQLite file at DATABASE_PATH)",
  ),
  // Runs after a failed check too: only a URL has a host to look at.
  v.check(
    (url) => !URL.canParse(url) || new URL(url).hostname !== "",
    "must name the PostgreSQL server's host",
  ),
)

export const StoreEnv = {
  ...BrokerEnv,
  STATUS_STORE_HOST: stringVar("0.0.0.0"),
  STATUS_STORE_PORT: integerVar(9002, 0, 65535),
  DATABASE_PATH: stringVar("./data/status-store.sqlite"),
  /**
   * A postgres:// URL: the store runs on PostgreSQL, where several replicas can share the database; without it,
   * on the SQLite file at DATABASE_PATH, which one process owns.
   */
  DATABASE_URL: v.optional(databaseUrl),
  /** PostgreSQL connections each replica opens at most. */
  DATABASE_POOL_SIZE: integerVar(10, 1, 1000),
  /**
   * On PostgreSQL: how often a held query (`?wait=`, a group, a lookup) reads again when no replica told it of a
   * change, in ms. Notices go out after each commit, so only a replica's crash or a dropped connection loses one.
   */
  WAIT_RECHECK_MS: integerVar(1000, 50, 600_000),
  /** FULL: an acked event survives power loss. NORMAL: survives a process crash, and commits faster. */
  SQLITE_SYNCHRONOUS: picklistVar(["FULL", "NORMAL"], "FULL"),
  /** Event messages in hand at once; all that arrive in one turn of the event loop commit in one transaction. */
  EVENTS_PREFETCH: integerVar(500, 1, 65535),
  /**
   * How long an event waits for its cause (the task's PENDING, the run's PENDING, the previous attempt's RETRY)
   * before it is dead-lettered as one that will never apply, in seconds.
   */
  EVENT_HOLD_SECONDS: integerVar(300, 1, 7 * 24 * 3600),
  /** How long an Idempotency-Key is remembered, in seconds. */
  IDEMPOTENCY_KEY_TTL_SECONDS: integerVar(24 * 3600, 1, 30 * 24 * 3600),
  /**
   * How long a final task is kept after it ended (Celery's `result_expires`): its record, timeline and input go
   * then, and reading it answers 410. `never` (or 0) keeps results for ever.
   */
  RESULT_EXPIRES: durationVar("1d", 1000, { never: true }),
  /** Final tasks deleted in one transaction at most, when their results expire. */
  RESULT_EXPIRY_BATCH: integerVar(500, 1, 100_000),
  /**
   * The pause between two expiry batches while more results are due, so that events commit in between: a batch of
   * 500 took 35–45 ms on the bench machine, which is as long as events ever wait for expiry (docs/performance.md).
   */
  RESULT_EXPIRY_PAUSE_MS: integerVar(20, 1, 60_000),
  /** How long the dashboard's per-second throughput and latency histograms are kept, in hours. */
  STATS_RETENTION_HOURS: integerVar(24, 1, 24 * 366),
  /** A worker whose heartbeats stopped is shown as lost after this many intervals without one. */
  WORKER_LOST_AFTER_MISSED: integerVar(3, 1, 1000),
  /**
   * Workers listed at most: past it, those heard from least recently are forgotten, so that a flood of forged
   * heartbeats cannot grow the store or the dashboard without bound (real workers come back at their next one).
   */
  MAX_WORKERS_TRACKED: integerVar(1000, 1, 100_000),
  /** A worker not heard from for this long (lost, or stopped) is no longer listed, in seconds. */
  WORKER_FORGET_AFTER_SECONDS: integerVar(3600, 60, 30 * 24 * 3600),
  /** A JSON file of schedules (as POST /schedules takes them, each with its id) to make the schedules match at start. */
  SCHEDULES_FILE: v.optional(v.pipe(v.string(), v.trim(), v.nonEmpty("must not be empty"))),
  /** How often the store looks for schedules that are due: the most an occurrence fires late when all is well. */
  SCHEDULER_TICK_MS: integerVar(250, 10, 60_000),
  /** An occurrence at most this late still fires under `missed: "skip"`; a later one counts as missed. */
  SCHEDULE_MISFIRE_GRACE_SECONDS: integerVar(60, 1, 366 * 24 * 3600),
}
export type StoreConfig = ReturnType<typeof loadStoreConfig>
export const loadStoreConfig = (env: Record<string, string | undefined> = process.env) =>
  loadConfig(StoreEnv, env)

/** PostgreSQL when DATABASE_URL is set, else the SQLite file at DATABASE_PATH. */
async function openStore(config: StoreConfig, log: Logger): Promise<StatusStore> {
  if (config.DATABASE_URL) return openPostgresStore(config.DATABASE_URL, config.DATABASE_POOL_SIZE)
  const db = openSqliteStore(config.DATABASE_PATH, config.SQLITE_SYNCHRONOUS)
  if (!db.incrementalVacuum && config.RESULT_EXPIRES > 0)
    log.warn(
      "database made without incremental auto-vacuum: expired results free pages for reuse, the file does not shrink",
      { database: config.DATABASE_PATH },
    )
  return db
}

/**
 * Replicas on PostgreSQL tell each other what they applied by NOTIFY; one process on its SQLite file tells
 * itself (status-store/change-feed.ts).
 */
function openChangeFeed(
  config: StoreConfig,
  replica: string,
  log: Logger,
  listener: ChangeListener,
): Promise<ChangeFeed> {
  if (!config.DATABASE_URL) return Promise.resolve(inProcessFeed(listener))
  return postgresFeed(config.DATABASE_URL, replica, listener, log, config.WAIT_RECHECK_MS)
}

/** Where the store keeps its tasks, for the log: the server and database, never the password. */
function databaseOf(config: StoreConfig): string {
  if (!config.DATABASE_URL) return config.DATABASE_PATH
  const url = new URL(config.DATABASE_URL)
  return `postgres://${url.host}${url.pathname}`
}

/** Queries held until something about a key (a task, a group) changes, or their time is up. */
class Waiters {
  private readonly byKey = new Map<string, Set<() => void>>()

  get size(): number {
    return this.byKey.size
  }

  wait(key: string, ms: number): Promise<void> {
    return this.watch(key, ms).woken
  }

  /**
   * Watch the key from now on: `woken` resolves at its next wake or after `ms`; `cancel` ends the watch. Watch
   * before reading what the key guards, so that a wake that comes while the read is under way is not missed.
   */
  watch(key: string, ms: number): { woken: Promise<void>; cancel(): void } {
    const { promise, resolve } = Promise.withResolvers<void>()
    const waiters = this.byKey.get(key) ?? new Set()
    this.byKey.set(key, waiters)
    const timer = setTimeout(resolve, ms)
    waiters.add(resolve)
    const woken = promise.finally(() => {
      clearTimeout(timer)
      waiters.delete(resolve)
      if (waiters.size === 0) this.byKey.delete(key)
    })
    return { woken, cancel: resolve }
  }

  /**
   * Read until `open(value)` no longer holds or `deadline` passes, waiting for a wake of `key` (or `sliceMs`)
   * between reads. The watch is set before each read: on PostgreSQL a read takes a round trip, during which the
   * task may end and its wake go by.
   */
  async readUntil<T>(
    key: string,
    deadline: number,
    sliceMs: number,
    read: () => Promise<T>,
    open: (value: T) => boolean,
  ): Promise<T> {
    for (;;) {
      const watch = this.watch(key, Math.max(0, Math.min(deadline - Date.now(), sliceMs)))
      const value = await read()
      if (!open(value) || Date.now() >= deadline) {
        watch.cancel()
        return value
      }
      await watch.woken
    }
  }

  wake(key: string): void {
    for (const wake of this.byKey.get(key) ?? []) wake()
  }

  wakeAll(): void {
    for (const key of [...this.byKey.keys()]) this.wake(key)
  }
}

const isOpen = (row: TaskRow | null) => row !== null && !FINAL_STATUSES.has(row.status)

type LookupQuery = Extract<StatusQuery, { op: "lookup" }>
type GroupQuery = Extract<StatusQuery, { op: "group" }>

/** A task record's bytes besides its result and error: ids, status, times (a generous round figure). */
const RECORD_BYTES = 400

/**
 * `too_large` when the records of `rows` would pass `maxBytes`, counted from the stored JSON before any is built:
 * a lookup of 1,000 long documents' results must not grow the store's memory to build an answer nobody can take.
 */
function answerTooLarge(rows: (TaskRow | null)[], maxBytes: number) {
  let bytes = 0
  for (const [index, row] of rows.entries()) {
    bytes += RECORD_BYTES
    if (row?.result) bytes += Buffer.byteLength(row.result)
    if (row?.error) bytes += Buffer.byteLength(row.error)
    if (bytes > maxBytes) return { too_large: { max_bytes: maxBytes, fit: index } }
  }
  return undefined
}

/**
 * Message bytes one transaction takes at most. SQLite keeps a transaction's pages in memory until it commits: a
 * store catching up took thousands of events in one turn, and one transaction of 10,000 tasks' events peaked at
 * 115 MB of RSS (2,000-byte reviews: 151 MB for 2,000 tasks), against 74–78 MB in slices of this size.
 */
export const MAX_COMMIT_BYTES = 512 * 1024

interface Delivery {
  msg: AMQPMessage
  events: TaskEvent[]
  barrierId?: string
  heartbeat?: WorkerHeartbeat
  progress?: TaskProgress[]
  webhookAttempt?: WebhookAttempt
}

/**
 * With several replicas, a barrier is done once every replica has told it committed what it was given before it;
 * should a notice be lost, the query it holds fails after this long rather than never (its caller gave up by then).
 */
const BARRIER_COVER_MS = 10_000

/** Tasks a purge revokes in one transaction: each batch's REVOKED events go out before the next is read. */
const PURGE_BATCH = 1000

/** Deliveries published to the webhook queue at once. */
const DELIVERIES_AT_ONCE = 100
/** How often deliveries left unqueued (a crash between the commit and the publish) are published again. */
const DELIVERY_SWEEP_MS = 5000
/**
 * How long /healthz waits for the database to answer `SELECT 1` before it reports it unreachable: long enough
 * for a busy pool to hand out a connection, short of a probe's usual timeout.
 */
const DATABASE_PING_MS = 2000

export async function start(config: StoreConfig) {
  const log = createLogger(SERVICE, config.LOG_LEVEL)
  const metrics = new ServiceMetrics(SERVICE)
  /** This replica, as the schedules' claims and the change feed's notices name it. */
  const replica = crypto.randomUUID()
  const db = await openStore(config, log)
  if (config.SCHEDULES_FILE) {
    await loadScheduleFile(db.schedules, config.SCHEDULES_FILE, log).catch(async (err: Error) => {
      await db.close()
      throw err
    })
  }
  const broker = await Broker.connect({
    ...brokerOptions(SERVICE, config, log),
    onReconnected: () => metrics.brokerReconnects.inc(),
  })
  const { statusEventsQueue, statusRpcQueue } = broker.names
  const events = new EventPublisher(broker)
  const tasks = new TaskPublisher(broker)
  const storeMetrics = new StoreMetrics(metrics, () => db.statusCounts())

  // --- events: decode, commit a turn's worth in one transaction, ack after the commit
  /** Resolved once the events consumer is subscribed: another replica's barrier may ask to settle before. */
  const consuming = Promise.withResolvers<Consumer>()
  let uncommitted: Delivery[] = []
  let uncommittedBytes = 0
  /** Commits run one at a time, in order; events that arrive meanwhile make up the next one. */
  let commits: Promise<void> = Promise.resolve()
  const taskWaiters = new Waiters()
  const groupWaiters = new Waiters()
  const arrivalWaiters = new Waiters()
  const changes = await openChangeFeed(config, replica, log, {
    changed(changed, here) {
      for (const taskId of changed.ended) taskWaiters.wake(taskId)
      for (const groupId of changed.groups) groupWaiters.wake(groupId)
      if (!here) barriers.noticed(changed)
    },
    missed() {
      taskWaiters.wakeAll()
      groupWaiters.wakeAll()
      arrivalWaiters.wakeAll()
    },
  }).catch(async (err: Error) => {
    await Promise.allSettled([broker.close(), db.close()])
    throw err
  })
  const barriers = new Barriers({
    shared: changes.shared,
    async settle() {
      const consumers = await (await consuming.promise).sync()
      await commitInHand()
      return consumers
    },
    announce: ({ passed, flushed }) => void changes.publish({ ended: [], groups: [], passed, flushed }),
    coverMs: BARRIER_COVER_MS,
  })

  function handleEventMessage(msg: AMQPMessage): Promise<void> | undefined {
    try {
      const inbound = decodeInbound(msg)
      uncommitted.push({ msg, events: [], ...inbound })
    } catch (err) {
      if (!(err instanceof PoisonMessage)) throw err
      return broker.deadLetter(msg, statusEventsQueue, err.message)
    }
    uncommittedBytes += msg.bodySize
    if (uncommittedBytes >= MAX_COMMIT_BYTES) commitInHand()
    else if (uncommitted.length === 1) setImmediate(commitInHand)
  }

  /** Queue a commit of the events in hand; resolves once it (and every commit before it) is done. */
  function commitInHand(): Promise<void> {
    const deliveries = uncommitted
    uncommitted = []
    uncommittedBytes = 0
    // A turn's commit scheduled before a full one went out may find nothing left.
    if (deliveries.length > 0) commits = commits.then(() => commit(deliveries))
    return commits
  }

  async function commit(deliveries: Delivery[]): Promise<void> {
    const events = deliveries.flatMap((d) => d.events)
    const heartbeats = deliveries.flatMap((d) => (d.heartbeat ? [d.heartbeat] : []))
    const progress = deliveries.flatMap((d) => d.progress ?? [])
    const attempts = deliveries.flatMap((d) => (d.webhookAttempt ? [d.webhookAttempt] : []))
    let applied: Applied[]
    try {
      const outcome = await applyEvents(events)
      applied = outcome.applied
      if (heartbeats.length > 0) await db.recordHeartbeats(heartbeats, Date.now(), config.MAX_WORKERS_TRACKED)
      if (progress.length > 0) await db.recordProgress(progress)
      if (attempts.length > 0) await db.webhooks.recordAttempts(attempts)
      // Before the acks: should the dead letter not go out, the deliveries come back and are refused again.
      await deadLetterEvents(outcome.refused)
    } catch (err) {
      log.error("event commit failed, requeueing", { events: events.length, err })
      for (const { msg } of deliveries) msg.nack(true).catch(() => {})
      return
    }
    for (const { msg } of deliveries) msg.ack().catch(() => {})
    barriers.passedHere(deliveries.flatMap(({ barrierId }) => (barrierId ? [barrierId] : [])))
    announce(applied)
    const made = applied.flatMap(({ before, after }) => dueDelivery(before, after, Date.now()) ?? [])
    if (made.length > 0) void queueMade(made)
  }

  // --- completion webhooks: the deliveries the commits made due go to the webhook queue (through the ladder)
  let queueing = false
  let queueAgain = false

  /**
   * The deliveries this replica's commit made due go out at once, by this replica alone: the others' commits made
   * theirs, and a delivery left unqueued (a crash, a failed publish) is the sweep's, once it is older than a sweep.
   */
  async function queueMade(made: DeliveryRow[]): Promise<void> {
    try {
      await Promise.all(made.map(queueDelivery))
    } catch (err) {
      log.warn("webhook deliveries not queued; they will be on the next sweep", {
        err: (err as Error).message,
      })
    }
  }

  /** Publish every delivery left unqueued for a sweep or more, then mark it; one run at a time. */
  async function queueDeliveries(): Promise<void> {
    if (queueing) {
      queueAgain = true
      return
    }
    queueing = true
    try {
      do {
        queueAgain = false
        const due = await db.webhooks.unqueued(Date.now() - DELIVERY_SWEEP_MS, DELIVERIES_AT_ONCE)
        await Promise.all(due.map(queueDelivery))
        if (due.length === DELIVERIES_AT_ONCE) queueAgain = true
      } while (queueAgain)
    } catch (err) {
      log.warn("webhook deliveries not queued; they will be on the next sweep", {
        err: (err as Error).message,
      })
    } finally {
      queueing = false
    }
  }

  async function queueDelivery(delivery: DeliveryRow): Promise<void> {
    const message = {
      delivery_id: delivery.delivery_id,
      task_id: delivery.task_id,
      url: delivery.url,
      attempt: 1,
      record: JSON.parse(delivery.record),
    } satisfies WebhookDelivery
    await broker.publish(
      delayEntryExchange(broker.names),
      delayRoutingKey(0, "webhook"),
      JSON.stringify(message),
      {
        type: MessageType.webhookDelivery,
        messageId: delivery.delivery_id,
      },
    )
    await db.webhooks.markQueued(delivery.delivery_id, Date.now())
  }

  async function applyEvents(events: TaskEvent[]): Promise<EventsOutcome> {
    if (events.length === 0) return { applied: [], refused: [] }
    const endTimer = storeMetrics.commitSeconds.startTimer()
    const outcome = await db.applyEvents(events, Date.now())
    endTimer()
    storeMetrics.eventsCommitted(events.length, outcome.applied)
    return outcome
  }

  /** Events that may never change their task (task-state.ts's `admit`), dead-lettered together with why. */
  async function deadLetterEvents(refused: { event: TaskEvent; reason: string }[]): Promise<void> {
    if (refused.length === 0) return
    const reasons = [
      ...new Set(refused.map(({ event, reason }) => `${event.state} of ${event.task_id}: ${reason}`)),
    ]
    const reason = `${refused.length} event(s) refused: ${reasons.slice(0, 10).join("; ")}`.slice(0, 2000)
    const body = JSON.stringify({ events: refused.map(({ event }) => event) })
    await broker.publishDeadLetter(body, statusEventsQueue, reason, "poison")
  }

  /** Held events whose cause never came within EVENT_HOLD_SECONDS: dead-lettered, then forgotten. */
  async function expireHeld(): Promise<void> {
    for (;;) {
      const expired = await db.heldBefore(Date.now() - config.EVENT_HOLD_SECONDS * 1000, 1000)
      if (expired.length === 0) return
      const refused = expired.map(({ event, waitingFor }) => ({
        event,
        reason: `held ${config.EVENT_HOLD_SECONDS} s waiting for ${waitingFor}, which never came`,
      }))
      await deadLetterEvents(refused)
      await db.forgetHeld(expired.map(({ event }) => event))
    }
  }

  /** Queries held until a task or a group is final look again when one of its tasks ends, on any replica. */
  function announce(applied: Applied[]): void {
    const ended: string[] = []
    const groups = new Set<string>()
    for (const { before, after } of applied) {
      // Only this replica's claims wait for arrivals, and they read again each `recheckMs` anyway.
      if (!before) arrivalWaiters.wake(after.task_id)
      if (!FINAL_STATUSES.has(after.status) || before?.rank === after.rank) continue
      ended.push(after.task_id)
      if (after.group_id) groups.add(after.group_id)
    }
    void changes.publish({ ended, groups: [...groups], passed: [], flushed: [] })
  }

  // --- result expiry (RESULT_EXPIRES): final tasks deleted a small batch at a time, never a long transaction

  /**
   * The expiry horizon as of this replica's latest batch (task-state.ts's `expiredBy`): the database keeps it, and
   * refuses late events by it; reads use this copy, at most one idle interval old.
   */
  let horizon: number | null = null

  /**
   * `{ expired: true }` for an id the store does not hold, minted by the expiry horizon: its task expired (410)
   * rather than never existed (404). A task of another key that is still held stays a 404.
   */
  async function expiredReply(id: string): Promise<{ expired?: true }> {
    return expiredBy(id, horizon) && (await db.find(id)) === null ? { expired: true } : {}
  }

  let expiryTimer: ReturnType<typeof setTimeout> | undefined
  let expiring: Promise<void> = Promise.resolve()
  let expiryStopped = false
  /** How long the store waits for more results to expire once none is due. */
  const expiryIdleMs = Math.min(5000, Math.max(100, Math.floor(config.RESULT_EXPIRES / 10)))

  /** One batch, then the next: soon while more are due, after `expiryIdleMs` once none is. */
  function scheduleExpiry(delayMs: number): void {
    if (expiryStopped) return
    expiryTimer = setTimeout(() => {
      expiring = expireBatch().then(scheduleExpiry)
    }, delayMs)
    expiryTimer.unref()
  }

  async function expireBatch(): Promise<number> {
    try {
      const endTimer = storeMetrics.expirySeconds.startTimer()
      const now = Date.now()
      // Late events are refused by expiries EVENT_HOLD_SECONDS old: as long as an event waits for its cause.
      const settledBefore = now - config.EVENT_HOLD_SECONDS * 1000
      const batch = config.RESULT_EXPIRY_BATCH
      const outcome = await db.expireResults(now - config.RESULT_EXPIRES, batch, settledBefore)
      horizon = outcome.horizon
      if (outcome.expired > 0) endTimer()
      storeMetrics.resultsExpired(outcome.expired)
      return outcome.expired === batch ? config.RESULT_EXPIRY_PAUSE_MS : expiryIdleMs
    } catch (err) {
      log.error("results not expired", { err })
      return expiryIdleMs
    }
  }

  // --- read-your-writes: a query for an unknown id first reads everything queued before it
  let nextBarrier: PromiseWithResolvers<void> | undefined

  /** Resolves once every event that was in our queue when this was called has been committed. */
  function catchUp(): Promise<void> {
    if (nextBarrier) return nextBarrier.promise
    const barrier = Promise.withResolvers<void>()
    nextBarrier = barrier
    // One marker serves every query of this turn; a marker already sent could be ahead of their events.
    setImmediate(() => {
      nextBarrier = undefined
      const barrierId = crypto.randomUUID()
      barriers.add(barrierId).then(barrier.resolve, barrier.reject)
      broker
        .publish(broker.names.eventsExchange, BARRIER_KEY, JSON.stringify({ barrier_id: barrierId }), {
          type: MessageType.barrier,
          deliveryMode: 1,
        })
        .catch((err: Error) => barriers.fail(barrierId, `could not publish a barrier: ${err.message}`))
    })
    return barrier.promise
  }

  async function findGroup({ group_id: groupId, wait_ms: waitMs = 0, owner }: GroupQuery) {
    // A group whose first task expired reads as expired: what is left of it would add up wrong.
    const expired = () => expiredBy(groupId, horizon)
    const read = async () => {
      const group = await db.findGroup(groupId)
      if (group && expired() && group.members.length < group.group.size) return null
      return group && visibleTo(group.group, owner) ? group : null
    }
    let group = await read()
    if (!group) {
      await catchUp()
      group = await read()
    }
    if (group && waitMs > 0 && !toGroupRecord(group).results) {
      const open = (read: Awaited<typeof group>) => read !== null && !toGroupRecord(read).results
      group = await groupWaiters.readUntil(groupId, Date.now() + waitMs, changes.recheckMs, read, open)
    }
    if (group) return { group: toGroupRecord(group) }
    const held = await db.findGroup(groupId)
    const gone = expired() && (!held || held.members.length < held.group.size)
    return gone ? { group: null, expired: true as const } : { group: null }
  }

  /**
   * The task as `owner` may see it. No kind yet: a worker's events came in before the submission's PENDING,
   * which is queued behind them, so read what is queued first (the owner comes with the PENDING too).
   */
  async function findTask(taskId: string, owner: string | undefined, catchingUp = false) {
    let row = catchingUp ? null : await db.find(taskId)
    if (!row?.kind) {
      await catchUp()
      row = await db.find(taskId)
    }
    return visibleTo(row, owner)
  }

  async function getTask(query: Extract<StatusQuery, { op: "get" }>): Promise<StatusReply> {
    let row = await findTask(query.task_id, query.owner, query.catch_up)
    if (row && query.wait_ms && !FINAL_STATUSES.has(row.status)) {
      const read = async () => visibleTo(await db.find(query.task_id), query.owner)
      const deadline = Date.now() + query.wait_ms
      row = await taskWaiters.readUntil(query.task_id, deadline, changes.recheckMs, read, isOpen)
    }
    return row ? { task: toRecord(row) } : { task: null, ...(await expiredReply(query.task_id)) }
  }

  /**
   * Many tasks at once, in the order asked; like `get`, an id the store has not seen first reads what is queued.
   * With `wait_ms`, held until every task it knows is final: it waits on each open task in turn (read afresh,
   * since it may have ended while an earlier one was waited on), then reads them all once more for the answer.
   */
  async function lookupTasks(query: LookupQuery): Promise<StatusReply> {
    const { task_ids: taskIds, wait_ms: waitMs, max_bytes: maxBytes, owner } = query
    const read = async () => (await db.findMany(taskIds)).map((row) => visibleTo(row, owner))
    let rows = await read()
    if (rows.some((row) => !row?.kind)) {
      await catchUp()
      rows = await read()
    }
    const tooLarge = () => (maxBytes === undefined ? undefined : answerTooLarge(rows, maxBytes))
    const refused = tooLarge()
    if (refused) return refused
    const deadline = Date.now() + (waitMs ?? 0)
    if (rows.some(isOpen) && Date.now() < deadline) {
      for (const taskId of taskIds) {
        const readOne = async () => visibleTo(await db.find(taskId), owner)
        await taskWaiters.readUntil(taskId, deadline, changes.recheckMs, readOne, isOpen)
      }
      rows = await read()
    }
    const tooLargeNow = tooLarge()
    if (tooLargeNow) return tooLargeNow
    const expired = await expiredAmong(taskIds.filter((_, i) => !rows[i]))
    return { tasks: rows.map((row) => (row ? toRecord(row) : null)), ...(expired.length > 0 && { expired }) }
  }

  /** Which of these ids, of tasks the caller was not shown, expired (`expiredReply`). */
  async function expiredAmong(taskIds: string[]): Promise<string[]> {
    const old = taskIds.filter((id) => expiredBy(id, horizon))
    if (old.length === 0) return []
    const held = await db.findMany(old)
    return old.filter((_, i) => !held[i])
  }

  /** A page of tasks, newest first. It first reads what is queued, so that an accepted task is listed. */
  async function listTasks(query: Extract<StatusQuery, { op: "list" }>): Promise<StatusReply> {
    await catchUp()
    // One more than asked tells whether a next page exists.
    const filter = { owner: query.owner, status: query.status, kind: query.kind, idPrefix: query.id_prefix }
    const rows = await db.list(filter, query.limit + 1, query.after)
    const page = rows.slice(0, query.limit)
    return {
      tasks: page.map(toRecord),
      next_after: rows.length > query.limit ? (page.at(-1)?.task_id ?? null) : null,
    }
  }

  /**
   * PENDING or RETRY (waiting for its next attempt), or STARTED with `terminate`, becomes REVOKED, checked and
   * written under one lock on the row. The event then goes out on the events exchange, so that workers skip the
   * task (or abort its attempt) and streams end; the copy that comes back to our own queue is recognised by the
   * inbox. A worker that took the task before it heard of the revoke still runs it, but REVOKED outranks
   * whatever it reports for this run.
   */
  async function revokeTask(query: Extract<StatusQuery, { op: "revoke" }>): Promise<StatusReply> {
    // A task's owner never changes once known, so checking it before the revoke's own lock is enough.
    if (!(await findTask(query.task_id, query.owner)))
      return { revoke: "not_found", task: null, ...(await expiredReply(query.task_id)) }
    // Events already in hand first: a STARTED among them makes this a 409, not a revoke.
    await commitInHand()
    const { outcome, row, applied } = await db.revoke(query.task_id, Date.now(), query.terminate === true)
    storeMetrics.eventsCommitted(applied.length, applied)
    announce(applied)
    for (const { event } of applied) await events.emit(event)
    return { revoke: outcome, task: row ? toRecord(row) : null }
  }

  /**
   * The PENDING of a task the broker refused, or did not confirm, is queued ahead of this query: read it first,
   * then end that run FAILURE if it has not moved on. No lock is needed: no worker holds a task the broker
   * refused; one it did not confirm a worker may hold after all, and one whose start is applied stays open; the
   * FAILURE is outranked by any later run.
   */
  async function closeRefused(query: Extract<StatusQuery, { op: "refused" }>): Promise<StatusReply> {
    if (!(await db.find(query.task_id))) await catchUp()
    await commitInHand()
    const row = await db.find(query.task_id)
    if (row?.status !== "PENDING" || currentRun(row) !== query.run)
      return { task: row ? toRecord(row) : null }
    const base = { task_id: row.task_id, attempt: query.run - 1, run: query.run, at: Date.now() }
    const { applied } = await applyEvents([
      { ...base, state: "FAILURE", started_at: null, error: query.error },
    ])
    announce(applied)
    const closed = await db.find(query.task_id)
    return { task: closed ? toRecord(closed) : null }
  }

  /**
   * The first request with a key records its task ids and publishes them. A repeat with the same fingerprint
   * gets the same ids: as `existing` once every task is known here, else after waiting for the first request
   * to publish them. A first request that died before it published holds the key only for its lease: the next
   * request then takes over and publishes the same ids (should the first one publish after all, the task runs
   * twice under one id, and the events of both runs converge on one record).
   */
  async function claimKey(query: Extract<StatusQuery, { op: "claim" }>): Promise<StatusReply> {
    // Per owner: a space is not in an Idempotency-Key's alphabet, so no key of one owner is another's.
    const key = query.owner === undefined ? query.key : `${query.owner} ${query.key}`
    const proposed = { task_ids: query.task_ids, group_id: query.group_id ?? null }
    const allKnown = async (taskIds: string[]) => (await db.findMany(taskIds)).every((row) => row !== null)
    for (;;) {
      const now = Date.now()
      const claim = await db.claimKey(
        {
          key,
          fingerprint: query.fingerprint,
          ...proposed,
          lease_until: now + query.lease_ms,
          expires_at: now + config.IDEMPOTENCY_KEY_TTL_SECONDS * 1000,
        },
        now,
      )
      if (!claim) return { claim: "claimed", ...proposed }
      const { task_ids, group_id } = claim
      if (claim.fingerprint !== query.fingerprint) return { claim: "mismatch", task_ids: [], group_id: null }
      const rows = await db.findMany(task_ids)
      const missing = task_ids.find((_, i) => !rows[i])
      if (!missing) return { claim: "existing", task_ids, group_id }
      // Published long ago and expired since: publishing the ids again would only have their events refused.
      if (expiredBy(missing, horizon)) return { claim: "existing", task_ids, group_id }
      if (claim.lease_until > now) {
        await arrivalWaiters.wait(missing, Math.min(claim.lease_until - now, changes.recheckMs))
        continue
      }
      // The lease is over; the PENDING events may still be queued, unread.
      await catchUp()
      if (await allKnown(task_ids)) return { claim: "existing", task_ids, group_id }
      if (!(await db.renewLease(key, claim.lease_until, Date.now() + query.lease_ms))) continue
      log.warn("idempotency key taken over after its lease", { key, taskIds: task_ids.length })
      return { claim: "claimed", task_ids, group_id }
    }
  }

  /** A task with its input and timeline; like `get`, an id the store has not seen first reads what is queued. */
  async function taskDetail({ task_id: taskId, owner }: Extract<StatusQuery, { op: "detail" }>) {
    if (owner !== undefined && !(await findTask(taskId, owner)))
      return { detail: null, ...(await expiredReply(taskId)) }
    let detail = await db.detail(taskId)
    if (!detail?.task.kind) {
      await catchUp()
      detail = await db.detail(taskId)
    }
    return detail ? { detail } : { detail: null, ...(await expiredReply(taskId)) }
  }

  /** Kept, then told to every worker listening; those not running ask when they start (`queue_pauses`). */
  async function pauseQueue({ queue, paused }: Extract<StatusQuery, { op: "pause_queue" }>) {
    const pause = await db.setQueuePaused(queue, paused, Date.now())
    await broker.publish(
      broker.names.eventsExchange,
      QUEUE_PAUSE_KEY,
      JSON.stringify(pause satisfies QueuePause),
      { type: MessageType.queuePause },
      { mandatory: false },
    )
    log.info(paused ? "queue paused" : "queue resumed", { queue })
    return { queue_pause: pause }
  }

  /**
   * The queue's messages are gone (the gateway purged them before asking): every task of its route that has not
   * started ends REVOKED, those waiting in the delay ladder or for a retry too, so that none stays PENDING. Events
   * queued before this are read first: the PENDING of a task whose message was purged may still be in our queue.
   * The REVOKED events go out as a DELETE's do, so that workers skip what they hold or what comes out of the
   * ladder later.
   */
  async function purgeQueue({ queue }: Extract<StatusQuery, { op: "purge_queue" }>) {
    await catchUp()
    await commitInHand()
    const kinds = TASK_KINDS.filter((kind) => routeTask(kind) === queue)
    let revoked = 0
    for (;;) {
      const batch = await db.revokeNotStarted(kinds, Date.now(), "purged", PURGE_BATCH)
      storeMetrics.eventsCommitted(batch.length, batch)
      announce(batch)
      await Promise.all(batch.map(({ event }) => events.emit(event)))
      revoked += batch.length
      if (batch.length < PURGE_BATCH) break
    }
    log.info("queue purged", { queue, revoked })
    return { revoked }
  }

  async function answer(query: StatusQuery): Promise<StatusReply> {
    storeMetrics.queryAnswered(query.op)
    switch (query.op) {
      case "stats":
        return { stats: await db.stats(Date.now(), query.series_s, query.window_s) }
      case "workers":
        return { workers: await db.workers(Date.now(), config.WORKER_LOST_AFTER_MISSED) }
      case "detail":
        return taskDetail(query)
      case "in_flight":
        // After what is queued, as a listing: the key's submissions answered before this count.
        await catchUp()
        return { in_flight: await db.inFlight(query.owner) }
      case "get":
        return getTask(query)
      case "list":
        return listTasks(query)
      case "lookup":
        return lookupTasks(query)
      case "revoke":
        return revokeTask(query)
      case "revoked":
        return { revoked: await db.recentlyRevoked(query.limit) }
      case "refused":
        return closeRefused(query)
      case "group":
        return findGroup(query)
      case "claim":
        return claimKey(query)
      case "polarity_report":
        return { report: await polarityReport(db, query.from, query.to, query.owner) }
      case "queue_pauses":
        return { queue_pauses: await db.queuePauses() }
      case "pause_queue":
        return pauseQueue(query)
      case "purge_queue":
        return purgeQueue(query)
      case "schedule_create":
      case "schedule_get":
      case "schedule_list":
      case "schedule_update":
      case "schedule_delete":
        return scheduler.answer(query)
    }
  }

  // --- RPC: ack on receipt (a lost query costs its caller a timeout, nothing more), reply when answered
  async function handleQueries(msg: AMQPMessage): Promise<void> {
    const replyTo = directReplyTo(msg)
    const { correlationId } = msg.properties
    const properties = {
      type: MessageType.statusReply,
      deliveryMode: 1,
      ...(correlationId !== undefined && { correlationId }),
    }
    const sendReplies = (replies: StatusReply[]) =>
      broker
        .publish("", replyTo ?? "", JSON.stringify({ replies }), properties, { mandatory: false })
        .catch((err) => log.warn("status reply not delivered", { err: err.message }))
    let queries: StatusQuery[]
    try {
      queries = decodeRequest(msg)
    } catch (err) {
      if (!(err instanceof PoisonMessage)) throw err
      await broker.deadLetter(msg, statusRpcQueue, err.message)
      // The caller cannot be told which of its queries was wrong, so it gets one error for the request.
      if (replyTo) await sendReplies([{ error: err.message }])
      return
    }
    await msg.ack()
    await sendReplies(
      await Promise.all(
        queries.map((query) => answer(query).catch((err: Error) => ({ error: err.message }))),
      ),
    )
  }

  const housekeeping = setInterval(async () => {
    const now = Date.now()
    try {
      await db.forgetExpiredClaims(now)
      await db.prune(
        now - config.STATS_RETENTION_HOURS * 3_600_000,
        now - config.WORKER_FORGET_AFTER_SECONDS * 1000,
      )
    } catch (err) {
      log.error("housekeeping failed", { err })
    }
  }, 60_000)
  housekeeping.unref()
  // Delayed tasks leave SCHEDULED for PENDING when their eta comes: no event says so, the clock does.
  const promotion = setInterval(async () => {
    try {
      await db.promoteDueTasks(Date.now())
    } catch (err) {
      log.error("scheduled tasks not moved on to PENDING", { err })
    }
  }, 1000)
  promotion.unref()
  const deliverySweep = setInterval(() => void queueDeliveries(), DELIVERY_SWEEP_MS)
  deliverySweep.unref()
  // In the line of commits, so that a held event is never dead-lettered while a commit is applying it.
  const heldSweep = setInterval(
    () => {
      commits = commits.then(expireHeld).catch((err) => log.error("held events not dead-lettered", { err }))
    },
    Math.min(10_000, config.EVENT_HOLD_SECONDS * 500),
  )
  heldSweep.unref()

  const eventConsumer = await broker.consume(statusEventsQueue, config.EVENTS_PREFETCH, handleEventMessage)
  consuming.resolve(eventConsumer)
  // At once: the first batch also reads the horizon the database keeps.
  if (config.RESULT_EXPIRES > 0) scheduleExpiry(0)

  const scheduler = startScheduler({
    tables: db.schedules,
    publish: async (task, owner) => {
      await Promise.all([tasks.publish(task), events.emit(pendingEvent(task, owner))])
    },
    isKnown: async (taskId) => {
      await catchUp()
      return (await db.find(taskId)) !== null
    },
    tickMs: config.SCHEDULER_TICK_MS,
    graceMs: config.SCHEDULE_MISFIRE_GRACE_SECONDS * 1000,
    replica,
    log,
  })

  const rpcConsumer = await broker.consume(statusRpcQueue, 1000, handleQueries)

  /** A cheap query per probe, bounded: a database that hangs reads as unreachable, not as a hung /healthz. */
  async function databaseReachable(): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), DATABASE_PING_MS)
    })
    const answered = db.ping().then(
      () => true,
      () => false,
    )
    return Promise.race([answered, timeout]).finally(() => clearTimeout(timer))
  }
  const server = serveHealthAndMetrics({
    port: config.STATUS_STORE_PORT,
    host: config.STATUS_STORE_HOST,
    log,
    metrics,
    brokerConnected: () => broker.connected,
    databaseReachable,
  })
  log.info("started", { url: server.url, database: databaseOf(config) })

  async function stop(): Promise<void> {
    await scheduler.stop()
    await Promise.all([rpcConsumer.stopDeliveries(), eventConsumer.stopDeliveries()])
    await commitInHand()
    clearInterval(housekeeping)
    clearInterval(promotion)
    clearInterval(deliverySweep)
    clearInterval(heldSweep)
    barriers.closeAll()
    expiryStopped = true
    clearTimeout(expiryTimer)
    await expiring
    taskWaiters.wakeAll()
    groupWaiters.wakeAll()
    arrivalWaiters.wakeAll()
    await server.stop()
    await broker.close()
    await changes.close()
    await db.close()
    log.info("stopped")
  }
  return { url: server.url, stop }
}

if (import.meta.main) runAsProgram(SERVICE, () => start(loadStoreConfig()))

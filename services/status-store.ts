// status-store: consumes the task events into SQLite as a monotonic state machine, and answers
// status queries over reply-to RPC (optionally holding the reply until the task is final).
import { Database } from "bun:sqlite"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import type { AMQPMessage } from "@cloudamqp/amqp-client"
import { Hono } from "hono"
import { Broker, brokerOptions, decodeMessage, PoisonMessage } from "../shared/amqp.ts"
import { BrokerEnv, integerVar, loadConfig, picklistVar, stringVar } from "../shared/config.ts"
import {
  Barrier,
  eventId,
  FINAL_STATUSES,
  MessageType,
  StatusQuery,
  type StatusReply,
  type TaskEvent,
  TaskEventBatch,
  type TaskKind,
  type TaskRecord,
  type TaskStatus,
} from "../shared/contracts.ts"
import { healthRoute, installErrorBoundary, runAsProgram, serveApp } from "../shared/http.ts"
import { createLogger } from "../shared/log.ts"

const SERVICE = "status-store"

const StoreEnv = {
  ...BrokerEnv,
  STATUS_STORE_HOST: stringVar("0.0.0.0"),
  STATUS_STORE_PORT: integerVar(9002, 0, 65535),
  DATABASE_PATH: stringVar("./data/status-store.sqlite"),
  /** FULL: an acked event survives power loss. NORMAL: survives a process crash, and commits faster. */
  SQLITE_SYNCHRONOUS: picklistVar(["FULL", "NORMAL"], "FULL"),
  /** Event messages in hand at once; all that arrive in one turn of the event loop commit in one transaction. */
  EVENTS_PREFETCH: integerVar(500, 1, 65535),
}
export type StoreConfig = ReturnType<typeof loadStoreConfig>
export const loadStoreConfig = (env: Record<string, string | undefined> = process.env) =>
  loadConfig(StoreEnv, env)

interface TaskRow {
  task_id: string
  kind: string | null
  status: TaskStatus
  progress: number
  attempts: number
  input: string | null
  result: string | null
  error: string | null
  submitted_at: number | null
  started_at: number | null
  finished_at: number | null
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS tasks (
    task_id      TEXT PRIMARY KEY,
    kind         TEXT,
    status       TEXT NOT NULL,
    progress     INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    input        TEXT,
    result       TEXT,
    error        TEXT,
    submitted_at INTEGER,
    started_at   INTEGER,
    finished_at  INTEGER
  );
  -- Every event applied, by its deterministic id: a redelivered event is recognised and skipped.
  CREATE TABLE IF NOT EXISTS inbox (event_id TEXT PRIMARY KEY) WITHOUT ROWID;
`

// Progress orders events within a task: by run (a replay starts a new one), then by attempt and stage.
// Within a run the final states absorb everything after them, and REVOKED outranks the others: the store
// revokes only a task that has not started, so a worker that ran it before it heard of the revoke cannot
// overwrite it, whatever order the events arrive in.
const RUN_SPAN = 1_000_000
const STAGE: Record<TaskStatus, number> = {
  PENDING: 0,
  STARTED: 1,
  RETRY: 2,
  SUCCESS: RUN_SPAN - 2,
  FAILURE: RUN_SPAN - 2,
  EXPIRED: RUN_SPAN - 2,
  REVOKED: RUN_SPAN - 1,
}

function progressOf(event: TaskEvent): number {
  const withinRun = FINAL_STATUSES.has(event.state)
    ? STAGE[event.state]
    : event.attempt * 4 + STAGE[event.state]
  return event.run * RUN_SPAN + withinRun
}

function neverStarted(event: TaskEvent) {
  return { attempts: event.attempt, result: null, started_at: null, finished_at: event.at }
}

/** The row after `event`: monotonic, so redelivered and reordered events converge on the same row. */
export function mergeEvent(row: TaskRow | null, event: TaskEvent): TaskRow {
  const current: TaskRow = row ?? {
    task_id: event.task_id,
    kind: null,
    status: "PENDING",
    progress: -1,
    attempts: 0,
    input: null,
    result: null,
    error: null,
    submitted_at: null,
    started_at: null,
    finished_at: null,
  }
  const next = { ...current }
  if (event.state === "PENDING") {
    // The submission may arrive after the worker's events; it only fills in what it knows.
    next.kind ??= event.kind
    next.input ??= JSON.stringify(event.input)
    if (event.run === 1) next.submitted_at = event.at
  }
  const progress = progressOf(event)
  if (progress <= current.progress) return next
  if (Math.floor(progress / RUN_SPAN) > Math.floor(current.progress / RUN_SPAN)) {
    Object.assign(next, { result: null, error: null, started_at: null, finished_at: null })
  }
  next.status = event.state
  next.progress = progress
  next.attempts = Math.max(current.attempts, event.attempt)
  switch (event.state) {
    case "STARTED":
      next.started_at = event.at
      break
    case "RETRY":
      Object.assign(next, { started_at: event.started_at, error: event.error })
      break
    case "SUCCESS":
      Object.assign(next, {
        started_at: event.started_at,
        finished_at: event.at,
        result: JSON.stringify(event.result),
        error: null,
      })
      break
    case "FAILURE":
      Object.assign(next, {
        started_at: event.started_at ?? next.started_at,
        finished_at: event.at,
        error: event.error,
      })
      break
    // These two say everything about the row themselves, so that a worker's events of the same run, which
    // they outrank, leave no trace whichever order they come in.
    case "EXPIRED":
      Object.assign(next, {
        ...neverStarted(event),
        error: `expired at ${new Date(event.expires_at).toISOString()} before attempt ${event.attempt + 1} started`,
      })
      break
    case "REVOKED":
      Object.assign(next, { ...neverStarted(event), error: "revoked before it started" })
      break
  }
  return next
}

const iso = (millis: number | null) => (millis === null ? null : new Date(millis).toISOString())

function toRecord(row: TaskRow): TaskRecord {
  return {
    task_id: row.task_id,
    kind: row.kind as TaskKind | null,
    status: row.status,
    result: row.result === null ? null : JSON.parse(row.result),
    error: row.error,
    attempts: row.attempts,
    submitted_at: iso(row.submitted_at),
    started_at: iso(row.started_at),
    finished_at: iso(row.finished_at),
  }
}

function openDatabase(path: string, synchronous: "FULL" | "NORMAL") {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true })
  const db = new Database(path, { create: true, strict: true })
  db.run("PRAGMA journal_mode = WAL")
  db.run(`PRAGMA synchronous = ${synchronous}`)
  db.run("PRAGMA busy_timeout = 5000")
  db.run(SCHEMA)
  const select = db.query<TaskRow, [string]>("SELECT * FROM tasks WHERE task_id = ?")
  const upsert = db.query<void, Record<string, string | number | null>>(
    `INSERT INTO tasks VALUES ($task_id, $kind, $status, $progress, $attempts, $input, $result, $error,
       $submitted_at, $started_at, $finished_at)
     ON CONFLICT (task_id) DO UPDATE SET kind = excluded.kind, status = excluded.status,
       progress = excluded.progress, attempts = excluded.attempts, input = excluded.input,
       result = excluded.result, error = excluded.error, submitted_at = excluded.submitted_at,
       started_at = excluded.started_at, finished_at = excluded.finished_at`,
  )
  const recordInInbox = db.query<void, [string]>("INSERT OR IGNORE INTO inbox VALUES (?)")
  // One transaction per batch: the inbox entry and the state change commit together, or neither does.
  const applyEvents = db.transaction((events: TaskEvent[]) => {
    for (const event of events) {
      if (recordInInbox.run(eventId(event)).changes === 0) continue
      upsert.run({ ...mergeEvent(select.get(event.task_id), event) })
    }
  })
  return {
    applyEvents: (events: TaskEvent[]) => applyEvents(events),
    find: (taskId: string) => select.get(taskId),
    close: () => db.close(),
  }
}

interface Delivery {
  msg: AMQPMessage
  events: TaskEvent[]
  barrierId?: string
}

export async function start(config: StoreConfig) {
  const log = createLogger(SERVICE, config.LOG_LEVEL)
  const db = openDatabase(config.DATABASE_PATH, config.SQLITE_SYNCHRONOUS)
  const broker = await Broker.connect(brokerOptions(SERVICE, config, log))
  const { statusEventsQueue, statusRpcQueue } = broker.names

  // --- events: decode, commit a turn's worth in one transaction, ack after the commit
  let uncommitted: Delivery[] = []
  const finalWaiters = new Map<string, Set<() => void>>()
  const barriers = new Map<string, () => void>()

  function handleEventMessage(msg: AMQPMessage): Promise<void> | undefined {
    try {
      if (msg.properties.type === MessageType.barrier) {
        uncommitted.push({ msg, events: [], barrierId: decodeMessage(msg, Barrier, "Barrier").barrier_id })
      } else {
        uncommitted.push({ msg, events: decodeMessage(msg, TaskEventBatch, "TaskEventBatch").events })
      }
    } catch (err) {
      if (!(err instanceof PoisonMessage)) throw err
      return broker.deadLetter(msg, statusEventsQueue, err.message)
    }
    if (uncommitted.length === 1) setImmediate(commitUncommitted)
  }

  function commitUncommitted(): void {
    const deliveries = uncommitted
    uncommitted = []
    const events = deliveries.flatMap((d) => d.events)
    try {
      db.applyEvents(events)
    } catch (err) {
      log.error("event commit failed, requeueing", { events: events.length, err })
      for (const { msg } of deliveries) msg.nack(true).catch(() => {})
      return
    }
    for (const { msg, barrierId } of deliveries) {
      msg.ack().catch(() => {})
      if (barrierId) barriers.get(barrierId)?.()
    }
    for (const event of events) {
      if (FINAL_STATUSES.has(event.state)) for (const wake of finalWaiters.get(event.task_id) ?? []) wake()
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
      barriers.set(barrierId, () => {
        barriers.delete(barrierId)
        barrier.resolve()
      })
      broker
        .publish("", statusEventsQueue, JSON.stringify({ barrier_id: barrierId }), {
          type: MessageType.barrier,
          deliveryMode: 1,
        })
        .catch((err) => {
          barriers.delete(barrierId)
          barrier.reject(err)
        })
    })
    return barrier.promise
  }

  function waitUntilFinal(taskId: string, ms: number): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>()
    const waiters = finalWaiters.get(taskId) ?? new Set()
    finalWaiters.set(taskId, waiters)
    const timer = setTimeout(resolve, ms)
    waiters.add(resolve)
    return promise.finally(() => {
      clearTimeout(timer)
      waiters.delete(resolve)
      if (waiters.size === 0) finalWaiters.delete(taskId)
    })
  }

  async function answer(query: StatusQuery): Promise<StatusReply> {
    let row = db.find(query.task_id)
    if (!row) {
      await catchUp()
      row = db.find(query.task_id)
    }
    if (row && query.wait_ms && !FINAL_STATUSES.has(row.status)) {
      await waitUntilFinal(query.task_id, query.wait_ms)
      row = db.find(query.task_id)
    }
    return { task: row ? toRecord(row) : null }
  }

  // --- RPC: ack on receipt (a lost query costs its caller a timeout, nothing more), reply when answered
  async function handleQuery(msg: AMQPMessage): Promise<void> {
    const { replyTo, correlationId } = msg.properties
    const properties = {
      type: MessageType.statusReply,
      deliveryMode: 1,
      ...(correlationId !== undefined && { correlationId }),
    }
    const sendReply = (reply: StatusReply) =>
      broker
        .publish("", replyTo ?? "", JSON.stringify(reply), properties, { mandatory: false })
        .catch((err) => log.warn("status reply not delivered", { err: err.message }))
    let query: StatusQuery
    try {
      if (!replyTo) throw new PoisonMessage("status query without reply-to")
      query = decodeMessage(msg, StatusQuery, "StatusQuery")
    } catch (err) {
      if (!(err instanceof PoisonMessage)) throw err
      await broker.deadLetter(msg, statusRpcQueue, err.message)
      if (replyTo) await sendReply({ error: err.message })
      return
    }
    await msg.ack()
    await sendReply(await answer(query).catch((err: Error) => ({ error: err.message })))
  }

  const eventConsumer = await broker.consume(statusEventsQueue, config.EVENTS_PREFETCH, handleEventMessage)
  const rpcConsumer = await broker.consume(statusRpcQueue, 1000, handleQuery)

  const app = new Hono()
  installErrorBoundary(app, log)
  healthRoute(app, () => broker.connected)
  const server = serveApp(app, config.STATUS_STORE_PORT, config.STATUS_STORE_HOST)
  log.info("started", { url: server.url, database: config.DATABASE_PATH })

  async function stop(): Promise<void> {
    await Promise.all([rpcConsumer.stopDeliveries(), eventConsumer.stopDeliveries()])
    if (uncommitted.length > 0) commitUncommitted()
    for (const wake of [...finalWaiters.values()].flatMap((set) => [...set])) wake()
    await server.stop()
    await broker.close()
    db.close()
    log.info("stopped")
  }
  return { url: server.url, stop }
}

if (import.meta.main) runAsProgram(SERVICE, () => start(loadStoreConfig()))

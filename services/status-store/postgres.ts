// The status store on PostgreSQL, for several replicas on one database: the same tasks, inbox, figures and
// queries as sqlite.ts, with what SQLite gets from owning its file made explicit. Events of one task may reach
// two replicas at the same moment, so a batch first takes a transaction-scoped advisory lock on each of its
// tasks (in one order, so no two batches wait for each other in a circle) and then reads their rows FOR UPDATE:
// the lock covers a task whose row does not exist yet, its inbox entries and held events; the row lock keeps
// out the writers that take no advisory lock (promoting due tasks, progress). The state machine then runs on
// what was read under those locks (event-batch.ts), and the figures are added to (`n = n + delta`) in the same
// transaction, so N replicas count each event once.
import {
  eventId,
  type QueuePause,
  type TaskEvent,
  type TaskProgress,
  type WorkerHeartbeat,
} from "../../shared/contracts.ts"
import {
  type FigureRows,
  figureDeltas,
  figureWindow,
  type InboxRow,
  type Series,
  toCounts,
  toStats,
  toTimeline,
  toWorkerRecords,
} from "./dashboard.ts"
import { EventBatch, type HeldRow, type TaskSnapshot } from "./event-batch.ts"
import { postgresSchedules } from "./postgres-schedules.ts"
import {
  asJson,
  connectPostgres,
  FINAL_SQL,
  inTransaction,
  migrate,
  type Sql,
  type Tx,
} from "./postgres-schema.ts"
import { postgresWebhooks } from "./postgres-webhooks.ts"
import type { Claim, ListFilter, ReportRow, StatusStore } from "./store.ts"
import {
  type Applied,
  currentRun,
  type GroupRow,
  horizonAfter,
  inFlightDeltas,
  revokeOf,
  supersedes,
  TASK_COLUMNS,
  type TaskRow,
  toRecord,
} from "./task-state.ts"
import { toWebhookEntries } from "./webhooks.ts"

const TASK_UPDATES = TASK_COLUMNS.slice(1)
  .map((column) => `${column} = excluded.${column}`)
  .join(", ")

/** Open (and migrate) the store on the database at `url`, with at most `poolSize` connections. */
export async function openPostgresStore(url: string, poolSize: number): Promise<StatusStore> {
  const sql = connectPostgres(url, poolSize)
  try {
    await migrate(sql)
  } catch (err) {
    await sql.end({ timeout: 1 })
    throw err
  }
  return postgresStore(sql)
}

/**
 * Lock the tasks (advisory, then their rows) and read what the state machine needs of them. The statements go
 * out pipelined, in one write: the server runs them in this order on the transaction's connection, so each read
 * still comes after the locks, and a batch waits one round trip instead of five.
 */
async function lockTasks(tx: Tx, taskIds: string[]): Promise<TaskSnapshot> {
  // Sorted as the primary key sorts them (byte order, as JavaScript's sort is for these ASCII ids).
  const ids = tx.array([...new Set(taskIds)].sort())
  // Lazy queries, sent in the order Promise.all takes them: none may be started (awaited) before it.
  const [, rows, seen, held, [expiries]] = await Promise.all([
    tx`SELECT pg_advisory_xact_lock(key) FROM (SELECT DISTINCT hashtextextended(id, 0) AS key
      FROM unnest(${ids}::text[]) AS id ORDER BY key) AS keys`,
    // One primary-key lookup per task, in this order (the locking keeps the planner from turning it into a scan).
    tx<TaskRow[]>`SELECT task.* FROM unnest(${ids}::text[]) AS id,
      LATERAL (SELECT * FROM tasks WHERE task_id = id FOR UPDATE) AS task`,
    // Event ids are `<task id>:<state>:<attempt>`, and ";" sorts right after ":": a task's events are one range.
    tx<{ event_id: string }[]>`SELECT inbox.event_id FROM unnest(${ids}::text[]) AS t(id)
      JOIN inbox ON inbox.event_id > t.id || ':' AND inbox.event_id < t.id || ';'`,
    tx<HeldRow[]>`SELECT * FROM held_events WHERE task_id = ANY(${ids}::text[]) ORDER BY held_at, event_id`,
    // After the row locks: a task an expiry deleted meanwhile was waited for, and its id and horizon are committed
    // with it. One statement, one snapshot: an expiry that settles between two reads would be in neither.
    tx<
      { horizon: string | null; lately: string[] }[]
    >`SELECT (SELECT minted_until FROM expiry_horizon) AS horizon,
      ARRAY(SELECT task_id FROM expired_tasks WHERE task_id = ANY(${ids}::text[])) AS lately`,
  ])
  const horizon = expiries?.horizon == null ? null : Number(expiries.horizon)
  const byId = new Map<string, TaskRow | null>(taskIds.map((id) => [id, null]))
  for (const row of rows) byId.set(row.task_id, row)
  const seenIds = new Set(seen.map((row) => row.event_id))
  return { rows: byId, seen: seenIds, held: [...held], horizon, expiredLately: new Set(expiries?.lately) }
}

/**
 * Write what the batch did: its inbox entries, rows, groups, deliveries and held events, then the figures. Pipelined
 * as the reads are: the server applies them in this order, so that the figures' rows are still taken in one order.
 */
async function writeBatch(tx: Tx, batch: EventBatch): Promise<void> {
  const writes: PromiseLike<unknown>[] = []
  if (batch.inbox.length > 0)
    writes.push(tx`INSERT INTO inbox SELECT * FROM json_populate_recordset(NULL::inbox, ${asJson(batch.inbox)}::text::json)
      ON CONFLICT DO NOTHING`)
  const rows = batch.changedRows().toSorted((a, b) => (a.task_id < b.task_id ? -1 : 1))
  if (rows.length > 0)
    writes.push(tx`INSERT INTO tasks (${tx.unsafe(TASK_COLUMNS.join(", "))})
      SELECT ${tx.unsafe(TASK_COLUMNS.join(", "))} FROM json_populate_recordset(NULL::tasks, ${asJson(rows)}::text::json)
      ON CONFLICT (task_id) DO UPDATE SET ${tx.unsafe(TASK_UPDATES)}`)
  if (batch.groups.length > 0)
    writes.push(tx`INSERT INTO groups SELECT * FROM json_populate_recordset(NULL::groups, ${asJson(batch.groups)}::text::json)
      ON CONFLICT DO NOTHING`)
  if (batch.deliveries.length > 0)
    writes.push(tx`INSERT INTO webhook_deliveries (delivery_id, task_id, url, record, created_at)
      SELECT delivery_id, task_id, url, record, created_at
      FROM json_populate_recordset(NULL::webhook_deliveries, ${asJson(batch.deliveries)}::text::json)
      ON CONFLICT DO NOTHING`)
  if (batch.newlyHeld.length > 0)
    writes.push(tx`INSERT INTO held_events
      SELECT * FROM json_populate_recordset(NULL::held_events, ${asJson(batch.newlyHeld)}::text::json)
      ON CONFLICT DO NOTHING`)
  if (batch.released.length > 0)
    writes.push(tx`DELETE FROM held_events WHERE event_id = ANY(${tx.array(batch.released)}::text[])`)
  writes.push(...figureWrites(tx, batch.outcome.applied))
  await Promise.all(writes)
}

/**
 * What the events changed in the figures, as statements of the transaction that applied them. Every transaction
 * adds to these rows in the same order (by key), so that two replicas' transactions never wait for each other in
 * a circle.
 */
function figureWrites(tx: Tx, applied: Applied[]): PromiseLike<unknown>[] {
  if (applied.length === 0) return []
  const deltas = figureDeltas(applied)
  const writes = [
    ...countWrites(
      tx,
      deltas.statuses.map(([status, tasks]) => ({ status, tasks })),
    ),
  ]
  const throughput = deltas.throughput.map(([second, submitted, succeeded, failed, retried]) => ({
    second,
    submitted,
    succeeded,
    failed,
    retried,
  }))
  if (throughput.length > 0)
    writes.push(tx`INSERT INTO throughput SELECT * FROM json_populate_recordset(NULL::throughput, ${asJson(throughput)}::text::json)
      ON CONFLICT (second) DO UPDATE SET submitted = throughput.submitted + excluded.submitted,
        succeeded = throughput.succeeded + excluded.succeeded, failed = throughput.failed + excluded.failed,
        retried = throughput.retried + excluded.retried`)
  const latency = deltas.latency.map(([minute, phase, bucket, tasks]) => ({ minute, phase, bucket, tasks }))
  if (latency.length > 0)
    writes.push(tx`INSERT INTO latency_buckets
      SELECT * FROM json_populate_recordset(NULL::latency_buckets, ${asJson(latency)}::text::json)
      ON CONFLICT (minute, phase, bucket) DO UPDATE SET tasks = latency_buckets.tasks + excluded.tasks`)
  const owners = [...inFlightDeltas(applied)]
    .toSorted(([a], [b]) => (a < b ? -1 : 1))
    .map(([owner, tasks]) => ({ owner, tasks }))
  if (owners.length > 0)
    writes.push(tx`INSERT INTO owner_in_flight
      SELECT * FROM json_populate_recordset(NULL::owner_in_flight, ${asJson(owners)}::text::json)
      ON CONFLICT (owner) DO UPDATE SET tasks = owner_in_flight.tasks + excluded.tasks`)
  return writes
}

function countWrites(tx: Tx, deltas: { status: string; tasks: number }[]): PromiseLike<unknown>[] {
  const sorted = deltas
    .filter((delta) => delta.tasks !== 0)
    .toSorted((a, b) => (a.status < b.status ? -1 : 1))
  if (sorted.length === 0) return []
  return [
    tx`INSERT INTO status_counts SELECT * FROM json_populate_recordset(NULL::status_counts, ${asJson(sorted)}::text::json)
    ON CONFLICT (status) DO UPDATE SET tasks = status_counts.tasks + excluded.tasks`,
  ]
}

/**
 * Delete a batch of the oldest expired final tasks with everything kept by task (store.ts's `expireResults`).
 * Rows another transaction holds (an event being applied to that task) are left for the next batch; a replica
 * that applies an event to a task deleted here waits for this commit and then finds no task.
 */
const expireResults = (sql: Sql, before: number, limit: number, settledBefore: number) =>
  inTransaction(sql, async (tx) => {
    const expired = await tx<
      Pick<TaskRow, "task_id" | "status" | "group_id">[]
    >`SELECT task_id, status, group_id
      FROM tasks WHERE status IN ${tx.unsafe(FINAL_SQL)} AND finished_at < ${before}
        AND (eta IS NULL OR eta < ${before})
      ORDER BY finished_at LIMIT ${limit} FOR UPDATE SKIP LOCKED`
    const expiredAt = Date.now()
    if (expired.length > 0) await deleteExpired(tx, expired, expiredAt)
    const latest = horizonAfter(
      null,
      expired.map((row) => row.task_id),
    )
    if (latest !== null) await tx`INSERT INTO expiry_marks VALUES (${expiredAt}, ${latest})`
    return { expired: expired.length, horizon: await settleMarks(tx, settledBefore) }
  })

async function deleteExpired(
  tx: Tx,
  expired: Pick<TaskRow, "task_id" | "status" | "group_id">[],
  expiredAt: number,
) {
  const ids = tx.array(expired.map((row) => row.task_id))
  await tx`DELETE FROM tasks WHERE task_id = ANY(${ids}::text[])`
  await tx`INSERT INTO expired_tasks SELECT id, ${expiredAt} FROM unnest(${ids}::text[]) AS id
    ON CONFLICT (task_id) DO UPDATE SET expired_at = excluded.expired_at`
  // Event ids are `<task id>:…` and delivery ids `<task id>.<run>`: ";" and "/" sort right after.
  await tx`DELETE FROM inbox USING unnest(${ids}::text[]) AS t(id)
    WHERE event_id > t.id || ':' AND event_id < t.id || ';'`
  await tx`DELETE FROM held_events WHERE task_id = ANY(${ids}::text[])`
  await tx`DELETE FROM webhook_deliveries USING unnest(${ids}::text[]) AS t(id)
    WHERE delivery_id > t.id || '.' AND delivery_id < t.id || '/'`
  await tx`DELETE FROM webhook_attempts WHERE task_id = ANY(${ids}::text[])`
  const groups = [...new Set(expired.map((row) => row.group_id).filter((id) => id !== null))]
  if (groups.length > 0)
    await tx`DELETE FROM groups WHERE group_id = ANY(${tx.array(groups)}::text[])
      AND NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.group_id = groups.group_id)`
  const gone = new Map<string, number>()
  for (const { status } of expired) gone.set(status, (gone.get(status) ?? 0) - 1)
  await Promise.all(
    countWrites(
      tx,
      [...gone].map(([status, tasks]) => ({ status, tasks })),
    ),
  )
}

/**
 * Marks left before `settledBefore` move the horizon up and go, whichever replica gets to them (GREATEST ignores a
 * null: the first sets it). Returns the horizon reads go by: the latest mark, settled or not.
 */
async function settleMarks(tx: Tx, settledBefore: number): Promise<number | null> {
  const settled = await tx<{ minted_until: string }[]>`DELETE FROM expiry_marks
    WHERE expired_at < ${settledBefore} RETURNING minted_until`
  if (settled.length > 0) {
    const latest = Math.max(...settled.map((mark) => Number(mark.minted_until)))
    await tx`UPDATE expiry_horizon SET minted_until = GREATEST(minted_until, ${latest})`
  }
  // The horizon covers their ids from this commit on (an id of another version it never covers).
  await tx`DELETE FROM expired_tasks WHERE expired_at < ${settledBefore}`
  const [row] = await tx<{ horizon: string | null }[]>`SELECT GREATEST(
    (SELECT minted_until FROM expiry_horizon), (SELECT max(minted_until) FROM expiry_marks)) AS horizon`
  return row?.horizon == null ? null : Number(row.horizon)
}

interface ClaimRow extends Omit<Claim, "task_ids"> {
  task_ids: string
}

function postgresStore(sql: Sql): StatusStore {
  const webhooks = postgresWebhooks(sql)

  /** Apply `build`'s events to the tasks named, under their locks, and write what changed: one transaction. */
  const applyToTasks = <T>(taskIds: string[], now: number, build: (batch: EventBatch) => T) =>
    inTransaction(sql, async (tx) => {
      const batch = new EventBatch(await lockTasks(tx, taskIds), now)
      const result = build(batch)
      await writeBatch(tx, batch)
      return { batch, result }
    })

  async function findMany(taskIds: string[]): Promise<(TaskRow | null)[]> {
    if (taskIds.length === 0) return []
    // A primary-key lookup per id: `= ANY(…)` becomes a scan of the table while its statistics are stale (a
    // table that grew fast: 10,000 tasks × 200 ids took 30–70 ms), and OFFSET 0 keeps the lookups apart.
    const rows = await sql<TaskRow[]>`SELECT task.* FROM unnest(${sql.array(taskIds)}::text[]) AS id,
      LATERAL (SELECT * FROM tasks WHERE task_id = id OFFSET 0) AS task`
    const byId = new Map(rows.map((row) => [row.task_id, row]))
    return taskIds.map((taskId) => byId.get(taskId) ?? null)
  }

  async function find(taskId: string): Promise<TaskRow | null> {
    const [row] = await sql<TaskRow[]>`SELECT * FROM tasks WHERE task_id = ${taskId}`
    return row ?? null
  }

  async function list(filter: ListFilter, limit: number, after = "~"): Promise<TaskRow[]> {
    const where = [sql`task_id < ${after}`]
    if (filter.owner) where.push(sql`owner = ${filter.owner}`)
    if (filter.status) where.push(sql`status = ${filter.status}`)
    if (filter.kind) where.push(sql`kind = ${filter.kind}`)
    // "~" sorts after every hex digit and dash: the ids that start with the prefix, and only they.
    if (filter.idPrefix) where.push(sql`task_id >= ${filter.idPrefix} AND task_id < ${`${filter.idPrefix}~`}`)
    const condition = where.reduce((all, one) => sql`${all} AND ${one}`)
    return [
      ...(await sql<TaskRow[]>`SELECT * FROM tasks WHERE ${condition} ORDER BY task_id DESC LIMIT ${limit}`),
    ]
  }

  async function detail(taskId: string) {
    const row = await find(taskId)
    if (!row) return null
    const input = row.input === null ? null : (JSON.parse(row.input) as Record<string, unknown>)
    const inbox = await sql<InboxRow[]>`SELECT event_id, run, at, detail FROM inbox
      WHERE event_id > ${`${taskId}:`} AND event_id < ${`${taskId};`} AND at IS NOT NULL`
    const timeline = toTimeline([...inbox])
    const found = { task: toRecord(row), input, run: Math.max(1, currentRun(row)), timeline }
    if (row.callback_url === null) return found
    return { ...found, webhooks: toWebhookEntries(await webhooks.attemptsOfTask(taskId)) }
  }

  async function figureRows(now: number, seriesSeconds: number, windowSeconds: number): Promise<FigureRows> {
    const window = figureWindow(now, seriesSeconds, windowSeconds)
    const [counts, series, [sums], latency] = await Promise.all([
      sql<FigureRows["counts"]>`SELECT status, tasks FROM status_counts`,
      sql<
        FigureRows["series"]
      >`SELECT * FROM throughput WHERE second >= ${window.seriesFrom} ORDER BY second`,
      sql<Record<Series, number | null>[]>`SELECT sum(submitted) AS submitted, sum(succeeded) AS succeeded,
        sum(failed) AS failed, sum(retried) AS retried FROM throughput
        WHERE second >= ${window.ratesFrom} AND second < ${window.ratesTo}`,
      sql<FigureRows["latency"]>`SELECT phase, bucket, sum(tasks) AS tasks FROM latency_buckets
        WHERE minute >= ${window.latencyFrom} GROUP BY phase, bucket ORDER BY bucket, phase`,
    ])
    return { counts: [...counts], series: [...series], sums: sums ?? null, latency: [...latency] }
  }

  async function claimKey(claim: Claim, now: number): Promise<Claim | null> {
    const row = { ...claim, task_ids: JSON.stringify(claim.task_ids) }
    for (;;) {
      // One statement, so that of two replicas claiming one key, one inserts and the other sees its claim.
      const won = await sql`INSERT INTO idempotency_keys
        SELECT * FROM json_populate_recordset(NULL::idempotency_keys, ${asJson([row])}::text::json)
        ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, group_id = excluded.group_id,
          task_ids = excluded.task_ids, lease_until = excluded.lease_until, expires_at = excluded.expires_at
        WHERE idempotency_keys.expires_at <= ${now} RETURNING key`
      if (won.length > 0) return null
      const [held] = await sql<ClaimRow[]>`SELECT * FROM idempotency_keys WHERE key = ${claim.key}`
      // Gone between the two statements (expired and forgotten): claim again.
      if (held) return { ...held, task_ids: JSON.parse(held.task_ids) as string[] }
    }
  }

  const promoteDueTasks = (now: number) =>
    inTransaction(sql, async (tx) => {
      // Rows another transaction holds (an event being applied) are left for the next tick.
      const promoted = await tx`UPDATE tasks SET status = 'PENDING' WHERE task_id IN (
          SELECT task_id FROM tasks WHERE status = 'SCHEDULED' AND eta <= ${now}
          ORDER BY task_id FOR UPDATE SKIP LOCKED)
        AND status = 'SCHEDULED' RETURNING task_id`
      await Promise.all(
        countWrites(tx, [
          { status: "SCHEDULED", tasks: -promoted.length },
          { status: "PENDING", tasks: promoted.length },
        ]),
      )
      return promoted.length
    })

  const recordProgress = (reports: TaskProgress[]) =>
    inTransaction(sql, async (tx) => {
      const ids = tx.array([...new Set(reports.map((report) => report.task_id))].sort())
      const rows = await tx<
        Pick<TaskRow, "task_id" | "progress_report">[]
      >`SELECT task.* FROM unnest(${ids}::text[])
        AS id, LATERAL (SELECT task_id, progress_report FROM tasks WHERE task_id = id FOR UPDATE) AS task`
      const held = new Map(rows.map((row) => [row.task_id, row.progress_report]))
      const changed = new Map<string, string>()
      for (const report of reports) {
        const current = held.get(report.task_id)
        if (current === undefined || !supersedes(report, current)) continue
        held.set(report.task_id, JSON.stringify(report))
        changed.set(report.task_id, JSON.stringify(report))
      }
      if (changed.size === 0) return
      await tx`UPDATE tasks SET progress_report = changed.report
        FROM unnest(${tx.array([...changed.keys()])}::text[], ${tx.array([...changed.values()])}::text[])
          AS changed(task_id, report)
        WHERE tasks.task_id = changed.task_id`
    })

  async function recordHeartbeats(heartbeats: WorkerHeartbeat[], seenAt: number, keep: number) {
    // The latest of each worker's: one statement may not update a row twice.
    const latest = new Map(heartbeats.map((heartbeat) => [heartbeat.worker, heartbeat]))
    const rows = [...latest.values()]
      .toSorted((a, b) => (a.worker < b.worker ? -1 : 1))
      .map((heartbeat) => ({
        worker: heartbeat.worker,
        heartbeat: JSON.stringify(heartbeat),
        seen_at: seenAt,
      }))
    await inTransaction(sql, async (tx) => {
      if (rows.length > 0)
        await tx`INSERT INTO workers SELECT * FROM json_populate_recordset(NULL::workers, ${asJson(rows)}::text::json)
          ON CONFLICT (worker) DO UPDATE SET heartbeat = excluded.heartbeat, seen_at = excluded.seen_at`
      await tx`DELETE FROM workers WHERE worker IN (
        SELECT worker FROM workers ORDER BY seen_at DESC, worker OFFSET ${keep})`
    })
  }

  return {
    async applyEvents(events, now = Date.now()) {
      if (events.length === 0) return { applied: [], refused: [] }
      const taskIds = events.map((event) => event.task_id)
      const admitAll = (batch: EventBatch) => batch.admitAll(events)
      const { batch } = await applyToTasks(taskIds, now, admitAll)
      return batch.outcome
    },
    expireResults: (before, limit, settledBefore) => expireResults(sql, before, limit, settledBefore),
    async heldBefore(before, limit) {
      const rows = await sql<HeldRow[]>`SELECT * FROM held_events WHERE held_at < ${before}
        ORDER BY held_at LIMIT ${limit}`
      return rows.map((row) => ({
        event: JSON.parse(row.event) as TaskEvent,
        heldAt: row.held_at,
        waitingFor: row.waiting_for,
      }))
    },
    async forgetHeld(events) {
      if (events.length === 0) return
      await sql`DELETE FROM held_events WHERE event_id = ANY(${sql.array(events.map(eventId))}::text[])`
    },
    recordHeartbeats: (heartbeats, seenAt, keep = Number.MAX_SAFE_INTEGER) =>
      recordHeartbeats(heartbeats, seenAt, keep),
    recordProgress: async (reports) => {
      if (reports.length > 0) await recordProgress(reports)
    },
    find,
    findMany,
    list,
    detail,
    async findGroup(groupId) {
      const [group] = await sql<GroupRow[]>`SELECT * FROM groups WHERE group_id = ${groupId}`
      if (!group) return null
      const members = await sql<
        TaskRow[]
      >`SELECT * FROM tasks WHERE group_id = ${groupId} ORDER BY group_index`
      return { group, members: [...members] }
    },
    async revoke(taskId, at, terminate) {
      const { batch, result: outcome } = await applyToTasks([taskId], at, (batch) => {
        const { outcome, event } = revokeOf(batch.row(taskId), at, terminate)
        if (event) batch.apply(event)
        return outcome
      })
      return { outcome, row: batch.row(taskId), applied: batch.outcome.applied }
    },
    async revokeNotStarted(kinds, at, reason, limit) {
      // The candidates first, then their locks: applyToTasks locks advisory before rows, as every writer does.
      const rows = await sql<Pick<TaskRow, "task_id">[]>`SELECT task_id FROM tasks
        WHERE status IN ('SCHEDULED', 'PENDING', 'RETRY') AND kind = ANY(${sql.array(kinds)}::text[])
        LIMIT ${limit}`
      if (rows.length === 0) return []
      const taskIds = rows.map((row) => row.task_id)
      const { batch } = await applyToTasks(taskIds, at, (batch) => {
        for (const taskId of taskIds) {
          const { event } = revokeOf(batch.row(taskId), at)
          if (event) batch.apply({ ...event, reason } as TaskEvent)
        }
      })
      return batch.outcome.applied
    },
    async queuePauses() {
      return [...(await sql<QueuePause[]>`SELECT queue, paused, changed_at FROM queue_pauses ORDER BY queue`)]
    },
    async setQueuePaused(queue, paused, at) {
      // Later than the change before it even when this replica's clock lags: workers keep the newest.
      const [row] = await sql<QueuePause[]>`INSERT INTO queue_pauses VALUES (${queue}, ${paused}, ${at})
        ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused,
          changed_at = greatest(excluded.changed_at, queue_pauses.changed_at + 1)
        RETURNING queue, paused, changed_at`
      if (!row) throw new Error(`queue ${queue}: no pause recorded`)
      return row
    },
    async inFlight(owner) {
      const [row] = await sql<{ tasks: number }[]>`SELECT tasks FROM owner_in_flight WHERE owner = ${owner}`
      return row?.tasks ?? 0
    },
    promoteDueTasks,
    async recentlyRevoked(limit) {
      const rows = await sql<Pick<TaskRow, "task_id" | "rank">[]>`SELECT task_id, rank FROM tasks
        WHERE status = 'REVOKED' ORDER BY finished_at DESC NULLS LAST LIMIT ${limit}`
      return rows.map((row) => ({ task_id: row.task_id, run: Math.max(1, currentRun(row)) }))
    },
    stats: async (now, seriesSeconds, windowSeconds) =>
      toStats(now, windowSeconds, await figureRows(now, seriesSeconds, windowSeconds)),
    statusCounts: async () =>
      toCounts([...(await sql<FigureRows["counts"]>`SELECT status, tasks FROM status_counts`)]),
    async workers(now, lostAfterMissed) {
      const rows = await sql<{ heartbeat: string; seen_at: number }[]>`SELECT heartbeat, seen_at FROM workers
        ORDER BY worker`
      return toWorkerRecords([...rows], now, lostAfterMissed)
    },
    claimKey,
    async renewLease(key, leaseWas, leaseUntil) {
      const renewed = await sql`UPDATE idempotency_keys SET lease_until = ${leaseUntil}
        WHERE key = ${key} AND lease_until = ${leaseWas}`
      return renewed.count > 0
    },
    async forgetExpiredClaims(now) {
      return (await sql`DELETE FROM idempotency_keys WHERE expires_at <= ${now}`).count
    },
    async prune(statsBefore, workersBefore) {
      await sql`DELETE FROM throughput WHERE second < ${Math.floor(statsBefore / 1000)}`
      await sql`DELETE FROM latency_buckets WHERE minute < ${Math.floor(statsBefore / 60_000)}`
      await sql`DELETE FROM workers WHERE seen_at < ${workersBefore}`
    },
    async succeededBetween(fromId, toId, afterId, limit, owner) {
      // By the primary key (ids sort by submission), or by the owner's index: a report reads only its window.
      const ofOwner = owner === undefined ? sql`` : sql`owner = ${owner} AND`
      return [
        ...(await sql<ReportRow[]>`SELECT task_id, kind, result FROM tasks WHERE ${ofOwner}
          task_id >= ${fromId} AND task_id < ${toId} AND task_id > ${afterId} AND status = 'SUCCESS'
          AND kind IN ('polarity:review', 'document:sentences') ORDER BY task_id LIMIT ${limit}`),
      ]
    },
    async ping() {
      await sql`SELECT 1`
    },
    schedules: postgresSchedules(sql),
    webhooks: webhooks.store,
    close: () => sql.end({ timeout: 5 }),
  }
}

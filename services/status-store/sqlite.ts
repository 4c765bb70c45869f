// The status store on SQLite, embedded: the tasks as a monotonic state machine over their events, the inbox
// that makes applying an event idempotent, the dashboard's figures, and the queries the store answers. One
// process owns the file; every call runs synchronously inside it and its promise is already settled.
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import {
  eventId,
  type QueuePause,
  type TaskEvent,
  type TaskKind,
  type TaskProgress,
  type TaskRoute,
  type WorkerHeartbeat,
} from "../../shared/contracts.ts"
import { openSqlite, type SqliteDatabase } from "../../shared/runtime.ts"
import {
  type FigureRows,
  figureDeltas,
  figureWindow,
  type InboxRow,
  type Series,
  timelineDetail,
  toCounts,
  toStats,
  toTimeline,
  toWorkerRecords,
} from "./dashboard.ts"
import { sqliteSchedules } from "./sqlite-schedules.ts"
import { sqliteWebhooks } from "./sqlite-webhooks.ts"
import {
  type Claim,
  type EventsOutcome,
  type ListFilter,
  newerSchemaError,
  type ReportRow,
  type StatusStore,
} from "./store.ts"
import {
  type Applied,
  admit,
  currentRun,
  type Expiries,
  type GroupRow,
  horizonAfter,
  inFlightDeltas,
  mergeEvent,
  revokeOf,
  supersedes,
  TASK_COLUMNS,
  type TaskRow,
  toRecord,
} from "./task-state.ts"
import { dueDelivery, toWebhookEntries } from "./webhooks.ts"

/** The final statuses, as the expiry index and its query both spell them (the index serves only that spelling). */
const FINAL_SQL = "('SUCCESS', 'FAILURE', 'EXPIRED', 'REVOKED')"

/**
 * Free pages handed back to the file system after each expiry batch, at most (4 MiB of 4 KiB pages): enough for
 * what a batch frees, and small steps, as the store's one connection does nothing else meanwhile.
 */
const VACUUM_PAGES_PER_BATCH = 1024

/** The first version's schema; MIGRATIONS bring it up to date. */
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

/** Applied in order, once each: PRAGMA user_version counts those a database has. */
const MIGRATIONS = [
  // 1: batches (a task's group and place in it) and listing by status, newest first (UUIDv7 ids sort by time).
  `ALTER TABLE tasks ADD COLUMN group_id TEXT;
   ALTER TABLE tasks ADD COLUMN group_index INTEGER;
   CREATE INDEX tasks_by_status ON tasks (status, task_id);
   CREATE INDEX tasks_by_group ON tasks (group_id, group_index) WHERE group_id IS NOT NULL;`,
  // 2: a batch's size and time, from the first PENDING event of its tasks.
  `CREATE TABLE groups (group_id TEXT PRIMARY KEY, size INTEGER NOT NULL, submitted_at INTEGER NOT NULL)
     WITHOUT ROWID;`,
  // 3: Idempotency-Key claims: which request a key belongs to and the task ids it was given.
  `CREATE TABLE idempotency_keys (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, group_id TEXT,
     task_ids TEXT NOT NULL, lease_until INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
   CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);`,
  // 4: the dashboard. Counts per status, per-second throughput and per-minute latency histograms, kept up to date
  // by the events that change them, so that no figure needs a scan of the tasks; each task's history, in the inbox
  // (an event's id starts with its task's, so a task's events are one range of it); listing by kind; the workers'
  // last heartbeats.
  `CREATE TABLE status_counts (status TEXT PRIMARY KEY, tasks INTEGER NOT NULL) WITHOUT ROWID;
   INSERT INTO status_counts SELECT status, count(*) FROM tasks GROUP BY status;
   CREATE TABLE throughput (second INTEGER PRIMARY KEY, submitted INTEGER NOT NULL, succeeded INTEGER NOT NULL,
     failed INTEGER NOT NULL, retried INTEGER NOT NULL);
   CREATE TABLE latency_buckets (minute INTEGER NOT NULL, phase TEXT NOT NULL, bucket INTEGER NOT NULL,
     tasks INTEGER NOT NULL, PRIMARY KEY (minute, phase, bucket)) WITHOUT ROWID;
   ALTER TABLE inbox ADD COLUMN run INTEGER;
   ALTER TABLE inbox ADD COLUMN at INTEGER;
   ALTER TABLE inbox ADD COLUMN detail TEXT;
   CREATE INDEX tasks_by_kind ON tasks (kind, task_id);
   CREATE INDEX tasks_by_status_kind ON tasks (status, kind, task_id);
   CREATE TABLE workers (worker TEXT PRIMARY KEY, heartbeat TEXT NOT NULL, seen_at INTEGER NOT NULL)
     WITHOUT ROWID;`,
  // 5: the column that orders a task's events is its rank (user-visible progress is another thing).
  `ALTER TABLE tasks RENAME COLUMN progress TO rank;`,
  // 6: the latest progress report of a running task (not a state: it never moves the task's status).
  `ALTER TABLE tasks ADD COLUMN progress_report TEXT;`,
  // 7: ownership. The API key's name that submitted a task or a group (null when the API was open); a key's
  // listing, with or without a status, is a range of an index; each owner's tasks in flight, kept by the events.
  `ALTER TABLE tasks ADD COLUMN owner TEXT;
   ALTER TABLE groups ADD COLUMN owner TEXT;
   CREATE INDEX tasks_by_owner ON tasks (owner, task_id) WHERE owner IS NOT NULL;
   CREATE INDEX tasks_by_owner_status ON tasks (owner, status, task_id) WHERE owner IS NOT NULL;
   CREATE TABLE owner_in_flight (owner TEXT PRIMARY KEY, tasks INTEGER NOT NULL) WITHOUT ROWID;`,
  // 8: delayed tasks: when each is due, and the SCHEDULED ones by that time, to make them PENDING when it comes.
  `ALTER TABLE tasks ADD COLUMN eta INTEGER;
   CREATE INDEX tasks_scheduled_by_eta ON tasks (eta) WHERE status = 'SCHEDULED';`,
  // 9: periodic schedules, and each occurrence claimed: its primary key is what makes an occurrence fire once.
  `CREATE TABLE schedules (id TEXT PRIMARY KEY, owner TEXT, definition TEXT NOT NULL, paused INTEGER NOT NULL,
     from_file INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, next_run_at INTEGER,
     last_run_at INTEGER, last_task_id TEXT) WITHOUT ROWID;
   CREATE INDEX schedules_due ON schedules (next_run_at) WHERE paused = 0;
   CREATE TABLE schedule_runs (schedule_id TEXT NOT NULL, occurrence INTEGER NOT NULL, task_id TEXT NOT NULL,
     claimed_by TEXT NOT NULL, claimed_at INTEGER NOT NULL, published_at INTEGER,
     PRIMARY KEY (schedule_id, occurrence)) WITHOUT ROWID;
   CREATE INDEX schedule_runs_unpublished ON schedule_runs (claimed_at) WHERE published_at IS NULL;`,
  // 10: completion webhooks: a task's callback URL, the deliveries due (written with the final state that made
  // them due: an outbox) and the attempts the workers report.
  `ALTER TABLE tasks ADD COLUMN callback_url TEXT;
   CREATE TABLE webhook_deliveries (delivery_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, url TEXT NOT NULL,
     record TEXT NOT NULL, created_at INTEGER NOT NULL, queued_at INTEGER) WITHOUT ROWID;
   CREATE INDEX webhook_deliveries_unqueued ON webhook_deliveries (created_at) WHERE queued_at IS NULL;
   CREATE TABLE webhook_attempts (delivery_id TEXT NOT NULL, attempt INTEGER NOT NULL, task_id TEXT NOT NULL,
     at INTEGER NOT NULL, outcome TEXT NOT NULL, status_code INTEGER, error TEXT, next_attempt_at INTEGER,
     PRIMARY KEY (delivery_id, attempt)) WITHOUT ROWID;
   CREATE INDEX webhook_attempts_by_task ON webhook_attempts (task_id);`,
  // 11: events held until their cause arrives (task-state.ts's `admit`): a task's, and the oldest, in order.
  `CREATE TABLE held_events (event_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, held_at INTEGER NOT NULL,
     waiting_for TEXT NOT NULL, event TEXT NOT NULL) WITHOUT ROWID;
   CREATE INDEX held_events_by_task ON held_events (task_id);
   CREATE INDEX held_events_by_age ON held_events (held_at);`,
  // 12: result expiry (RESULT_EXPIRES): the final tasks by when they ended, so that each batch reads the oldest.
  `CREATE INDEX tasks_final_by_end ON tasks (finished_at) WHERE status IN ${FINAL_SQL};`,
  // 13: work queues an operator paused (or resumed): workers ask for them when they start.
  `CREATE TABLE queue_pauses (queue TEXT PRIMARY KEY, paused INTEGER NOT NULL, changed_at INTEGER NOT NULL)
     WITHOUT ROWID;`,
  // 14: the expiry horizon, one row: the latest mint time among the tasks whose results expired (null: none yet).
  `CREATE TABLE expiry_horizon (minted_until INTEGER);
   INSERT INTO expiry_horizon VALUES (NULL);`,
  // 15: each expiry batch's latest mint time, until it is old enough to move the horizon (store.ts's
  // `expireResults`): a submission far behind in the events queue is not taken for an expired task's copy.
  `CREATE TABLE expiry_marks (expired_at INTEGER NOT NULL, minted_until INTEGER NOT NULL);`,
  // 16: the ids of the tasks those marks cover, until they settle (task-state.ts's `Expiries`): the horizon does
  // not refuse their late events until then, and a copy of a PENDING would make a row that never ends.
  `CREATE TABLE expired_tasks (task_id TEXT PRIMARY KEY, expired_at INTEGER NOT NULL) WITHOUT ROWID;
   CREATE INDEX expired_tasks_by_time ON expired_tasks (expired_at);`,
]

/** The schema version this code brings a database to. */
export const SQLITE_SCHEMA_VERSION = MIGRATIONS.length

function migrate(db: SqliteDatabase): void {
  const { user_version: version } = db.query<{ user_version: number }, []>("PRAGMA user_version").get() ?? {
    user_version: 0,
  }
  if (version > MIGRATIONS.length) throw newerSchemaError(version, MIGRATIONS.length)
  db.transaction(() => {
    MIGRATIONS.slice(version).forEach((sql, i) => {
      db.exec(sql)
      db.exec(`PRAGMA user_version = ${version + i + 1}`)
    })
  })()
}

interface ClaimRow extends Omit<Claim, "task_ids"> {
  task_ids: string
}

export interface SqliteStore extends StatusStore {
  /**
   * Whether the file gives back the pages that expired results free (auto_vacuum INCREMENTAL). A database made
   * before this store did so keeps them as free pages, which new rows reuse: the file stops growing but does not
   * shrink, until a VACUUM (docs/operations.md).
   */
  readonly incrementalVacuum: boolean
}

export function openSqliteStore(path: string, synchronous: "FULL" | "NORMAL"): SqliteStore {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true })
  const db = openSqlite(path)
  // Takes effect only on a new, empty database, before its first table; an older one keeps its mode.
  db.exec("PRAGMA auto_vacuum = INCREMENTAL")
  db.exec("PRAGMA journal_mode = WAL")
  db.exec(`PRAGMA synchronous = ${synchronous}`)
  db.exec("PRAGMA busy_timeout = 5000")
  db.exec(SCHEMA)
  try {
    migrate(db)
  } catch (err) {
    db.close()
    throw err
  }
  const tasks = taskStatements(db)
  const webhooks = sqliteWebhooks(db)
  const figures = figureStatements(db)
  const claims = claimStatements(db)

  const held = heldStatements(db)
  const expiry = expiryStatements(db)
  const incrementalVacuum =
    db.query<{ auto_vacuum: number }, []>("PRAGMA auto_vacuum").get()?.auto_vacuum === 2
  const pauses = pauseStatements(db)

  /** The inbox entry and the state change commit together, or neither does; null for a duplicate. */
  function applyOne(event: TaskEvent): Applied | null {
    if (tasks.recordInInbox.run(eventId(event), event.run, event.at, timelineDetail(event)).changes === 0)
      return null
    const before = tasks.select.get(event.task_id)
    const after = mergeEvent(before, event)
    tasks.upsert.run(Object.fromEntries(TASK_COLUMNS.map((c) => [c, after[c]])))
    if (event.state === "PENDING" && event.group) {
      tasks.recordGroup.run(event.group.group_id, event.group.size, event.at, event.owner ?? null)
    }
    const delivery = dueDelivery(before, after, Date.now())
    if (delivery) webhooks.insertDelivery(delivery)
    return { event, before, after }
  }

  const seen = (id: string) => tasks.inInbox.get(id) !== null

  /** What admission knows of expired tasks, as of this transaction's horizon. */
  const expiriesAt = (horizon: number | null): Expiries => ({
    horizon,
    lately: (taskId) => expiry.expiredLately.get(taskId) !== null,
  })

  /** Admit one event: apply it, keep it aside until its cause comes, or refuse it. */
  function admitOne(event: TaskEvent, now: number, outcome: EventsOutcome, expiries: Expiries): boolean {
    const id = eventId(event)
    if (seen(id)) return false
    const admission = admit(tasks.select.get(event.task_id), event, seen, expiries)
    if (admission.verdict === "refuse") {
      outcome.refused.push({ event, reason: admission.reason })
      return false
    }
    if (admission.verdict === "hold") {
      held.hold.run(id, event.task_id, now, admission.waitingFor, JSON.stringify(event))
      return false
    }
    const applied = applyOne(event)
    if (applied) outcome.applied.push(applied)
    return applied !== null
  }

  /** Events of these tasks held before: admitted again until none moves, since each may be the next one's cause. */
  function releaseHeld(taskIds: Iterable<string>, now: number, outcome: EventsOutcome, expiries: Expiries) {
    for (const taskId of taskIds) {
      for (let moved = true; moved; ) {
        moved = false
        for (const { event_id: id, event } of held.ofTask.all(taskId)) {
          const refused = outcome.refused.length
          const applied = admitOne(JSON.parse(event) as TaskEvent, now, outcome, expiries)
          if (applied || outcome.refused.length > refused || seen(id)) held.forget.run(id)
          moved ||= applied
        }
      }
    }
  }

  const applyEvents = db.transaction((events: TaskEvent[], now: number) => {
    const outcome: EventsOutcome = { applied: [], refused: [] }
    const moved = new Set<string>()
    const expiries = expiriesAt(expiry.horizon.get()?.minted_until ?? null)
    for (const event of events) if (admitOne(event, now, outcome, expiries)) moved.add(event.task_id)
    if (held.any.get()) releaseHeld(moved, now, outcome, expiries)
    figures.record(outcome.applied)
    for (const [owner, delta] of inFlightDeltas(outcome.applied)) tasks.addInFlight.run(owner, delta)
    return outcome
  })
  /** The store's own REVOKED, applied without admission: only the store revokes. */
  const revoke = db.transaction((taskId: string, at: number, terminate: boolean) => {
    const { outcome, event } = revokeOf(tasks.select.get(taskId), at, terminate)
    const applied = event ? [applyOne(event)].filter((a) => a !== null) : []
    figures.record(applied)
    for (const [owner, delta] of inFlightDeltas(applied)) tasks.addInFlight.run(owner, delta)
    return { outcome, row: tasks.select.get(taskId), applied }
  })
  const expireResults = db.transaction((before: number, limit: number, settledBefore: number) => {
    const expired = expiry.oldestFinal.all(before, limit)
    const gone = new Map<string, number>()
    const expiredAt = Date.now()
    for (const { task_id: taskId, status } of expired) {
      expiry.deleteTask.run(taskId)
      expiry.keepExpired.run(taskId, expiredAt)
      // Event ids are `<task id>:…` and delivery ids `<task id>.<run>`: ";" and "/" sort right after.
      expiry.deleteInbox.run(`${taskId}:`, `${taskId};`)
      expiry.deleteHeld.run(taskId)
      expiry.deleteDeliveries.run(`${taskId}.`, `${taskId}/`)
      expiry.deleteAttempts.run(taskId)
      gone.set(status, (gone.get(status) ?? 0) + 1)
    }
    for (const groupId of new Set(expired.map((row) => row.group_id))) {
      if (groupId !== null) expiry.deleteEmptyGroup.run(groupId)
    }
    for (const [status, tasks] of gone) figures.addToCount.run(status, -tasks)
    const latest = horizonAfter(
      null,
      expired.map((row) => row.task_id),
    )
    if (latest !== null) expiry.mark.run(expiredAt, latest)
    const was = expiry.horizon.get()?.minted_until ?? null
    const settled = expiry.settled.get(settledBefore)?.minted_until ?? null
    const horizon = settled === null || (was !== null && was >= settled) ? was : settled
    if (horizon !== was) expiry.moveHorizon.run(horizon)
    expiry.forgetSettled.run(settledBefore)
    expiry.forgetSettledTasks.run(settledBefore)
    const unsettled = expiry.unsettled.get()?.minted_until ?? null
    return {
      expired: expired.length,
      horizon: unsettled === null ? horizon : Math.max(unsettled, horizon ?? 0),
    }
  })
  /** A purge's REVOKED: like a DELETE's, applied without admission, a batch of tasks per transaction. */
  const revokeNotStarted = db.transaction((kinds: TaskKind[], at: number, reason: string, limit: number) => {
    const rows = db
      .query<TaskRow, string[]>(
        `SELECT * FROM tasks WHERE status IN ('SCHEDULED', 'PENDING', 'RETRY')
         AND kind IN (${kinds.map(() => "?").join(", ")}) LIMIT ${Math.floor(limit)}`,
      )
      .all(...kinds)
    const applied = rows.flatMap((row) => {
      const { event } = revokeOf(row, at)
      return (event && applyOne({ ...event, reason } as TaskEvent)) || []
    })
    figures.record(applied)
    for (const [owner, delta] of inFlightDeltas(applied)) tasks.addInFlight.run(owner, delta)
    return applied
  })
  const setQueuePaused = db.transaction((queue: TaskRoute, paused: boolean, at: number): QueuePause => {
    const before = pauses.select.get(queue)
    // Later than the change before it even when the clock did not move: workers keep the newest.
    const changedAt = Math.max(at, (before?.changed_at ?? 0) + 1)
    pauses.upsert.run(queue, paused ? 1 : 0, changedAt)
    return { queue, paused, changed_at: changedAt }
  })
  const claimKey = db.transaction((claim: Claim, now: number): Claim | null => {
    const held = claims.select.get(claim.key, now)
    if (held) return { ...held, task_ids: JSON.parse(held.task_ids) as string[] }
    claims.upsert.run({ ...claim, task_ids: JSON.stringify(claim.task_ids) })
    return null
  })
  const promoteDueTasks = db.transaction((now: number): number => {
    const promoted = tasks.promoteDue.all(now).length
    if (promoted > 0) figures.moveCount("SCHEDULED", "PENDING", promoted)
    return promoted
  })
  const recordProgress = db.transaction((reports: TaskProgress[]) => {
    for (const report of reports) {
      const held = tasks.selectProgress.get(report.task_id)
      if (held && supersedes(report, held.progress_report))
        tasks.updateProgress.run(JSON.stringify(report), report.task_id)
    }
  })
  const recordHeartbeats = db.transaction((heartbeats: WorkerHeartbeat[], seenAt: number, keep: number) => {
    for (const heartbeat of heartbeats)
      figures.putWorker.run(heartbeat.worker, JSON.stringify(heartbeat), seenAt)
    figures.keepWorkers.run(keep)
  })

  return {
    incrementalVacuum,
    applyEvents: async (events, now = Date.now()) => applyEvents(events, now),
    async expireResults(before, limit, settledBefore) {
      const outcome = expireResults(before, limit, settledBefore)
      if (outcome.expired > 0 && incrementalVacuum)
        db.exec(`PRAGMA incremental_vacuum(${VACUUM_PAGES_PER_BATCH})`)
      return outcome
    },
    async heldBefore(before, limit) {
      return held.before.all(before, limit).map((row) => ({
        event: JSON.parse(row.event) as TaskEvent,
        heldAt: row.held_at,
        waitingFor: row.waiting_for,
      }))
    },
    async forgetHeld(events) {
      for (const event of events) held.forget.run(eventId(event))
    },
    recordHeartbeats: async (heartbeats, seenAt, keep = Number.MAX_SAFE_INTEGER) =>
      recordHeartbeats(heartbeats, seenAt, keep),
    recordProgress: async (reports) => recordProgress(reports),
    find: async (taskId) => tasks.select.get(taskId),
    findMany: async (taskIds) => taskIds.map((taskId) => tasks.select.get(taskId)),
    list: async (filter, limit, after) => tasks.list(filter, limit, after),
    async detail(taskId) {
      const row = tasks.select.get(taskId)
      if (!row) return null
      const input = row.input === null ? null : (JSON.parse(row.input) as Record<string, unknown>)
      const timeline = toTimeline(figures.inboxOfTask.all(`${taskId}:`, `${taskId};`))
      const detail = { task: toRecord(row), input, run: Math.max(1, currentRun(row)), timeline }
      if (row.callback_url === null) return detail
      return { ...detail, webhooks: toWebhookEntries(webhooks.attemptsOfTask(taskId)) }
    },
    async findGroup(groupId) {
      const group = tasks.selectGroup.get(groupId)
      return group ? { group, members: tasks.groupMembers.all(groupId) } : null
    },
    revoke: async (taskId, at, terminate) => revoke(taskId, at, terminate),
    revokeNotStarted: async (kinds, at, reason, limit) => revokeNotStarted(kinds, at, reason, limit),
    queuePauses: async () =>
      pauses.all
        .all()
        .map((row) => ({ queue: row.queue, paused: row.paused === 1, changed_at: row.changed_at })),
    setQueuePaused: async (queue, paused, at) => setQueuePaused(queue, paused, at),
    inFlight: async (owner) => tasks.inFlight.get(owner)?.tasks ?? 0,
    promoteDueTasks: async (now) => promoteDueTasks(now),
    recentlyRevoked: async (limit) =>
      tasks.selectRevoked
        .all(limit)
        .map((row) => ({ task_id: row.task_id, run: Math.max(1, currentRun(row)) })),
    stats: async (now, seriesSeconds, windowSeconds) =>
      toStats(now, windowSeconds, figures.rows(now, seriesSeconds, windowSeconds)),
    statusCounts: async () => toCounts(figures.counts.all()),
    workers: async (now, lostAfterMissed) => toWorkerRecords(figures.allWorkers.all(), now, lostAfterMissed),
    claimKey: async (claim, now) => claimKey(claim, now),
    renewLease: async (key, leaseWas, leaseUntil) => claims.renew.run(leaseUntil, key, leaseWas).changes > 0,
    forgetExpiredClaims: async (now) => claims.deleteExpired.run(now).changes,
    async prune(statsBefore, workersBefore) {
      figures.pruneThroughput.run(Math.floor(statsBefore / 1000))
      figures.pruneLatency.run(Math.floor(statsBefore / 60_000))
      figures.pruneWorkers.run(workersBefore)
    },
    succeededBetween: async (fromId, toId, afterId, limit, owner) =>
      owner === undefined
        ? tasks.succeededBetween.all(fromId, toId, afterId, limit)
        : tasks.succeededOfOwner.all(owner, fromId, toId, afterId, limit),
    async ping() {
      db.query("SELECT 1").get()
    },
    schedules: sqliteSchedules(db),
    webhooks: webhooks.store,
    close: async () => db.close(),
  }
}

interface HeldRow {
  event_id: string
  held_at: number
  waiting_for: string
  event: string
}

interface QueuePauseRow {
  queue: TaskRoute
  paused: number
  changed_at: number
}

function pauseStatements(db: SqliteDatabase) {
  return {
    all: db.query<QueuePauseRow, []>("SELECT * FROM queue_pauses ORDER BY queue"),
    select: db.query<QueuePauseRow, [string]>("SELECT * FROM queue_pauses WHERE queue = ?"),
    upsert: db.query<void, [string, number, number]>(
      `INSERT INTO queue_pauses VALUES (?1, ?2, ?3)
       ON CONFLICT (queue) DO UPDATE SET paused = ?2, changed_at = ?3`,
    ),
  }
}

function heldStatements(db: SqliteDatabase) {
  return {
    hold: db.query<void, [string, string, number, string, string]>(
      "INSERT OR IGNORE INTO held_events VALUES (?, ?, ?, ?, ?)",
    ),
    any: db.query<{ one: number }, []>("SELECT 1 AS one FROM held_events LIMIT 1"),
    ofTask: db.query<HeldRow, [string]>("SELECT * FROM held_events WHERE task_id = ? ORDER BY held_at"),
    before: db.query<HeldRow, [number, number]>(
      "SELECT * FROM held_events WHERE held_at < ? ORDER BY held_at LIMIT ?",
    ),
    forget: db.query<void, [string]>("DELETE FROM held_events WHERE event_id = ?"),
  }
}

function taskStatements(db: SqliteDatabase) {
  return {
    inInbox: db.query<{ one: number }, [string]>("SELECT 1 AS one FROM inbox WHERE event_id = ?"),
    select: db.query<TaskRow, [string]>("SELECT * FROM tasks WHERE task_id = ?"),
    upsert: db.query<void, Record<string, string | number | null>>(
      `INSERT INTO tasks (${TASK_COLUMNS.join(", ")}) VALUES (${TASK_COLUMNS.map((c) => `$${c}`).join(", ")})
       ON CONFLICT (task_id) DO UPDATE SET
         ${TASK_COLUMNS.slice(1)
           .map((c) => `${c} = excluded.${c}`)
           .join(", ")}`,
    ),
    recordInInbox: db.query<void, [string, number, number, string | null]>(
      "INSERT OR IGNORE INTO inbox VALUES (?, ?, ?, ?)",
    ),
    recordGroup: db.query<void, [string, number, number, string | null]>(
      "INSERT OR IGNORE INTO groups (group_id, size, submitted_at, owner) VALUES (?, ?, ?, ?)",
    ),
    addInFlight: db.query<void, [string, number]>(
      "INSERT INTO owner_in_flight VALUES (?1, ?2) ON CONFLICT (owner) DO UPDATE SET tasks = tasks + ?2",
    ),
    inFlight: db.query<{ tasks: number }, [string]>("SELECT tasks FROM owner_in_flight WHERE owner = ?"),
    selectProgress: db.query<Pick<TaskRow, "progress_report">, [string]>(
      "SELECT progress_report FROM tasks WHERE task_id = ?",
    ),
    updateProgress: db.query<void, [string, string]>(
      "UPDATE tasks SET progress_report = ? WHERE task_id = ?",
    ),
    selectRevoked: db.query<Pick<TaskRow, "task_id" | "rank">, [number]>(
      "SELECT task_id, rank FROM tasks WHERE status = 'REVOKED' ORDER BY finished_at DESC LIMIT ?",
    ),
    selectGroup: db.query<GroupRow, [string]>("SELECT * FROM groups WHERE group_id = ?"),
    // By the primary key (ids sort by submission), or by the owner's index: a report reads only its window.
    succeededBetween: db.query<ReportRow, [string, string, string, number]>(
      `SELECT task_id, kind, result FROM tasks WHERE task_id >= ?1 AND task_id < ?2 AND task_id > ?3
       AND status = 'SUCCESS' AND kind IN ('polarity:review', 'document:sentences') ORDER BY task_id LIMIT ?4`,
    ),
    succeededOfOwner: db.query<ReportRow, [string, string, string, string, number]>(
      `SELECT task_id, kind, result FROM tasks WHERE owner = ?1 AND task_id >= ?2 AND task_id < ?3 AND task_id > ?4
       AND status = 'SUCCESS' AND kind IN ('polarity:review', 'document:sentences') ORDER BY task_id LIMIT ?5`,
    ),
    promoteDue: db.query<{ task_id: string }, [number]>(
      "UPDATE tasks SET status = 'PENDING' WHERE status = 'SCHEDULED' AND eta <= ? RETURNING task_id",
    ),
    groupMembers: db.query<TaskRow, [string]>("SELECT * FROM tasks WHERE group_id = ? ORDER BY group_index"),
    list(filter: ListFilter, limit: number, after = "~"): TaskRow[] {
      const where = ["task_id < $after"]
      if (filter.owner) where.push("owner = $owner")
      if (filter.status) where.push("status = $status")
      if (filter.kind) where.push("kind = $kind")
      // "~" sorts after every hex digit and dash: the ids that start with the prefix, and only they.
      if (filter.idPrefix) where.push("task_id >= $prefix AND task_id < $prefix || '~'")
      const sql = `SELECT * FROM tasks WHERE ${where.join(" AND ")} ORDER BY task_id DESC LIMIT $limit`
      return db.query<TaskRow, Record<string, string | number>>(sql).all({
        after,
        limit,
        ...(filter.owner && { owner: filter.owner }),
        ...(filter.status && { status: filter.status }),
        ...(filter.kind && { kind: filter.kind }),
        ...(filter.idPrefix && { prefix: filter.idPrefix }),
      })
    },
  }
}

function expiryStatements(db: SqliteDatabase) {
  return {
    // Named: without statistics the planner takes tasks_by_status_kind and sorts every final task, each batch.
    oldestFinal: db.query<Pick<TaskRow, "task_id" | "status" | "group_id">, [number, number]>(
      `SELECT task_id, status, group_id FROM tasks INDEXED BY tasks_final_by_end
       WHERE status IN ${FINAL_SQL} AND finished_at < ?1 AND (eta IS NULL OR eta < ?1)
       ORDER BY finished_at LIMIT ?2`,
    ),
    deleteTask: db.query<void, [string]>("DELETE FROM tasks WHERE task_id = ?"),
    deleteInbox: db.query<void, [string, string]>("DELETE FROM inbox WHERE event_id > ? AND event_id < ?"),
    deleteHeld: db.query<void, [string]>("DELETE FROM held_events WHERE task_id = ?"),
    deleteDeliveries: db.query<void, [string, string]>(
      "DELETE FROM webhook_deliveries WHERE delivery_id > ? AND delivery_id < ?",
    ),
    deleteAttempts: db.query<void, [string]>("DELETE FROM webhook_attempts WHERE task_id = ?"),
    horizon: db.query<{ minted_until: number | null }, []>("SELECT minted_until FROM expiry_horizon"),
    moveHorizon: db.query<void, [number | null]>("UPDATE expiry_horizon SET minted_until = ?"),
    mark: db.query<void, [number, number]>("INSERT INTO expiry_marks VALUES (?, ?)"),
    settled: db.query<{ minted_until: number | null }, [number]>(
      "SELECT max(minted_until) AS minted_until FROM expiry_marks WHERE expired_at < ?",
    ),
    forgetSettled: db.query<void, [number]>("DELETE FROM expiry_marks WHERE expired_at < ?"),
    keepExpired: db.query<void, [string, number]>("INSERT OR REPLACE INTO expired_tasks VALUES (?, ?)"),
    expiredLately: db.query<{ one: number }, [string]>(
      "SELECT 1 AS one FROM expired_tasks WHERE task_id = ?",
    ),
    forgetSettledTasks: db.query<void, [number]>("DELETE FROM expired_tasks WHERE expired_at < ?"),
    unsettled: db.query<{ minted_until: number | null }, []>(
      "SELECT max(minted_until) AS minted_until FROM expiry_marks",
    ),
    deleteEmptyGroup: db.query<void, [string]>(
      "DELETE FROM groups WHERE group_id = ?1 AND NOT EXISTS (SELECT 1 FROM tasks WHERE group_id = ?1)",
    ),
  }
}

function claimStatements(db: SqliteDatabase) {
  return {
    select: db.query<ClaimRow, [string, number]>(
      "SELECT * FROM idempotency_keys WHERE key = ? AND expires_at > ?",
    ),
    upsert: db.query<void, Record<string, string | number | null>>(
      `INSERT OR REPLACE INTO idempotency_keys VALUES ($key, $fingerprint, $group_id, $task_ids, $lease_until,
         $expires_at)`,
    ),
    renew: db.query<void, [number, string, number]>(
      "UPDATE idempotency_keys SET lease_until = ? WHERE key = ? AND lease_until = ?",
    ),
    deleteExpired: db.query<void, [number]>("DELETE FROM idempotency_keys WHERE expires_at <= ?"),
  }
}

function figureStatements(db: SqliteDatabase) {
  const addToCount = db.query<void, [string, number]>(
    "INSERT INTO status_counts VALUES (?1, ?2) ON CONFLICT (status) DO UPDATE SET tasks = tasks + ?2",
  )
  const addThroughput = db.query<void, [number, number, number, number, number]>(
    `INSERT INTO throughput VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (second) DO UPDATE SET submitted = submitted + ?2, succeeded = succeeded + ?3,
       failed = failed + ?4, retried = retried + ?5`,
  )
  const addLatency = db.query<void, [number, string, number, number]>(
    `INSERT INTO latency_buckets VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (minute, phase, bucket) DO UPDATE SET tasks = tasks + ?4`,
  )
  const counts = db.query<FigureRows["counts"][number], []>("SELECT status, tasks FROM status_counts")
  const seriesSince = db.query<FigureRows["series"][number], [number]>(
    "SELECT * FROM throughput WHERE second >= ? ORDER BY second",
  )
  const sums = db.query<Record<Series, number | null>, [number, number]>(
    `SELECT sum(submitted) AS submitted, sum(succeeded) AS succeeded, sum(failed) AS failed,
       sum(retried) AS retried FROM throughput WHERE second >= ? AND second < ?`,
  )
  const latencySince = db.query<FigureRows["latency"][number], [number]>(
    `SELECT phase, bucket, sum(tasks) AS tasks FROM latency_buckets WHERE minute >= ?
     GROUP BY phase, bucket ORDER BY bucket`,
  )
  return {
    counts,
    addToCount,
    /** Inside a transaction that moved `tasks` tasks from one status to another without an event. */
    moveCount(from: string, to: string, tasks: number): void {
      addToCount.run(from, -tasks)
      addToCount.run(to, tasks)
    },
    /** Inside the transaction that applied the events: what they changed, added up, one write per key. */
    record(applied: Applied[]): void {
      const deltas = figureDeltas(applied)
      for (const [status, delta] of deltas.statuses) addToCount.run(status, delta)
      for (const row of deltas.throughput) addThroughput.run(...row)
      for (const row of deltas.latency) addLatency.run(...row)
    },
    rows(now: number, seriesSeconds: number, windowSeconds: number): FigureRows {
      const window = figureWindow(now, seriesSeconds, windowSeconds)
      return {
        counts: counts.all(),
        series: seriesSince.all(window.seriesFrom),
        sums: sums.get(window.ratesFrom, window.ratesTo),
        latency: latencySince.all(window.latencyFrom),
      }
    },
    // Event ids are `<task id>:<state>:<attempt>`, and ";" sorts right after ":". Events recorded before the
    // timeline existed have no time and are left out.
    inboxOfTask: db.query<InboxRow, [string, string]>(
      "SELECT event_id, run, at, detail FROM inbox WHERE event_id > ? AND event_id < ? AND at IS NOT NULL",
    ),
    putWorker: db.query<void, [string, string, number]>("INSERT OR REPLACE INTO workers VALUES (?, ?, ?)"),
    allWorkers: db.query<{ heartbeat: string; seen_at: number }, []>(
      "SELECT heartbeat, seen_at FROM workers ORDER BY worker",
    ),
    pruneThroughput: db.query<void, [number]>("DELETE FROM throughput WHERE second < ?"),
    pruneLatency: db.query<void, [number]>("DELETE FROM latency_buckets WHERE minute < ?"),
    pruneWorkers: db.query<void, [number]>("DELETE FROM workers WHERE seen_at < ?"),
    keepWorkers: db.query<void, [number]>(
      "DELETE FROM workers WHERE worker IN (SELECT worker FROM workers ORDER BY seen_at DESC, worker LIMIT -1 OFFSET ?)",
    ),
  }
}

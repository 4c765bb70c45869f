// The status store's SQLite database: the tasks as a monotonic state machine over their events, the inbox
// that makes applying an event idempotent, and the queries the store answers.
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import {
  eventId,
  FINAL_STATUSES,
  type GroupRecord,
  TASK_STATUSES,
  type TaskDetail,
  type TaskEvent,
  type TaskKind,
  type TaskRecord,
  type TaskStatus,
  type WorkerHeartbeat,
} from "../../shared/contracts.ts"
import { openSqlite, type SqliteDatabase } from "../../shared/runtime.ts"
import { type Applied, dashboardTables, timelineDetail } from "./dashboard.ts"

export interface TaskRow {
  task_id: string
  kind: string | null
  status: TaskStatus
  progress: number
  attempts: number
  input: string | null
  result: string | null
  error: string | null
  group_id: string | null
  group_index: number | null
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
]

function migrate(db: SqliteDatabase): void {
  const { user_version: version } = db.query<{ user_version: number }, []>("PRAGMA user_version").get() ?? {
    user_version: 0,
  }
  db.transaction(() => {
    MIGRATIONS.slice(version).forEach((sql, i) => {
      db.exec(sql)
      db.exec(`PRAGMA user_version = ${version + i + 1}`)
    })
  })()
}

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

/** The run a row is in: a replay starts a new one. */
export function currentRun(row: Pick<TaskRow, "progress">): number {
  return Math.floor(row.progress / RUN_SPAN)
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
    group_id: null,
    group_index: null,
    submitted_at: null,
    started_at: null,
    finished_at: null,
  }
  const next = { ...current }
  if (event.state === "PENDING") {
    // The submission may arrive after the worker's events; it only fills in what it knows.
    next.kind ??= event.kind
    next.input ??= JSON.stringify(event.input)
    next.group_id ??= event.group?.group_id ?? null
    next.group_index ??= event.group?.index ?? null
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
      // From the final event alone (null when no attempt started), so that any order gives the same row.
      Object.assign(next, { started_at: event.started_at, finished_at: event.at, error: event.error })
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

export function toRecord(row: TaskRow): TaskRecord {
  return {
    task_id: row.task_id,
    kind: row.kind as TaskKind | null,
    status: row.status,
    result: row.result === null ? null : JSON.parse(row.result),
    error: row.error,
    attempts: row.attempts,
    group_id: row.group_id,
    submitted_at: iso(row.submitted_at),
    started_at: iso(row.started_at),
    finished_at: iso(row.finished_at),
  }
}

const UPSERT_COLUMNS = [
  "task_id",
  "kind",
  "status",
  "progress",
  "attempts",
  "input",
  "result",
  "error",
  "group_id",
  "group_index",
  "submitted_at",
  "started_at",
  "finished_at",
] as const satisfies readonly (keyof TaskRow)[]

export type StoreDatabase = ReturnType<typeof openDatabase>

export function openDatabase(path: string, synchronous: "FULL" | "NORMAL") {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true })
  const db = openSqlite(path)
  db.exec("PRAGMA journal_mode = WAL")
  db.exec(`PRAGMA synchronous = ${synchronous}`)
  db.exec("PRAGMA busy_timeout = 5000")
  db.exec(SCHEMA)
  migrate(db)
  const select = db.query<TaskRow, [string]>("SELECT * FROM tasks WHERE task_id = ?")
  const figures = dashboardTables(db)
  const upsert = db.query<void, Record<string, string | number | null>>(
    `INSERT INTO tasks (${UPSERT_COLUMNS.join(", ")}) VALUES (${UPSERT_COLUMNS.map((c) => `$${c}`).join(", ")})
     ON CONFLICT (task_id) DO UPDATE SET
       ${UPSERT_COLUMNS.slice(1)
         .map((c) => `${c} = excluded.${c}`)
         .join(", ")}`,
  )
  const recordInInbox = db.query<void, [string, number, number, string | null]>(
    "INSERT OR IGNORE INTO inbox VALUES (?, ?, ?, ?)",
  )
  const recordGroup = db.query<void, [string, number, number]>(
    "INSERT OR IGNORE INTO groups VALUES (?, ?, ?)",
  )
  // One transaction per batch: the inbox entry and the state change commit together, or neither does.
  const applyEvents = db.transaction((events: TaskEvent[]): Applied[] => {
    const applied: Applied[] = []
    for (const event of events) {
      if (recordInInbox.run(eventId(event), event.run, event.at, timelineDetail(event)).changes === 0)
        continue
      const before = select.get(event.task_id)
      const row = mergeEvent(before, event)
      upsert.run(Object.fromEntries(UPSERT_COLUMNS.map((c) => [c, row[c]])))
      if (event.state === "PENDING" && event.group) {
        recordGroup.run(event.group.group_id, event.group.size, event.at)
      }
      applied.push({ event, before, after: row })
    }
    figures.record(applied)
    return applied
  })
  const selectClaim = db.query<ClaimRow, [string, number]>(
    "SELECT * FROM idempotency_keys WHERE key = ? AND expires_at > ?",
  )
  const upsertClaim = db.query<void, Record<string, string | number | null>>(
    `INSERT OR REPLACE INTO idempotency_keys VALUES ($key, $fingerprint, $group_id, $task_ids, $lease_until,
       $expires_at)`,
  )
  const deleteExpiredClaims = db.query<void, [number]>("DELETE FROM idempotency_keys WHERE expires_at <= ?")
  const selectRevoked = db.query<Pick<TaskRow, "task_id" | "progress">, [number]>(
    "SELECT task_id, progress FROM tasks WHERE status = 'REVOKED' ORDER BY finished_at DESC LIMIT ?",
  )
  const selectGroup = db.query<GroupRow, [string]>("SELECT * FROM groups WHERE group_id = ?")
  const groupMembers = db.query<TaskRow, [string]>(
    "SELECT * FROM tasks WHERE group_id = ? ORDER BY group_index",
  )
  return {
    applyEvents: (events: TaskEvent[]) => applyEvents(events),
    find: (taskId: string) => select.get(taskId),
    /** The most recently revoked tasks, newest first, with the run each revoke ended. */
    recentlyRevoked: (limit: number) =>
      selectRevoked.all(limit).map((row) => ({ task_id: row.task_id, run: Math.max(1, currentRun(row)) })),
    /**
     * Up to `limit` tasks before `after` (all when absent), newest first: UUIDv7 ids sort by creation. Each
     * filter has an index that holds the tasks in id order, so a page reads its own rows and no others.
     */
    list(filter: ListFilter, limit: number, after = "~"): TaskRow[] {
      const where = ["task_id < $after"]
      if (filter.status) where.push("status = $status")
      if (filter.kind) where.push("kind = $kind")
      // "~" sorts after every hex digit and dash: the ids that start with the prefix, and only they.
      if (filter.idPrefix) where.push("task_id >= $prefix AND task_id < $prefix || '~'")
      const sql = `SELECT * FROM tasks WHERE ${where.join(" AND ")} ORDER BY task_id DESC LIMIT $limit`
      return db.query<TaskRow, Record<string, string | number>>(sql).all({
        after,
        limit,
        ...(filter.status && { status: filter.status }),
        ...(filter.kind && { kind: filter.kind }),
        ...(filter.idPrefix && { prefix: filter.idPrefix }),
      })
    },
    /** The task with its input and timeline, or null for a task the store has not heard of. */
    detail(taskId: string): TaskDetail | null {
      const row = select.get(taskId)
      if (!row) return null
      const input = row.input === null ? null : (JSON.parse(row.input) as Record<string, unknown>)
      return {
        task: toRecord(row),
        input,
        run: Math.max(1, currentRun(row)),
        timeline: figures.timeline(taskId),
      }
    },
    stats: figures.stats,
    recordHeartbeats: (heartbeats: WorkerHeartbeat[], seenAt: number) =>
      figures.recordHeartbeats(heartbeats, seenAt),
    workers: figures.workers,
    prune: figures.prune,
    /** The key's claim, unless it has expired. */
    findClaim(key: string, now: number): Claim | null {
      const row = selectClaim.get(key, now)
      return row ? { ...row, task_ids: JSON.parse(row.task_ids) as string[] } : null
    },
    /** Record a claim, replacing an expired one. */
    putClaim(claim: Claim): void {
      upsertClaim.run({ ...claim, task_ids: JSON.stringify(claim.task_ids) })
    },
    forgetExpiredClaims: (now: number) => deleteExpiredClaims.run(now).changes,
    /** The group and its tasks in input order, or null for a group the store has not heard of. */
    findGroup(groupId: string): { group: GroupRow; members: TaskRow[] } | null {
      const group = selectGroup.get(groupId)
      return group ? { group, members: groupMembers.all(groupId) } : null
    },
    close: () => db.close(),
  }
}

export interface ListFilter {
  status?: TaskStatus | undefined
  kind?: TaskKind | undefined
  idPrefix?: string | undefined
}

interface ClaimRow {
  key: string
  fingerprint: string
  group_id: string | null
  task_ids: string
  lease_until: number
  expires_at: number
}
export type Claim = Omit<ClaimRow, "task_ids"> & { task_ids: string[] }

interface GroupRow {
  group_id: string
  size: number
  submitted_at: number
}

/** What a group's tasks add up to; a task whose PENDING has not arrived yet counts as PENDING. */
export function toGroupRecord({ group, members }: { group: GroupRow; members: TaskRow[] }): GroupRecord {
  const counts = Object.fromEntries(TASK_STATUSES.map((status) => [status, 0])) as Record<TaskStatus, number>
  for (const member of members) counts[member.status]++
  counts.PENDING += group.size - members.length
  const final = members.length === group.size && members.every((member) => FINAL_STATUSES.has(member.status))
  const status = final
    ? counts.SUCCESS === group.size
      ? "SUCCESS"
      : "FAILURE"
    : counts.PENDING === group.size
      ? "PENDING"
      : "STARTED"
  return {
    group_id: group.group_id,
    status,
    size: group.size,
    counts,
    task_ids: members.map((member) => member.task_id),
    results: final ? members.map(toRecord) : null,
    submitted_at: iso(group.submitted_at),
  }
}

// The status store's tables on PostgreSQL, as versioned migrations, and the connection every replica opens.
// Times are epoch milliseconds (BIGINT, read back as numbers); text keys that the store ranges over or sorts by
// (task ids, event and delivery ids, worker and schedule names) compare byte by byte (COLLATE "C"), as SQLite's do: a range
// like `event_id > '<task>:' AND event_id < '<task>;'` must not depend on the database's locale.
import postgres from "postgres"
import { newerSchemaError } from "./store.ts"

/** BIGINT and the sums of them come back as numbers: epoch milliseconds and counts are far below 2^53. */
const NUMBERS = {
  bigint: {
    to: 20,
    from: [20, 1700],
    serialize: (value: number) => String(value),
    parse: (value: string) => Number(value),
  },
}

export function connectPostgres(url: string, poolSize: number) {
  return postgres(url, {
    max: poolSize,
    types: NUMBERS,
    // CREATE … IF NOT EXISTS and the like say so in notices: nothing an operator needs.
    onnotice: () => {},
    connection: { application_name: "status-store" },
  })
}
export type Sql = ReturnType<typeof connectPostgres>
export type Tx = postgres.TransactionSql<{ bigint: number }>

/** The final statuses, as the expiry index and its query both spell them (the index serves only that spelling). */
export const FINAL_SQL = "('SUCCESS', 'FAILURE', 'EXPIRED', 'REVOKED')"

/** Applied in order, once each: schema_migrations lists those a database has. */
const MIGRATIONS = [
  // 1: the schema of SQLite's migrations 1–11, at once: the tasks (listed by status, kind, owner, group and
  // eta), the inbox that applies each event once and keeps the timeline, batches, Idempotency-Key claims, the
  // dashboard's figures, owners' tasks in flight, schedules and their claimed occurrences, webhook deliveries and
  // attempts, and events held until their cause arrives.
  `CREATE TABLE tasks (task_id TEXT COLLATE "C" PRIMARY KEY, kind TEXT, status TEXT NOT NULL,
     rank BIGINT NOT NULL, attempts INTEGER NOT NULL, input TEXT, result TEXT, error TEXT, group_id TEXT,
     group_index INTEGER, submitted_at BIGINT, started_at BIGINT, finished_at BIGINT, progress_report TEXT,
     owner TEXT, eta BIGINT, callback_url TEXT);
   CREATE INDEX tasks_by_status ON tasks (status, task_id);
   CREATE INDEX tasks_by_group ON tasks (group_id, group_index) WHERE group_id IS NOT NULL;
   CREATE INDEX tasks_by_kind ON tasks (kind, task_id);
   CREATE INDEX tasks_by_status_kind ON tasks (status, kind, task_id);
   CREATE INDEX tasks_by_owner ON tasks (owner, task_id) WHERE owner IS NOT NULL;
   CREATE INDEX tasks_by_owner_status ON tasks (owner, status, task_id) WHERE owner IS NOT NULL;
   CREATE INDEX tasks_scheduled_by_eta ON tasks (eta) WHERE status = 'SCHEDULED';
   CREATE TABLE inbox (event_id TEXT COLLATE "C" PRIMARY KEY, run INTEGER, at BIGINT, detail TEXT);
   CREATE TABLE groups (group_id TEXT PRIMARY KEY, size INTEGER NOT NULL, submitted_at BIGINT NOT NULL,
     owner TEXT);
   CREATE TABLE idempotency_keys (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, group_id TEXT,
     task_ids TEXT NOT NULL, lease_until BIGINT NOT NULL, expires_at BIGINT NOT NULL);
   CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
   CREATE TABLE status_counts (status TEXT PRIMARY KEY, tasks BIGINT NOT NULL);
   CREATE TABLE throughput (second BIGINT PRIMARY KEY, submitted BIGINT NOT NULL, succeeded BIGINT NOT NULL,
     failed BIGINT NOT NULL, retried BIGINT NOT NULL);
   CREATE TABLE latency_buckets (minute BIGINT NOT NULL, phase TEXT NOT NULL, bucket INTEGER NOT NULL,
     tasks BIGINT NOT NULL, PRIMARY KEY (minute, phase, bucket));
   CREATE TABLE workers (worker TEXT COLLATE "C" PRIMARY KEY, heartbeat TEXT NOT NULL, seen_at BIGINT NOT NULL);
   CREATE TABLE owner_in_flight (owner TEXT PRIMARY KEY, tasks BIGINT NOT NULL);
   CREATE TABLE schedules (id TEXT COLLATE "C" PRIMARY KEY, owner TEXT, definition TEXT NOT NULL,
     paused INTEGER NOT NULL, from_file INTEGER NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
     next_run_at BIGINT, last_run_at BIGINT, last_task_id TEXT);
   CREATE INDEX schedules_due ON schedules (next_run_at) WHERE paused = 0;
   CREATE TABLE schedule_runs (schedule_id TEXT NOT NULL, occurrence BIGINT NOT NULL, task_id TEXT NOT NULL,
     claimed_by TEXT NOT NULL, claimed_at BIGINT NOT NULL, published_at BIGINT,
     PRIMARY KEY (schedule_id, occurrence));
   CREATE INDEX schedule_runs_unpublished ON schedule_runs (claimed_at) WHERE published_at IS NULL;
   CREATE TABLE webhook_deliveries (delivery_id TEXT COLLATE "C" PRIMARY KEY, task_id TEXT NOT NULL, url TEXT NOT NULL,
     record TEXT NOT NULL, created_at BIGINT NOT NULL, queued_at BIGINT);
   CREATE INDEX webhook_deliveries_unqueued ON webhook_deliveries (created_at) WHERE queued_at IS NULL;
   CREATE TABLE webhook_attempts (delivery_id TEXT NOT NULL, attempt INTEGER NOT NULL, task_id TEXT NOT NULL,
     at BIGINT NOT NULL, outcome TEXT NOT NULL, status_code INTEGER, error TEXT, next_attempt_at BIGINT,
     PRIMARY KEY (delivery_id, attempt));
   CREATE INDEX webhook_attempts_by_task ON webhook_attempts (task_id);
   CREATE TABLE held_events (event_id TEXT COLLATE "C" PRIMARY KEY, task_id TEXT NOT NULL,
     held_at BIGINT NOT NULL, waiting_for TEXT NOT NULL, event TEXT NOT NULL);
   CREATE INDEX held_events_by_task ON held_events (task_id);
   CREATE INDEX held_events_by_age ON held_events (held_at);`,
  // 2: result expiry (RESULT_EXPIRES): the final tasks by when they ended, so that each batch reads the oldest.
  `CREATE INDEX tasks_final_by_end ON tasks (finished_at) WHERE status IN ${FINAL_SQL};`,
  // 3: work queues an operator paused (or resumed): workers ask for them when they start.
  `CREATE TABLE queue_pauses (queue TEXT PRIMARY KEY, paused BOOLEAN NOT NULL, changed_at BIGINT NOT NULL);`,
  // 4: the expiry horizon, one row: the latest mint time among the tasks whose results expired (null: none yet).
  `CREATE TABLE expiry_horizon (minted_until BIGINT);
   INSERT INTO expiry_horizon VALUES (NULL);`,
  // 5: each expiry batch's latest mint time, until it is old enough to move the horizon (store.ts's
  // `expireResults`): a submission far behind in the events queue is not taken for an expired task's copy.
  `CREATE TABLE expiry_marks (expired_at BIGINT NOT NULL, minted_until BIGINT NOT NULL);`,
  // 6: the ids of the tasks those marks cover, until they settle (task-state.ts's `Expiries`): the horizon does
  // not refuse their late events until then, and a copy of a PENDING would make a row that never ends.
  `CREATE TABLE expired_tasks (task_id TEXT COLLATE "C" PRIMARY KEY, expired_at BIGINT NOT NULL);
   CREATE INDEX expired_tasks_by_time ON expired_tasks (expired_at);`,
]

/** The schema version this code brings a database to. */
export const POSTGRES_SCHEMA_VERSION = MIGRATIONS.length

/** Any constant both sides agree on: the replicas' lock on migrating (pg_advisory_xact_lock's key space). */
const MIGRATION_LOCK = 0x5354_4f52

/**
 * Bring the database up to date, in one transaction under an advisory lock: replicas that start at once migrate
 * one after another, and each after the first finds nothing left to do. A database newer than this code is
 * refused rather than written to with assumptions that no longer hold.
 */
export async function migrate(sql: Sql): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`
    await tx`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`
    const [{ version } = { version: 0 }] = await tx<{ version: number }[]>`
      SELECT coalesce(max(version), 0) AS version FROM schema_migrations`
    if (version > MIGRATIONS.length) throw newerSchemaError(version, MIGRATIONS.length)
    for (const [index, migration] of MIGRATIONS.entries()) {
      if (index < version) continue
      await tx.unsafe(migration)
      await tx`INSERT INTO schema_migrations VALUES (${index + 1}, ${Date.now()})`
    }
  })
}

/** SQLSTATEs of a transaction PostgreSQL gave up on to let another go on: run again, it will go through. */
const RETRYABLE = new Set(["40001", "40P01"])
const TRANSACTION_ATTEMPTS = 5

export async function inTransaction<T>(sql: Sql, work: (tx: Tx) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await sql.begin(work)) as T
    } catch (err) {
      const code = (err as { code?: string }).code
      if (attempt >= TRANSACTION_ATTEMPTS || !RETRYABLE.has(code ?? "")) throw err
    }
  }
}

/**
 * Rows as one JSON parameter, for json_populate_recordset: one statement text whatever their number. Sent as
 * text (`${asJson(rows)}::text::json`): a parameter the server types as json the driver would encode once more.
 */
export const asJson = (rows: object[]) => JSON.stringify(rows)

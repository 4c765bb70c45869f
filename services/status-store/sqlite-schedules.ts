// The schedules on SQLite (the tables of sqlite.ts's migration 8). One process owns the file, so an insert-if-absent
// and a compare-and-set are atomic as they are on PostgreSQL, where several replicas race for them.
import type { SqliteDatabase } from "../../shared/runtime.ts"
import {
  fromScheduleRow,
  type ScheduleRow,
  type ScheduleStore,
  type UnpublishedRun,
  toScheduleRow as values,
} from "./schedules.ts"

export function sqliteSchedules(db: SqliteDatabase): ScheduleStore {
  const selectOne = db.query<ScheduleRow, [string]>("SELECT * FROM schedules WHERE id = ?")
  const selectAll = db.query<ScheduleRow, []>("SELECT * FROM schedules ORDER BY id")
  const selectOwned = db.query<ScheduleRow, [string]>("SELECT * FROM schedules WHERE owner = ? ORDER BY id")
  const selectDue = db.query<ScheduleRow, [number]>(
    "SELECT * FROM schedules WHERE paused = 0 AND next_run_at <= ? ORDER BY next_run_at",
  )
  const insert = db.query<void, Record<string, string | number | null>>(
    `INSERT INTO schedules (id, owner, definition, paused, from_file, created_at, updated_at, next_run_at)
     VALUES ($id, $owner, $definition, $paused, $from_file, $created_at, $updated_at, $next_run_at)
     ON CONFLICT (id) DO NOTHING`,
  )
  const update = db.query<void, Record<string, string | number | null>>(
    `UPDATE schedules SET definition = $definition, paused = $paused, from_file = $from_file,
       updated_at = $updated_at, next_run_at = $next_run_at WHERE id = $id AND created_at = $created_at`,
  )
  const advance = db.query<void, [number | null, number | null, string | null, string, number]>(
    `UPDATE schedules SET next_run_at = ?1, last_run_at = coalesce(?2, last_run_at),
       last_task_id = coalesce(?3, last_task_id) WHERE id = ?4 AND next_run_at = ?5`,
  )
  const remove = db.query<void, [string]>("DELETE FROM schedules WHERE id = ?")
  const removeRuns = db.query<void, [string]>("DELETE FROM schedule_runs WHERE schedule_id = ?")
  const claim = db.query<void, [string, number, string, string, number]>(
    `INSERT INTO schedule_runs (schedule_id, occurrence, task_id, claimed_by, claimed_at) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (schedule_id, occurrence) DO NOTHING`,
  )
  const markPublished = db.query<void, [number, string, number]>(
    "UPDATE schedule_runs SET published_at = ? WHERE schedule_id = ? AND occurrence = ?",
  )
  const selectUnpublished = db.query<UnpublishedRun, [number]>(
    `SELECT schedule_id, occurrence, task_id, claimed_at FROM schedule_runs
     WHERE published_at IS NULL AND claimed_at < ? ORDER BY claimed_at LIMIT 100`,
  )
  const takeOver = db.query<void, [string, number, string, number, number]>(
    `UPDATE schedule_runs SET claimed_by = ?3, claimed_at = ?4
     WHERE schedule_id = ?1 AND occurrence = ?2 AND published_at IS NULL AND claimed_at = ?5`,
  )
  const pruneRuns = db.query<void, [number]>(
    "DELETE FROM schedule_runs WHERE published_at IS NOT NULL AND occurrence < ?",
  )
  const fromFile = db.query<{ id: string }, []>("SELECT id FROM schedules WHERE from_file = 1")
  const removeWithRuns = db.transaction((id: string): boolean => {
    removeRuns.run(id)
    return remove.run(id).changes === 1
  })

  return {
    find: async (id) => {
      const row = selectOne.get(id)
      return row ? fromScheduleRow(row) : null
    },
    all: async (owner) =>
      (owner === undefined ? selectAll.all() : selectOwned.all(owner)).map(fromScheduleRow),
    due: async (now) => selectDue.all(now).map(fromScheduleRow),
    create: async (schedule) => insert.run(values(schedule)).changes === 1,
    update: async (schedule) => {
      update.run(values(schedule))
    },
    advance: async (id, dueAt, nextRunAt, fired) =>
      advance.run(nextRunAt, fired?.occurrence ?? null, fired?.taskId ?? null, id, dueAt).changes === 1,
    delete: async (id) => removeWithRuns(id),
    claimRun: async (id, occurrence, taskId, replica, now) =>
      claim.run(id, occurrence, taskId, replica, now).changes === 1,
    markPublished: async (id, occurrence, now) => {
      markPublished.run(now, id, occurrence)
    },
    unpublished: async (claimedBefore) => selectUnpublished.all(claimedBefore),
    takeOver: async (run, replica, now) =>
      takeOver.run(run.schedule_id, run.occurrence, replica, now, run.claimed_at).changes === 1,
    pruneRuns: async (before) => {
      pruneRuns.run(before)
    },
    fromFile: async () => fromFile.all().map((row) => row.id),
  }
}

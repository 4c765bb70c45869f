// The schedules on PostgreSQL (postgres-schema.ts's tables). Several replicas fire them, so what sqlite-schedules.ts
// gets from owning its file is one statement here: an occurrence is claimed by the one INSERT … ON CONFLICT DO
// NOTHING that made its row, and a schedule moves on by a compare-and-set on its next run.
import { inTransaction, type Sql } from "./postgres-schema.ts"
import {
  fromScheduleRow,
  type ScheduleRow,
  type ScheduleStore,
  type UnpublishedRun,
  toScheduleRow as values,
} from "./schedules.ts"

export function postgresSchedules(sql: Sql): ScheduleStore {
  const rows = async (query: Promise<ScheduleRow[]>) => (await query).map(fromScheduleRow)
  return {
    async find(id) {
      const [row] = await sql<ScheduleRow[]>`SELECT * FROM schedules WHERE id = ${id}`
      return row ? fromScheduleRow(row) : null
    },
    all: (owner) =>
      rows(
        owner === undefined
          ? sql<ScheduleRow[]>`SELECT * FROM schedules ORDER BY id`
          : sql<ScheduleRow[]>`SELECT * FROM schedules WHERE owner = ${owner} ORDER BY id`,
      ),
    due: (now) =>
      rows(sql<ScheduleRow[]>`SELECT * FROM schedules WHERE paused = 0 AND next_run_at <= ${now}
        ORDER BY next_run_at`),
    async create(schedule) {
      const row = values(schedule)
      const created = await sql`INSERT INTO schedules (id, owner, definition, paused, from_file, created_at,
          updated_at, next_run_at)
        VALUES (${row.id}, ${row.owner}, ${row.definition}, ${row.paused}, ${row.from_file}, ${row.created_at},
          ${row.updated_at}, ${row.next_run_at})
        ON CONFLICT (id) DO NOTHING`
      return created.count === 1
    },
    async update(schedule) {
      const row = values(schedule)
      await sql`UPDATE schedules SET definition = ${row.definition}, paused = ${row.paused},
          from_file = ${row.from_file}, updated_at = ${row.updated_at}, next_run_at = ${row.next_run_at}
        WHERE id = ${row.id} AND created_at = ${row.created_at}`
    },
    async advance(id, dueAt, nextRunAt, fired) {
      const advanced = await sql`UPDATE schedules SET next_run_at = ${nextRunAt},
          last_run_at = coalesce(${fired?.occurrence ?? null}::bigint, last_run_at),
          last_task_id = coalesce(${fired?.taskId ?? null}::text, last_task_id)
        WHERE id = ${id} AND next_run_at = ${dueAt}`
      return advanced.count === 1
    },
    delete: (id) =>
      inTransaction(sql, async (tx) => {
        await tx`DELETE FROM schedule_runs WHERE schedule_id = ${id}`
        return (await tx`DELETE FROM schedules WHERE id = ${id}`).count === 1
      }),
    async claimRun(id, occurrence, taskId, replica, now) {
      const claimed =
        await sql`INSERT INTO schedule_runs (schedule_id, occurrence, task_id, claimed_by, claimed_at)
        VALUES (${id}, ${occurrence}, ${taskId}, ${replica}, ${now})
        ON CONFLICT (schedule_id, occurrence) DO NOTHING RETURNING occurrence`
      return claimed.length === 1
    },
    async markPublished(id, occurrence, now) {
      await sql`UPDATE schedule_runs SET published_at = ${now}
        WHERE schedule_id = ${id} AND occurrence = ${occurrence}`
    },
    async unpublished(claimedBefore) {
      return [
        ...(await sql<UnpublishedRun[]>`SELECT schedule_id, occurrence, task_id, claimed_at FROM schedule_runs
          WHERE published_at IS NULL AND claimed_at < ${claimedBefore} ORDER BY claimed_at LIMIT 100`),
      ]
    },
    async takeOver(run, replica, now) {
      const taken = await sql`UPDATE schedule_runs SET claimed_by = ${replica}, claimed_at = ${now}
        WHERE schedule_id = ${run.schedule_id} AND occurrence = ${run.occurrence} AND published_at IS NULL
          AND claimed_at = ${run.claimed_at}`
      return taken.count === 1
    },
    async pruneRuns(before) {
      await sql`DELETE FROM schedule_runs WHERE published_at IS NOT NULL AND occurrence < ${before}`
    },
    async fromFile() {
      return (await sql<{ id: string }[]>`SELECT id FROM schedules WHERE from_file = 1`).map((row) => row.id)
    },
  }
}

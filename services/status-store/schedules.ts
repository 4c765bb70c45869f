// The schedules as the status store keeps them, whatever the backend: a schedule's definition and state, the
// occurrences its replicas claimed, and the interface every backend implements (sqlite-schedules.ts, …).
import type { ScheduleDefinition, ScheduleRecord } from "../../shared/contracts.ts"

export interface Schedule {
  id: string
  /** The API key's name that created it, which its tasks belong to; null when the API was open, or from the file. */
  owner: string | null
  definition: ScheduleDefinition
  paused: boolean
  /** Defined in SCHEDULES_FILE when it was last loaded. */
  fromFile: boolean
  createdAt: number
  updatedAt: number
  nextRunAt: number | null
  lastRunAt: number | null
  lastTaskId: string | null
}

/** An occurrence a replica claimed and has not published (yet). */
export interface UnpublishedRun {
  schedule_id: string
  occurrence: number
  task_id: string
  claimed_at: number
}

export interface ScheduleStore {
  find(id: string): Promise<Schedule | null>
  /** Every schedule, by id; only this owner's when one is given. */
  all(owner?: string): Promise<Schedule[]>
  /** Unpaused schedules whose next occurrence has come. */
  due(now: number): Promise<Schedule[]>
  /** False when the id is taken. */
  create(schedule: Schedule): Promise<boolean>
  /** Replace the definition, the pause, the file flag and the next run; the last run stays. */
  update(schedule: Schedule): Promise<void>
  /**
   * Move the schedule on from `dueAt` to `nextRunAt`, recording the occurrence fired, unless another replica (or
   * an update) moved it first: false then.
   */
  advance(
    id: string,
    dueAt: number,
    nextRunAt: number | null,
    fired: { occurrence: number; taskId: string } | null,
  ): Promise<boolean>
  /** The schedule and the occurrences it claimed; false when there was none. */
  delete(id: string): Promise<boolean>
  /**
   * Insert-if-absent on (schedule, occurrence): true for the one replica whose insert made the row. This is what
   * makes an occurrence fire once, on any number of replicas.
   */
  claimRun(id: string, occurrence: number, taskId: string, replica: string, now: number): Promise<boolean>
  markPublished(id: string, occurrence: number, now: number): Promise<void>
  /** Claimed before `claimedBefore` and never published: the replica that claimed them is gone or stuck. */
  unpublished(claimedBefore: number): Promise<UnpublishedRun[]>
  /** Claim a run another replica claimed and did not publish; false when someone else took it over first. */
  takeOver(run: UnpublishedRun, replica: string, now: number): Promise<boolean>
  /** Forget published occurrences from before `before`: no replica can still be about to fire them. */
  pruneRuns(before: number): Promise<void>
  /** Ids of the schedules SCHEDULES_FILE defined when it was last loaded. */
  fromFile(): Promise<string[]>
}

/** A schedule as a backend stores it: the definition as JSON, flags as numbers. */
export interface ScheduleRow {
  id: string
  owner: string | null
  definition: string
  paused: number | boolean
  from_file: number | boolean
  created_at: number | string
  updated_at: number | string
  next_run_at: number | string | null
  last_run_at: number | string | null
  last_task_id: string | null
}

/** The columns a backend writes of a schedule (its last run is written by `advance` alone). */
export const toScheduleRow = (schedule: Schedule) => ({
  id: schedule.id,
  owner: schedule.owner,
  definition: JSON.stringify(schedule.definition),
  paused: schedule.paused ? 1 : 0,
  from_file: schedule.fromFile ? 1 : 0,
  created_at: schedule.createdAt,
  updated_at: schedule.updatedAt,
  next_run_at: schedule.nextRunAt,
})

const millis = (value: number | string | null) => (value === null ? null : Number(value))

export function fromScheduleRow(row: ScheduleRow): Schedule {
  return {
    id: row.id,
    owner: row.owner,
    definition: JSON.parse(row.definition) as ScheduleDefinition,
    paused: Boolean(row.paused),
    fromFile: Boolean(row.from_file),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    nextRunAt: millis(row.next_run_at),
    lastRunAt: millis(row.last_run_at),
    lastTaskId: row.last_task_id,
  }
}

const iso = (at: number | null) => (at === null ? null : new Date(at).toISOString())

export function toScheduleRecord(schedule: Schedule): ScheduleRecord {
  return {
    id: schedule.id,
    ...schedule.definition,
    paused: schedule.paused,
    from_file: schedule.fromFile,
    created_at: new Date(schedule.createdAt).toISOString(),
    updated_at: new Date(schedule.updatedAt).toISOString(),
    last_run_at: iso(schedule.lastRunAt),
    last_task_id: schedule.lastTaskId,
    next_run_at: schedule.paused ? null : iso(schedule.nextRunAt),
  }
}

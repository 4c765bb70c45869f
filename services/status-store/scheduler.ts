// The status store's firing loop for periodic schedules. Every replica of the store runs it; there is no beat
// process to keep single. Each tick, a replica takes the schedules that are due, claims the occurrence to fire
// (an insert-if-absent on (schedule, occurrence) in the shared database, so one replica wins), moves the schedule
// on, and the winner publishes the occurrence's task and its PENDING event, confirmed, under a task id derived
// from the occurrence. A claim left unpublished (its replica died) is taken over after CLAIM_LEASE_MS.
import { readFileSync } from "node:fs"
import * as v from "valibot"
import {
  explainIssues,
  ScheduleId,
  ScheduleInput,
  type StatusQuery,
  type StatusReply,
  type Task,
} from "../../shared/contracts.ts"
import type { Logger } from "../../shared/log.ts"
import {
  definitionOf,
  nextOccurrence,
  occurrenceTaskId,
  patchDefinition,
  planRun,
  scheduleProblem,
} from "../../shared/schedules.ts"
import { buildTask } from "../../shared/tasks.ts"
import { type Schedule, type ScheduleStore, toScheduleRecord, type UnpublishedRun } from "./schedules.ts"

/** How long a claimed occurrence may stay unpublished before another replica publishes it. */
export const CLAIM_LEASE_MS = 30_000
/** Published occurrences are remembered this long, far beyond any replica's view of a schedule being stale. */
const RUNS_KEPT_MS = 24 * 3600_000
const RECOVERY_EVERY_MS = 5000

export interface SchedulerOptions {
  tables: ScheduleStore
  /** Publish the task and its PENDING event, which names its owner; resolves once both are confirmed. */
  publish: (task: Task, owner: string | null) => Promise<void>
  /** Whether the store knows the task (its PENDING arrived), after reading every event already queued. */
  isKnown: (taskId: string) => Promise<boolean>
  tickMs: number
  graceMs: number
  /** This replica, as the claims record it. */
  replica: string
  log: Logger
}

type ScheduleQuery = Extract<StatusQuery, { op: `schedule_${string}` }>

export function startScheduler(options: SchedulerOptions) {
  const { tables, log } = options
  let ticking: Promise<void> | undefined
  let recoveredAt = 0

  async function tick(): Promise<void> {
    const now = Date.now()
    for (const schedule of await tables.due(now)) await fire(schedule, now)
    if (now - recoveredAt >= RECOVERY_EVERY_MS) {
      recoveredAt = now
      await recover(now)
      await tables.pruneRuns(now - RUNS_KEPT_MS)
    }
  }

  /**
   * Claim first, then move the schedule on: a replica that dies between the two leaves a claim to recover. The
   * claim decides who publishes, not the move: of two replicas at the same tick, one may win the claim and the
   * other the move, and the occurrence must still go out at once rather than after the claim's lease.
   */
  async function fire(schedule: Schedule, now: number): Promise<void> {
    const dueAt = schedule.nextRunAt ?? now
    const plan = planRun(schedule.definition, dueAt, now, options.graceMs)
    let fired: { occurrence: number; taskId: string } | null = null
    let won = false
    if (plan.fire !== null) {
      fired = { occurrence: plan.fire, taskId: occurrenceTaskId(schedule.id, schedule.createdAt, plan.fire) }
      won = await tables.claimRun(schedule.id, fired.occurrence, fired.taskId, options.replica, now)
    }
    const advanced = await tables.advance(schedule.id, dueAt, plan.next, fired)
    if (advanced && plan.missed > 0) {
      log.warn("schedule missed occurrences", {
        schedule: schedule.id,
        missed: plan.missed,
        policy: schedule.definition.missed,
        fired: fired !== null,
      })
    }
    if (fired && won) await publishRun(schedule, fired.occurrence, fired.taskId)
  }

  async function publishRun(schedule: Schedule, occurrence: number, taskId: string): Promise<void> {
    const { task: fields } = schedule.definition
    const covers =
      fields.kind === "report:polarity" && schedule.owner !== null ? { owner: schedule.owner } : {}
    const task = buildTask({ ...fields, ...covers }, { taskId, now: Date.now() })
    try {
      await options.publish(task, schedule.owner)
      await tables.markPublished(schedule.id, occurrence, Date.now())
    } catch (err) {
      // The claim stays unpublished: this replica, or another, publishes it once its lease is over.
      log.warn("scheduled task not published; it will be again after the claim's lease", {
        schedule: schedule.id,
        taskId,
        err: (err as Error).message,
      })
    }
  }

  async function recover(now: number): Promise<void> {
    for (const run of await tables.unpublished(now - CLAIM_LEASE_MS)) await recoverRun(run, now)
  }

  /** The claimer may have published before it died: a task the store knows is only marked published. */
  async function recoverRun(run: UnpublishedRun, now: number): Promise<void> {
    if (!(await tables.takeOver(run, options.replica, now))) return
    const schedule = await tables.find(run.schedule_id)
    if (!schedule) return
    log.warn("claimed occurrence taken over", { schedule: run.schedule_id, taskId: run.task_id })
    if (await options.isKnown(run.task_id)) await tables.markPublished(run.schedule_id, run.occurrence, now)
    else await publishRun(schedule, run.occurrence, run.task_id)
  }

  const timer = setInterval(() => {
    ticking ??= tick()
      .catch((err) => log.error("schedule tick failed", { err }))
      .finally(() => {
        ticking = undefined
      })
  }, options.tickMs)

  return {
    answer: (query: ScheduleQuery) => answer(tables, query),
    async stop(): Promise<void> {
      clearInterval(timer)
      await ticking
    },
  }
}

const reply = (schedule: Schedule | null): StatusReply => ({
  schedule: schedule ? toScheduleRecord(schedule) : null,
})

/** The schedule, if it exists and the query's owner (if any) may see it: anything else reads as absent. */
async function visible(tables: ScheduleStore, id: string, owner: string | undefined) {
  const schedule = await tables.find(id)
  return schedule && (owner === undefined || schedule.owner === owner) ? schedule : null
}

async function answer(tables: ScheduleStore, query: ScheduleQuery): Promise<StatusReply> {
  const now = Date.now()
  switch (query.op) {
    case "schedule_list":
      return { schedules: (await tables.all(query.owner)).map(toScheduleRecord) }
    case "schedule_get":
      return reply(await visible(tables, query.id, query.owner))
    case "schedule_delete": {
      const schedule = await visible(tables, query.id, query.owner)
      return reply(schedule && (await tables.delete(query.id)) ? schedule : null)
    }
    case "schedule_create": {
      const invalid = scheduleProblem(query.definition)
      if (invalid) return { schedule: null, invalid }
      const schedule = newSchedule(query.id, query.owner, query.definition, query.paused, false, now)
      if (!(await tables.create(schedule))) return { schedule: null, conflict: true }
      return reply(schedule)
    }
    case "schedule_update": {
      const schedule = await visible(tables, query.id, query.owner)
      if (!schedule) return reply(null)
      const definition = patchDefinition(schedule.definition, query.patch)
      const invalid = scheduleProblem(definition)
      if (invalid) return { schedule: null, invalid }
      const updated = changed(schedule, definition, query.patch.paused ?? schedule.paused, now)
      await tables.update(updated)
      return reply(updated)
    }
  }
}

function newSchedule(
  id: string,
  owner: string | null,
  definition: Schedule["definition"],
  paused: boolean,
  fromFile: boolean,
  now: number,
): Schedule {
  return {
    id,
    owner,
    definition,
    paused,
    fromFile,
    createdAt: now,
    updatedAt: now,
    nextRunAt: nextOccurrence(definition, now),
    lastRunAt: null,
    lastTaskId: null,
  }
}

/**
 * The schedule with a new definition or pause. Its next run is worked out again from now when its timing changed
 * or it resumes: the occurrences it had while paused are not missed, they were not wanted.
 */
function changed(
  schedule: Schedule,
  definition: Schedule["definition"],
  paused: boolean,
  now: number,
): Schedule {
  const { cron, timezone, every } = schedule.definition
  const retimed = definition.cron !== cron || definition.timezone !== timezone || definition.every !== every
  const resumed = schedule.paused && !paused
  return {
    ...schedule,
    definition,
    paused,
    updatedAt: now,
    nextRunAt: retimed || resumed ? nextOccurrence(definition, now) : schedule.nextRunAt,
  }
}

/** SCHEDULES_FILE: a JSON array of schedules as POST /schedules takes them, each with its `id`. */
const ScheduleFile = v.array(
  v.object({ ...ScheduleInput.entries, id: ScheduleId }),
  "the file must hold a JSON array of schedules",
)

/**
 * Make the schedules match the file: those it defines are created or changed to its definition (a schedule
 * already as the file says keeps its state), and those it defined before and no longer does are deleted.
 * Throws, naming the schedule, when the file is not a valid list of schedules.
 */
export async function loadScheduleFile(tables: ScheduleStore, path: string, log: Logger): Promise<void> {
  let json: unknown
  try {
    json = JSON.parse(readFileSync(path, "utf8"))
  } catch (err) {
    throw new Error(`SCHEDULES_FILE ${path}: ${(err as Error).message}`)
  }
  const parsed = v.safeParse(ScheduleFile, json)
  if (!parsed.success) throw new Error(`SCHEDULES_FILE ${path}: ${explainIssues(parsed.issues)}`)
  const now = Date.now()
  for (const [index, input] of parsed.output.entries()) {
    const definition = definitionOf(input)
    const invalid = scheduleProblem(definition)
    if (invalid) throw new Error(`SCHEDULES_FILE ${path}: schedule ${index} ("${input.id}"): ${invalid}`)
    const paused = input.paused ?? false
    const existing = await tables.find(input.id)
    if (!existing) {
      await tables.create(newSchedule(input.id, null, definition, paused, true, now))
    } else if (
      !existing.fromFile ||
      existing.paused !== paused ||
      JSON.stringify(existing.definition) !== JSON.stringify(definition)
    ) {
      await tables.update({ ...changed(existing, definition, paused, now), fromFile: true })
    }
  }
  const kept = new Set(parsed.output.map((input) => input.id))
  for (const id of await tables.fromFile()) if (!kept.has(id)) await tables.delete(id)
  log.info("schedules loaded", { file: path, schedules: kept.size })
}

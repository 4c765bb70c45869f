// /schedules: periodic schedules, kept and fired by the status store (status-store/scheduler.ts). The gateway
// checks what it is given (a cron expression and its time zone with croner, the task as its endpoint would) and
// asks the store over RPC; the store checks a patched schedule again, since only it holds the whole of it. A
// schedule belongs to the API key that created it, like a task, and so do the tasks it submits.
import type { Context } from "hono"
import { v7 as uuidv7 } from "uuid"
import * as v from "valibot"
import { type ScheduledTask, ScheduleId, ScheduleInput, SchedulePatch } from "../../shared/contracts.ts"
import { Problem } from "../../shared/http.ts"
import { definitionOf, scheduleProblem } from "../../shared/schedules.ts"
import { callerOf, ownerFilter } from "./access.ts"
import type { Route } from "./openapi.ts"
import { checkPriority, readJson } from "./requests.ts"
import type { StatusStoreClient } from "./status-store-client.ts"

const ScheduleIdParam = v.pipe(ScheduleId, v.description("The schedule's id."))
const SCHEDULE_ANSWER = { 200: { description: "The schedule", schema: "ScheduleRecord" } } as const

function scheduleId(c: Context): string {
  const id = c.req.param("id") ?? ""
  if (!v.is(ScheduleId, id))
    throw new Problem(404, `no schedule "${id}": ids are letters, digits, '.', '_', '-'`)
  return id
}

const notFound = (id: string) => new Problem(404, `no schedule with id ${id}`)

/** A schedule's task with a priority, where the work queues have none (QUEUE_TYPE=quorum), is a 422. */
const checkTaskPriority = (task: ScheduledTask | undefined, queueType: "classic" | "quorum") =>
  checkPriority(task && "priority" in task ? task.priority : undefined, queueType)

export function scheduleRoutes(
  route: Route<"ScheduleRecord" | "ScheduleList", "ScheduleInput" | "SchedulePatch">,
  store: StatusStoreClient,
  queueType: "classic" | "quorum",
): void {
  route(
    "post",
    "/schedules",
    {
      summary: "Create a periodic schedule: a cron expression in a time zone, or an interval, and its task",
      description:
        "Each occurrence submits the task once, however many replicas of each service run (the status store claims it). `missed` says what happens to occurrences that passed while no store ran: `skip` (the default) drops them, `run_once` runs the task once for all of them. An occurrence up to SCHEDULE_MISFIRE_GRACE_SECONDS late is not missed. A bad cron expression or time zone is a 422 naming it; an id that is taken is a 409.",
      tag: "schedules",
      body: "ScheduleInput",
      responses: {
        201: {
          description: "Created",
          schema: "ScheduleRecord",
          headers: { location: "The schedule's URL: `/schedules/{id}`" },
        },
      },
      problems: [400, 409, 413, 415, 422, 503],
    },
    async (c) => {
      const input = await readJson(c, ScheduleInput)
      checkTaskPriority(input.task, queueType)
      const definition = definitionOf(input)
      const invalid = scheduleProblem(definition)
      if (invalid) throw new Problem(422, invalid)
      const id = input.id ?? uuidv7()
      const created = await store.createSchedule(id, definition, input.paused ?? false, callerOf(c).owner)
      if (created.conflict) throw new Problem(409, `a schedule with id ${id} exists already`)
      if (created.invalid) throw new Problem(422, created.invalid)
      return c.json(created.schedule, 201, { location: `/schedules/${id}` })
    },
  )
  route(
    "get",
    "/schedules",
    {
      summary: "Every schedule, with its last and next run",
      tag: "schedules",
      responses: { 200: { description: "The schedules, by id", schema: "ScheduleList" } },
      problems: [503],
    },
    async (c) => c.json({ schedules: await store.schedules(ownerFilter(callerOf(c))) }),
  )
  route(
    "get",
    "/schedules/:id",
    {
      summary: "A schedule, with its last and next run",
      tag: "schedules",
      path: { id: ScheduleIdParam },
      responses: SCHEDULE_ANSWER,
      problems: [404, 503],
    },
    async (c) => {
      const id = scheduleId(c)
      const schedule = await store.schedule(id, ownerFilter(callerOf(c)))
      if (!schedule) throw notFound(id)
      return c.json(schedule)
    },
  )
  const update = async (c: Context, patch: SchedulePatch) => {
    checkTaskPriority(patch.task, queueType)
    const id = scheduleId(c)
    const updated = await store.updateSchedule(id, patch, ownerFilter(callerOf(c)))
    if (updated.invalid) throw new Problem(422, updated.invalid)
    if (!updated.schedule) throw notFound(id)
    return c.json(updated.schedule)
  }
  route(
    "patch",
    "/schedules/:id",
    {
      summary: "Change a schedule: its timing, task, missed-run policy or pause",
      description:
        "Only the fields given change; `cron` and `every` replace each other. A new timing, or a resume, counts the next run from now.",
      tag: "schedules",
      path: { id: ScheduleIdParam },
      body: "SchedulePatch",
      responses: SCHEDULE_ANSWER,
      problems: [400, 404, 413, 415, 422, 503],
    },
    async (c) => update(c, await readJson(c, SchedulePatch)),
  )
  for (const [action, paused] of [
    ["pause", true],
    ["resume", false],
  ] as const) {
    route(
      "post",
      `/schedules/:id/${action}`,
      {
        summary: paused
          ? "Pause a schedule: nothing fires until it is resumed"
          : "Resume a schedule: the next run counts from now; the occurrences passed while paused do not fire",
        tag: "schedules",
        path: { id: ScheduleIdParam },
        responses: SCHEDULE_ANSWER,
        problems: [404, 503],
      },
      (c) => update(c, { paused }),
    )
  }
  route(
    "delete",
    "/schedules/:id",
    {
      summary: "Delete a schedule; the tasks it submitted stay",
      tag: "schedules",
      path: { id: ScheduleIdParam },
      responses: { 204: { description: "Deleted" } },
      problems: [404, 503],
    },
    async (c) => {
      const id = scheduleId(c)
      if (!(await store.deleteSchedule(id, ownerFilter(callerOf(c))))) throw notFound(id)
      return c.body(null, 204)
    },
  )
}

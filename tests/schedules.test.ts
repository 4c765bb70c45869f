import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { loadGatewayConfig, start as startGateway } from "../services/gateway.ts"
import { loadWorkerConfig, start as startWorker } from "../services/polarity-worker.ts"
import { loadStoreConfig, start as startStore } from "../services/status-store.ts"
import type { ScheduleDefinition, ScheduleRecord, TaskEvent } from "../shared/contracts.ts"
import { latestOccurrence, nextOccurrence, occurrenceTaskId, planRun } from "../shared/schedules.ts"
import { topologyNames } from "../shared/topology.ts"
import { createTestDatabase } from "./postgres.ts"
import {
  deleteTopology,
  expectProblem,
  isoTime,
  type Stack,
  startStack,
  testEnv,
  watchEvents,
} from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("schedules", { SCHEDULER_TICK_MS: "50" })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const send = (method: string, path: string, body?: unknown) =>
  fetch(stack.url(path), {
    method,
    ...(body !== undefined && {
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    }),
  })
interface ScheduleListBody {
  schedules: ScheduleRecord[]
}
const review = (text: string) => ({ kind: "polarity:review", review: text })

describe("occurrences, missed runs and task ids", () => {
  const hourly: ScheduleDefinition = {
    cron: "0 * * * *",
    timezone: "Asia/Kolkata",
    every: null,
    missed: "skip",
    task: { kind: "polarity:review", review: "x" },
  }
  const at = (iso: string) => Date.parse(iso)

  test("a cron expression is read in its time zone: on the hour in India is at :30 UTC", () => {
    expect(nextOccurrence(hourly, at("2026-01-01T10:00:00Z"))).toBe(at("2026-01-01T10:30:00Z"))
    expect(latestOccurrence(hourly, at("2026-01-01T10:29:59Z"))).toBe(at("2026-01-01T09:30:00Z"))
    expect(latestOccurrence(hourly, at("2026-01-01T10:30:00Z"))).toBe(at("2026-01-01T10:30:00Z"))
  })

  test("every n seconds falls on the multiples of n since the epoch", () => {
    const every: ScheduleDefinition = { ...hourly, cron: null, timezone: null, every: 3600 }
    expect(nextOccurrence(every, at("2026-01-01T10:00:00Z"))).toBe(at("2026-01-01T11:00:00Z"))
    expect(latestOccurrence(every, at("2026-01-01T10:59:59Z"))).toBe(at("2026-01-01T10:00:00Z"))
  })

  test("an occurrence within the grace fires; under skip a later one is missed, under run_once it fires once", () => {
    const due = at("2026-01-01T10:30:00Z")
    const grace = 60_000
    expect(planRun(hourly, due, due + 5000, grace)).toEqual({
      fire: due,
      missed: 0,
      next: at("2026-01-01T11:30:00Z"),
    })
    // Down from 10:29 to 13:10: 10:30, 11:30 and 12:30 passed.
    const back = at("2026-01-01T13:10:00Z")
    expect(planRun(hourly, due, back, grace)).toEqual({
      fire: null,
      missed: 3,
      next: at("2026-01-01T13:30:00Z"),
    })
    expect(planRun({ ...hourly, missed: "run_once" }, due, back, grace)).toEqual({
      fire: at("2026-01-01T12:30:00Z"),
      missed: 2,
      next: at("2026-01-01T13:30:00Z"),
    })
  })

  test("an occurrence's task id is the same on every replica, a UUIDv7 of its time, and new for a new schedule", () => {
    const occurrence = at("2026-01-01T10:30:00Z")
    const id = occurrenceTaskId("hourly", 1, occurrence)
    expect(id).toBe(occurrenceTaskId("hourly", 1, occurrence))
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(Number.parseInt(id.replaceAll("-", "").slice(0, 12), 16)).toBe(occurrence)
    expect(occurrenceTaskId("hourly", 2, occurrence)).not.toBe(id)
    expect(occurrenceTaskId("hourly", 1, occurrence + 3_600_000)).not.toBe(id)
  })
})

describe("/schedules", () => {
  test("create, read, list, change, pause, resume and delete a schedule", async () => {
    const created = await send("POST", "/schedules", {
      id: "hourly-report",
      cron: "0 * * * *",
      timezone: "Europe/Berlin",
      task: review("Nightly check"),
    })
    expect(created.status).toBe(201)
    expect(created.headers.get("location")).toBe("/schedules/hourly-report")
    const schedule = (await created.json()) as ScheduleRecord
    expect(schedule).toEqual({
      id: "hourly-report",
      cron: "0 * * * *",
      timezone: "Europe/Berlin",
      every: null,
      missed: "skip",
      task: { kind: "polarity:review", review: "Nightly check" },
      paused: false,
      from_file: false,
      created_at: isoTime,
      updated_at: isoTime,
      last_run_at: null,
      last_task_id: null,
      next_run_at: isoTime,
    })
    expect(new Date(schedule.next_run_at ?? "").getUTCMinutes()).toBe(0)
    expect(await send("GET", "/schedules/hourly-report").then((r) => r.json())).toEqual(schedule)
    const list = (await send("GET", "/schedules").then((r) => r.json())) as ScheduleListBody
    expect(list.schedules.map((s) => s.id)).toContain("hourly-report")

    const patched = (await send("PATCH", "/schedules/hourly-report", { every: 600, missed: "run_once" }).then(
      (r) => r.json(),
    )) as ScheduleRecord
    expect([patched.cron, patched.timezone, patched.every, patched.missed]).toEqual([
      null,
      null,
      600,
      "run_once",
    ])
    expect(Date.parse(patched.next_run_at ?? "") % 600_000).toBe(0)

    const paused = (await send("POST", "/schedules/hourly-report/pause").then((r) =>
      r.json(),
    )) as ScheduleRecord
    expect([paused.paused, paused.next_run_at]).toEqual([true, null])
    const resumed = (await send("POST", "/schedules/hourly-report/resume").then((r) =>
      r.json(),
    )) as ScheduleRecord
    expect(resumed.paused).toBe(false)
    expect(resumed.next_run_at).toEqual(isoTime)

    expect((await send("DELETE", "/schedules/hourly-report")).status).toBe(204)
    await expectProblem(
      await send("GET", "/schedules/hourly-report"),
      404,
      "no schedule with id hourly-report",
    )
    await expectProblem(
      await send("DELETE", "/schedules/hourly-report"),
      404,
      "no schedule with id hourly-report",
    )
  })

  test("a schedule every second submits its task at each occurrence, under the occurrence's task id", async () => {
    await using watch = await watchEvents(stack)
    const res = await send("POST", "/schedules", { every: 1, task: review("Every second, lovely") })
    const schedule = (await res.json()) as ScheduleRecord
    const ours = (events: TaskEvent[]) =>
      events.filter((e) => e.state === "SUCCESS" && e.task_id !== undefined && pendingOf(events, e.task_id))
    const pendingOf = (events: TaskEvent[], taskId: string) =>
      events.find(
        (e) => e.state === "PENDING" && e.task_id === taskId && e.input.review === "Every second, lovely",
      )
    const events = await watch.until((all) => ours(all).length >= 2)
    await send("DELETE", `/schedules/${schedule.id}`)
    const createdAt = Date.parse(schedule.created_at)
    for (const done of ours(events)) {
      const pending = pendingOf(events, done.task_id)
      const occurrence = occurrenceOf(done.task_id)
      expect(occurrence % 1000).toBe(0)
      expect(done.task_id).toBe(occurrenceTaskId(schedule.id, createdAt, occurrence))
      expect(pending?.state === "PENDING" && pending.kind).toBe("polarity:review")
    }
    const task = await fetch(stack.url(`/polarities/tasks/${ours(events)[0]?.task_id}`)).then((r) => r.json())
    expect(task).toMatchObject({ status: "SUCCESS", kind: "polarity:review" })
  })

  test("a paused schedule fires nothing", async () => {
    const res = await send("POST", "/schedules", { every: 1, paused: true, task: review("Paused") })
    const schedule = (await res.json()) as ScheduleRecord
    expect([schedule.paused, schedule.next_run_at]).toEqual([true, null])
    await using watch = await watchEvents(stack)
    // A second schedule that fires shows the loop has run past the paused one's occurrences.
    const other = (await send("POST", "/schedules", { every: 1, task: review("Witness") }).then((r) =>
      r.json(),
    )) as ScheduleRecord
    const events = await watch.until((all) =>
      all.some(
        (e) =>
          e.state === "PENDING" &&
          e.input.review === "Witness" &&
          Date.now() > Date.parse(schedule.created_at) + 2000,
      ),
    )
    expect(events.filter((e) => e.state === "PENDING" && e.input.review === "Paused")).toEqual([])
    for (const id of [schedule.id, other.id]) await send("DELETE", `/schedules/${id}`)
  })

  describe("bad schedules are refused with 422 problem+json naming what is wrong", () => {
    const task = review("x")
    const cases: [string, unknown, string | RegExp][] = [
      [
        "a cron field out of range",
        { cron: "61 * * * *", task },
        'cron: "61 * * * *" is not a cron expression: Invalid value for minute: 61',
      ],
      [
        "a cron of three fields",
        { cron: "* * *", task },
        /^cron: "\* \* \*" is not a cron expression: invalid configuration format/,
      ],
      ["a cron that never fires", { cron: "0 0 30 2 *", task }, 'cron: "0 0 30 2 *" never fires'],
      [
        "an unknown time zone",
        { cron: "0 * * * *", timezone: "Mars/Base", task },
        'timezone: "Mars/Base" is not an IANA time zone, such as "UTC" or "Europe/Berlin"',
      ],
      ["both cron and every", { cron: "0 * * * *", every: 60, task }, "give cron or every, not both"],
      [
        "neither cron nor every",
        { task },
        "a schedule needs cron (a cron expression, with an optional timezone) or every (seconds)",
      ],
      [
        "a time zone with every",
        { every: 60, timezone: "UTC", task },
        "timezone: a timezone goes with cron, not with every",
      ],
      [
        "an interval of 0",
        { every: 0, task },
        "every: every must be a whole number of seconds from 1 to 31622400",
      ],
      [
        "an unknown missed-run policy",
        { every: 60, missed: "catch_up", task },
        'missed: missed must be "skip" or "run_once", not "catch_up"',
      ],
      ["an empty review", { every: 60, task: review("  ") }, "task.review: review must not be empty"],
      [
        "an unknown task kind",
        { every: 60, task: { kind: "test:flaky" } },
        'task.kind: kind must be "polarity:review", "document:sentences" or "report:polarity", not "test:flaky"',
      ],
      [
        "a bad id",
        { id: "no spaces", every: 60, task },
        "id: id must be 1 to 64 letters, digits, '.', '_' or '-', and start with a letter or a digit",
      ],
    ]
    for (const [what, body, detail] of cases) {
      test(what, async () => {
        await expectProblem(await send("POST", "/schedules", body), 422, detail)
      })
    }

    test("a patch that makes the schedule bad, and an id that is taken (409)", async () => {
      expect((await send("POST", "/schedules", { id: "taken", every: 60, task })).status).toBe(201)
      await expectProblem(
        await send("POST", "/schedules", { id: "taken", every: 60, task }),
        409,
        "a schedule with id taken exists already",
      )
      await expectProblem(
        await send("PATCH", "/schedules/taken", { timezone: "UTC" }),
        422,
        "timezone: a timezone goes with cron, not with every",
      )
      await expectProblem(
        await send("PATCH", "/schedules/taken", { cron: "nope" }),
        422,
        /^cron: "nope" is not a cron expression/,
      )
      await expectProblem(
        await send("PATCH", "/schedules/missing", { every: 5 }),
        404,
        "no schedule with id missing",
      )
      await send("DELETE", "/schedules/taken")
    })
  })
})

describe("SCHEDULES_FILE", () => {
  test("the store makes its schedules match the file at start, and refuses a bad one naming it", async () => {
    const file = join(stack.env.DATABASE_PATH ?? "", "..", "schedules.json")
    const write = (schedules: unknown) => writeFileSync(file, JSON.stringify(schedules))
    try {
      write([
        { id: "from-file", cron: "30 6 * * 1-5", timezone: "Europe/Paris", task: review("Weekdays") },
        { id: "dropped-later", every: 3600, task: review("Hourly"), paused: true },
      ])
      await stack.restartStore(async () => {
        stack.env.SCHEDULES_FILE = file
      })
      const loaded = (await send("GET", "/schedules").then((r) => r.json())) as ScheduleListBody
      const fromFile = loaded.schedules.filter((s) => s.from_file)
      expect(fromFile.map((s) => [s.id, s.paused])).toEqual([
        ["dropped-later", true],
        ["from-file", false],
      ])

      write([{ id: "from-file", every: 60, task: review("Every minute now") }])
      await stack.restartStore()
      const reloaded = (await send("GET", "/schedules").then((r) => r.json())) as ScheduleListBody
      expect(reloaded.schedules.filter((s) => s.from_file).map((s) => [s.id, s.every, s.cron])).toEqual([
        ["from-file", 60, null],
      ])

      write([{ id: "broken", cron: "99 * * * *", task: review("x") }])
      await stack.store.stop()
      await expect(startStore(loadStoreConfig(stack.env))).rejects.toThrow(
        `SCHEDULES_FILE ${file}: schedule 0 ("broken"): cron: "99 * * * *" is not a cron expression: Invalid value for minute: 99`,
      )
      write([])
      await stack.restartStore(async () => {})
    } finally {
      delete stack.env.SCHEDULES_FILE
      rmSync(file, { force: true })
    }
  })
})

describe("each occurrence fires once, however many replicas run", () => {
  // SQLite is one store process; on PostgreSQL, two stores fire from the same schedules, and one claim wins.
  const shapes = [
    { backend: "sqlite", stores: 1, what: "two gateways and two workers" },
    { backend: "postgres", stores: 2, what: "two of every service (stores on PostgreSQL)" },
  ] as const
  test.each(shapes)("a schedule every 2 s with $what fires each occurrence once over 10 s", async (shape) => {
    await using database = shape.backend === "postgres" ? await createTestDatabase("schedules") : undefined
    const { env, dataDir } = testEnv("schedules-replicas", {
      SCHEDULER_TICK_MS: "20",
      ...(database && { DATABASE_URL: database.url }),
    })
    const stores = []
    for (let n = 0; n < shape.stores; n++) stores.push(await startStore(loadStoreConfig(env)))
    const workers = [await startWorker(loadWorkerConfig(env)), await startWorker(loadWorkerConfig(env))]
    const gateways = [await startGateway(loadGatewayConfig(env)), await startGateway(loadGatewayConfig(env))]
    try {
      await using watch = await watchEvents({ names: topologyNames(env.AMQP_PREFIX ?? "") })
      const res = await fetch(`${gateways[1]?.url}/schedules`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ every: 2, task: review("Every two seconds") }),
      })
      expect(res.status).toBe(201)
      const schedule = (await res.json()) as ScheduleRecord
      const until = Date.parse(schedule.created_at) + 10_000
      // Done once the occurrences of the 10 s have ended, each SUCCESS after its PENDING.
      const events = await watch.until((all) => {
        const fired = all.filter((e) => e.state === "PENDING" && occurrenceOf(e.task_id) <= until)
        return (
          Date.now() > until + 500 &&
          fired.every((p) => all.some((e) => e.state === "SUCCESS" && e.task_id === p.task_id))
        )
      }, 30_000)
      await fetch(`${gateways[0]?.url}/schedules/${schedule.id}`, { method: "DELETE" })
      const pendings = events.filter((e) => e.state === "PENDING" && occurrenceOf(e.task_id) <= until)
      const ids = pendings.map((e) => e.task_id)
      console.log(`schedule every 2 s, ${shape.what}: ${ids.length} occurrences fired in 10 s`)
      expect(new Set(ids).size).toBe(ids.length)
      expect(ids.length).toBeGreaterThanOrEqual(4)
      const successes = events.filter((e) => e.state === "SUCCESS" && ids.includes(e.task_id))
      expect(successes.map((e) => e.task_id).toSorted()).toEqual(ids.toSorted())
      const occurrences = ids.map(occurrenceOf).toSorted()
      expect(occurrences.slice(1).map((at, i) => at - (occurrences[i] ?? 0))).toEqual(
        occurrences.slice(1).map(() => 2000),
      )
      const createdAt = Date.parse(schedule.created_at)
      expect(ids.toSorted()).toEqual(
        occurrences.map((at) => occurrenceTaskId(schedule.id, createdAt, at)).toSorted(),
      )
    } finally {
      await Promise.allSettled([...gateways, ...workers, ...stores].map((service) => service.stop()))
      await deleteTopology(env)
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})

/** The occurrence a scheduled task is for: its id is a UUIDv7 of that time. */
function occurrenceOf(taskId: string): number {
  return Number.parseInt(taskId.replaceAll("-", "").slice(0, 12), 16)
}

// Result expiry in the status store, on every backend: final tasks that ended before the horizon go with
// everything kept by task, a batch at a time; tasks not final never go; a late event of an expired task is refused
// rather than bringing it back.
import { Database } from "bun:sqlite"
import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { openSqliteStore } from "../services/status-store/sqlite.ts"
import type { StatusStore } from "../services/status-store/store.ts"
import { loadStoreConfig } from "../services/status-store.ts"
import type { TaskEvent, TaskStatus } from "../shared/contracts.ts"
import { openTestDatabase, STORE_BACKENDS } from "./store-backends.ts"

const T0 = 1_800_000_000_000

/** A UUIDv7 minted at `ms`, told apart by `n`. */
function idAt(ms: number, n: number): string {
  const time = ms.toString(16).padStart(12, "0")
  return `${time.slice(0, 8)}-${time.slice(8)}-7000-8000-${n.toString(16).padStart(12, "0")}`
}

const pending = (taskId: string, at: number, extra: Partial<TaskEvent> = {}): TaskEvent =>
  ({
    task_id: taskId,
    state: "PENDING",
    attempt: 0,
    run: 1,
    at,
    kind: "polarity:review",
    input: { review: "fine" },
    ...extra,
  }) as TaskEvent
const started = (taskId: string, at: number): TaskEvent => ({
  task_id: taskId,
  state: "STARTED",
  attempt: 1,
  run: 1,
  at,
  worker: "w:1",
})
const success = (taskId: string, at: number): TaskEvent => ({
  task_id: taskId,
  state: "SUCCESS",
  attempt: 1,
  run: 1,
  at,
  started_at: at - 1,
  result: {
    score: 1,
    comparative: 1,
    polarity: "positive",
    positive: ["fine"],
    negative: [],
    language: "en",
  },
})
const failure = (taskId: string, at: number): TaskEvent => ({
  task_id: taskId,
  state: "FAILURE",
  attempt: 1,
  run: 1,
  at,
  started_at: at - 1,
  error: "broken",
})

/** A task submitted at `at` that ran and succeeded 10 ms later. */
const finished = (taskId: string, at: number): TaskEvent[] => [
  pending(taskId, at),
  started(taskId, at + 5),
  success(taskId, at + 10),
]

/** A `settledBefore` past every mark: expiries move the horizon by which events are refused at once. */
const SETTLED = Number.MAX_SAFE_INTEGER

/** How many tasks one batch expired. */
const expire = async (db: StatusStore, before: number, limit: number, settledBefore = SETTLED) =>
  (await db.expireResults(before, limit, settledBefore)).expired

/** Why an event of a task whose expiry has not settled yet is refused. */
const EXPIRED_LATELY =
  "its task's result expired moments ago (RESULT_EXPIRES): a late copy does not bring it back"

describe.each(STORE_BACKENDS)("result expiry on %s", (backend) => {
  test("final tasks that ended before the horizon go with their timelines; the rest stay; counts follow", async () => {
    await using database = await openTestDatabase(backend)
    const db = database.store
    const old = [idAt(T0, 1), idAt(T0, 2)]
    const recent = idAt(T0 + 60_000, 3)
    const running = idAt(T0, 4)
    const failed = idAt(T0, 5)
    await db.applyEvents([
      ...old.flatMap((id) => finished(id, T0)),
      ...finished(recent, T0 + 60_000),
      pending(running, T0),
      started(running, T0 + 5),
      pending(failed, T0),
      started(failed, T0 + 5),
      failure(failed, T0 + 10),
    ])
    const horizon = T0 + 30_000
    expect(await expire(db, horizon, 500)).toBe(3)
    expect(await db.findMany([...old, failed, recent, running])).toEqual([
      null,
      null,
      null,
      expect.objectContaining({ task_id: recent, status: "SUCCESS" }),
      expect.objectContaining({ task_id: running, status: "STARTED" }),
    ])
    const inbox = await database.query<{ event_id: string }>("SELECT event_id FROM inbox ORDER BY event_id")
    expect(inbox.map((row) => row.event_id.slice(0, 36)).sort()).toEqual(
      [running, running, recent, recent, recent].sort(),
    )
    expect(await db.detail(old[0] ?? "")).toBeNull()
    const counts = await db.statusCounts()
    expect({ SUCCESS: counts.SUCCESS, FAILURE: counts.FAILURE, STARTED: counts.STARTED }).toEqual({
      SUCCESS: 1,
      FAILURE: 0,
      STARTED: 1,
    })
    expect(await expire(db, horizon, 500)).toBe(0)
  })

  test("goes a batch at a time, oldest end first, and never past its limit", async () => {
    await using database = await openTestDatabase(backend)
    const db = database.store
    const ids = Array.from({ length: 7 }, (_, i) => idAt(T0 + i, i + 1))
    await db.applyEvents(ids.flatMap((id, i) => finished(id, T0 + i * 100)))
    expect(await expire(db, T0 + 10_000, 3)).toBe(3)
    expect((await db.findMany(ids)).map((row) => row !== null)).toEqual([
      false,
      false,
      false,
      true,
      true,
      true,
      true,
    ])
    expect(await expire(db, T0 + 10_000, 3)).toBe(3)
    expect(await expire(db, T0 + 10_000, 3)).toBe(1)
    expect(await database.query("SELECT task_id FROM tasks")).toEqual([])
  })

  test("a late copy of an expired task's events is refused, and the task stays gone", async () => {
    await using database = await openTestDatabase(backend)
    const db = database.store
    const id = idAt(T0, 1)
    const events = finished(id, T0)
    const longRunning = idAt(T0 - 60_000, 3)
    await db.applyEvents([...events, pending(longRunning, T0 - 60_000)])
    // The horizon: the latest mint time among the expired tasks.
    expect(await db.expireResults(T0 + 1000, 500, SETTLED)).toEqual({ expired: 1, horizon: T0 })
    const outcome = await db.applyEvents(events, T0 + 2000)
    expect(outcome.applied).toEqual([])
    expect(outcome.refused.map(({ event, reason }) => [event.state, reason])).toEqual(
      (["PENDING", "STARTED", "SUCCESS"] satisfies TaskStatus[]).map((state) => [
        state,
        "its task is not held and was submitted before results that have expired: it expired too",
      ]),
    )
    expect(await db.find(id)).toBeNull()
    expect(await db.heldBefore(Number.MAX_SAFE_INTEGER, 10)).toEqual([])
    // A task minted after the horizon is new, however late its submission comes (an events queue hours behind),
    // and one still held takes its events whatever its age.
    const late = idAt(T0 + 1, 2)
    const later = await db.applyEvents(
      [...finished(late, T0 + 1), started(longRunning, T0 + 1900)],
      T0 + 86_400_000,
    )
    expect(later.refused).toEqual([])
    expect((await db.findMany([late, longRunning])).map((row) => row?.status)).toEqual(["SUCCESS", "STARTED"])
    // Another store on the database (a restart, a replica) refuses by the same horizon.
    const reopened = await database.reopen()
    expect((await reopened.applyEvents([events[0] as TaskEvent])).refused).toHaveLength(1)
    expect(await reopened.expireResults(T0, 500, SETTLED)).toEqual({ expired: 0, horizon: T0 })
  })

  test("until an expiry settles, a submission minted before it is applied, not refused; reads count it at once", async () => {
    await using database = await openTestDatabase(backend)
    const db = database.store
    await db.applyEvents(finished(idAt(T0, 1), T0))
    // Nothing settles: as with an expiry younger than EVENT_HOLD_SECONDS.
    expect(await db.expireResults(T0 + 1000, 500, 0)).toEqual({ expired: 1, horizon: T0 })
    // Overtaken by the expired task in a queue far behind (a replica's prefetch, a backlog): still a new task.
    const overtaken = idAt(T0 - 1, 2)
    expect((await db.applyEvents(finished(overtaken, T0 - 1), T0 + 2000)).refused).toEqual([])
    expect((await db.find(overtaken))?.status).toBe("SUCCESS")
    // Once settled, the horizon refuses what was minted by then and is not held.
    expect(await db.expireResults(T0 + 1000, 500, SETTLED)).toEqual({ expired: 1, horizon: T0 })
    expect((await db.applyEvents([pending(idAt(T0 - 2, 3), T0 - 2)], T0 + 3000)).refused).toHaveLength(1)
  })

  test("a copy of an expired task's events that comes before the expiry settles is refused too: no row comes back", async () => {
    await using database = await openTestDatabase(backend)
    const db = database.store
    const id = idAt(T0, 1)
    const [submitted, , succeeded] = finished(id, T0) as [TaskEvent, TaskEvent, TaskEvent]
    await db.applyEvents(finished(id, T0))
    expect(await db.expireResults(T0 + 1000, 500, 0)).toEqual({ expired: 1, horizon: T0 })
    // The gateway's PENDING redelivered alone would make a row that never ends; a worker's outcome, one held.
    const outcome = await db.applyEvents([submitted, succeeded], T0 + 2000)
    expect(outcome.applied).toEqual([])
    expect(outcome.refused.map(({ event, reason }) => [event.state, reason])).toEqual(
      (["PENDING", "SUCCESS"] satisfies TaskStatus[]).map((state) => [state, EXPIRED_LATELY]),
    )
    expect(await db.find(id)).toBeNull()
    expect(await db.heldBefore(Number.MAX_SAFE_INTEGER, 10)).toEqual([])
    expect((await db.statusCounts()).PENDING).toBe(0)
    // Another store on the database (a replica, a restart) refuses it as well.
    const replica = await database.openReplica()
    expect((await replica.applyEvents([submitted], T0 + 3000)).refused).toHaveLength(1)
    // Once the expiry settles, the horizon refuses it, and the ids kept until then go.
    expect(await db.expireResults(T0 + 1000, 500, SETTLED)).toEqual({ expired: 0, horizon: T0 })
    expect((await db.applyEvents([submitted], T0 + 4000)).refused).toHaveLength(1)
    expect(await database.query("SELECT task_id FROM expired_tasks")).toEqual([])
    expect(await db.find(id)).toBeNull()
  })

  test("while one store expires tasks, copies of their PENDINGs on another store bring none back", async () => {
    await using database = await openTestDatabase(backend)
    const db = database.store
    const replica = await database.openReplica()
    const ids = Array.from({ length: 400 }, (_, i) => idAt(T0 + i, i + 1))
    await db.applyEvents(ids.flatMap((id, i) => finished(id, T0 + i)))
    const copies = ids.map((id, i) => pending(id, T0 + i))
    // None settles; the copies of tasks not expired yet are duplicates, the others come too late.
    const expiring = (async () => {
      for (let expired = 1; expired > 0; ) expired = await expire(db, T0 + 10_000, 50, 0)
    })()
    const copying = (async () => {
      for (let i = 0; i < copies.length; i += 20)
        await replica.applyEvents(copies.slice(i, i + 20), T0 + 20_000)
    })()
    await Promise.all([expiring, copying])
    expect(await database.query("SELECT task_id, status FROM tasks")).toEqual([])
    const counts = await db.statusCounts()
    expect(Object.values(counts).every((tasks) => tasks === 0)).toBe(true)
  })

  test("a revoked task still due later stays until its eta is past the horizon", async () => {
    await using database = await openTestDatabase(backend)
    const db = database.store
    const id = idAt(T0, 1)
    await db.applyEvents([pending(id, T0, { eta: T0 + 100_000 })])
    expect((await db.revoke(id, T0 + 10, false)).outcome).toBe("revoked")
    expect(await expire(db, T0 + 50_000, 500)).toBe(0)
    expect((await db.find(id))?.status).toBe("REVOKED")
    expect(await expire(db, T0 + 100_001, 500)).toBe(1)
    expect(await db.recentlyRevoked(10)).toEqual([])
  })

  test("a group goes once its last task has; its webhook deliveries and attempts go with their tasks", async () => {
    await using database = await openTestDatabase(backend)
    const db = database.store
    const groupId = idAt(T0, 100)
    const [first, second] = [idAt(T0, 1), idAt(T0, 2)]
    const grouped = (taskId: string, index: number) =>
      pending(taskId, T0, {
        group: { group_id: groupId, index, size: 2 },
        input: { review: "fine", callback_url: "https://example.com/done" },
      } as Partial<TaskEvent>)
    await db.applyEvents([
      grouped(first, 0),
      started(first, T0 + 5),
      success(first, T0 + 10),
      grouped(second, 1),
      started(second, T0 + 5),
      success(second, T0 + 20_000),
    ])
    const [delivery] = await db.webhooks.unqueued(Number.POSITIVE_INFINITY, 10)
    await db.webhooks.recordAttempts([
      {
        delivery_id: delivery?.delivery_id ?? "",
        task_id: delivery?.task_id ?? "",
        attempt: 1,
        at: T0 + 30,
        outcome: "delivered",
        status_code: 200,
        error: null,
        next_attempt_at: null,
      },
    ])
    expect(await expire(db, T0 + 10_000, 500)).toBe(1)
    expect((await db.findGroup(groupId))?.members.map((row) => row.task_id)).toEqual([second])
    expect(await expire(db, T0 + 30_000, 500)).toBe(1)
    expect(await db.findGroup(groupId)).toBeNull()
    const left = await database.query(
      "SELECT delivery_id FROM webhook_deliveries UNION ALL SELECT delivery_id FROM webhook_attempts",
    )
    expect(left).toEqual([])
    // An attempt reported after its task expired is not kept either.
    await db.webhooks.recordAttempts([
      {
        delivery_id: `${first}.1`,
        task_id: first,
        attempt: 2,
        at: T0 + 40_000,
        outcome: "delivered",
        status_code: 200,
        error: null,
        next_attempt_at: null,
      },
    ])
    expect(await database.query("SELECT delivery_id FROM webhook_attempts")).toEqual([])
  })
})

describe("result expiry on sqlite's file", () => {
  test("a new database gives the pages of expired results back to the file system", async () => {
    await using database = await openTestDatabase("sqlite")
    const db = database.store
    const ids = Array.from({ length: 2000 }, (_, i) => idAt(T0, i + 1))
    const review = "a long enough review to take some room ".repeat(20)
    await db.applyEvents(
      ids.flatMap((id) => [pending(id, T0, { input: { review } }), ...finished(id, T0).slice(1)]),
    )
    const pages = async () =>
      (await database.query<{ page_count: number }>("SELECT page_count FROM pragma_page_count()"))[0]
        ?.page_count ?? 0
    const full = await pages()
    for (let expired = 1; expired > 0; ) expired = await expire(db, T0 + 1000, 500)
    expect(await database.query("SELECT auto_vacuum FROM pragma_auto_vacuum()")).toEqual([{ auto_vacuum: 2 }])
    expect(await pages()).toBeLessThan(full / 4)
  })

  test("a database made before keeps its mode and reuses the pages freed, without a VACUUM of its own", async () => {
    const dir = mkdtempSync(join(tmpdir(), "polarity-store-"))
    try {
      const path = join(dir, "store.sqlite")
      // As a store before this version made it: no auto_vacuum, already in WAL mode.
      const raw = new Database(path)
      raw.exec("PRAGMA journal_mode = WAL; CREATE TABLE made_before (x INTEGER)")
      raw.close()
      const db = openSqliteStore(path, "NORMAL")
      try {
        expect(db.incrementalVacuum).toBe(false)
        const ids = Array.from({ length: 500 }, (_, i) => idAt(T0, i + 1))
        await db.applyEvents(ids.flatMap((id) => finished(id, T0)))
        expect(await expire(db, T0 + 1000, 500)).toBe(500)
        expect(await db.findMany(ids.slice(0, 2))).toEqual([null, null])
      } finally {
        await db.close()
      }
      const after = new Database(path, { readonly: true })
      const [mode] = after.query<{ auto_vacuum: number }, []>("PRAGMA auto_vacuum").all()
      const [free] = after.query<{ freelist_count: number }, []>("PRAGMA freelist_count").all()
      after.close()
      expect(mode).toEqual({ auto_vacuum: 0 })
      expect(free?.freelist_count).toBeGreaterThan(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("RESULT_EXPIRES", () => {
  test("takes a duration with a unit (seconds without one) or never, and names what is wrong", () => {
    const expires = (value: string) => loadStoreConfig({ RESULT_EXPIRES: value }).RESULT_EXPIRES
    expect([
      expires("10s"),
      expires("15m"),
      expires("12h"),
      expires("7d"),
      expires("90"),
      expires("1500ms"),
    ]).toEqual([10_000, 900_000, 43_200_000, 604_800_000, 90_000, 1500])
    expect([expires("never"), expires("0"), loadStoreConfig({}).RESULT_EXPIRES]).toEqual([0, 0, 86_400_000])
    for (const wrong of ["10x", "-5s", "500ms", "soon"]) {
      expect(() => expires(wrong)).toThrow(
        "invalid configuration: RESULT_EXPIRES: must be a duration such as 90s, 15m, 12h or 1d, of at least 1000 ms, or never",
      )
    }
  })
})

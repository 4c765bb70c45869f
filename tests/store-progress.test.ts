// Progress reports in the status store, on every backend: the latest report of the running attempt is kept and
// shown, an older one is ignored whatever order they come in, and none is shown once the attempt is over.
import { describe, expect, test } from "bun:test"
import { toRecord } from "../services/status-store/task-state.ts"
import type { TaskEvent, TaskProgress } from "../shared/contracts.ts"
import { openTestDatabase, STORE_BACKENDS } from "./store-backends.ts"

const T0 = 1_800_000_000_000
const taskId = "01a21300-0000-7000-8000-00000000abcd"
const pending: TaskEvent = {
  task_id: taskId,
  state: "PENDING",
  attempt: 0,
  run: 1,
  at: T0,
  kind: "document:sentences",
  input: { document: "…" },
}
const started = (attempt: number, at: number): TaskEvent => ({
  task_id: taskId,
  state: "STARTED",
  attempt,
  run: 1,
  at,
  worker: "w:1",
})
const report = (attempt: number, at: number, done: number, message?: string): TaskProgress => ({
  task_id: taskId,
  attempt,
  run: 1,
  at,
  progress: { done, total: 10, ...(message && { message }) },
})

describe.each(STORE_BACKENDS)("progress on %s", (backend) => {
  test("the latest report of the running attempt is shown; an older one, in any order, is ignored", async () => {
    await using database = await openTestDatabase(backend)
    const db = database.store
    await db.applyEvents([pending, started(1, T0 + 1)])
    await db.recordProgress([report(1, T0 + 500, 4, "four")])
    await db.recordProgress([report(1, T0 + 250, 2), report(1, T0 + 750, 6)])
    await db.recordProgress([report(1, T0 + 600, 5)])
    const row = await db.find(taskId)
    expect(row && toRecord(row)).toMatchObject({
      status: "STARTED",
      progress: { done: 6, total: 10, at: new Date(T0 + 750).toISOString() },
    })
    // Another process on the same database reads the same.
    const reopened = await (await database.reopen()).find(taskId)
    expect(reopened && toRecord(reopened).progress?.done).toBe(6)
  })

  test("none is shown once the attempt fails for a retry, nor after the next attempt starts, nor when final", async () => {
    await using database = await openTestDatabase(backend)
    const db = database.store
    const shown = async () => {
      const row = await db.find(taskId)
      return row ? toRecord(row).progress : "no row"
    }
    await db.applyEvents([pending, started(1, T0 + 1)])
    await db.recordProgress([report(1, T0 + 300, 3)])
    await db.applyEvents([
      {
        task_id: taskId,
        state: "RETRY",
        attempt: 1,
        run: 1,
        at: T0 + 400,
        started_at: T0 + 1,
        error: "E",
        retry_at: T0 + 500,
      },
    ])
    expect(await shown()).toBeUndefined()
    await db.applyEvents([started(2, T0 + 500)])
    expect(await shown()).toBeUndefined()
    // A late report of the first attempt changes nothing; the second attempt's own does.
    await db.recordProgress([report(1, T0 + 600, 9)])
    expect(await shown()).toBeUndefined()
    await db.recordProgress([report(2, T0 + 800, 1)])
    expect(await shown()).toMatchObject({ done: 1 })
    await db.applyEvents([
      {
        task_id: taskId,
        state: "SUCCESS",
        attempt: 2,
        run: 1,
        at: T0 + 900,
        started_at: T0 + 500,
        result: { succeeded_on_attempt: 2 },
      },
    ])
    expect(await shown()).toBeUndefined()
  })

  test("a report of a task the store has not heard of is dropped", async () => {
    await using database = await openTestDatabase(backend)
    await database.store.recordProgress([report(1, T0, 1)])
    expect(await database.store.find(taskId)).toBeNull()
  })
})

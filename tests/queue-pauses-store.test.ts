// The status store's side of pausing and purging a queue, on each backend: the paused set, and a purge's revokes.
import { describe, expect, test } from "bun:test"
import { v7 as uuidv7 } from "uuid"
import type { TaskEvent, TaskKind } from "../shared/contracts.ts"
import { openTestDatabase, STORE_BACKENDS } from "./store-backends.ts"

const pending = (taskId: string, kind: TaskKind, at: number): TaskEvent => ({
  task_id: taskId,
  state: "PENDING",
  attempt: 0,
  run: 1,
  at,
  kind,
  input: { review: "x" },
})

describe.each(STORE_BACKENDS)("queue pauses and purges in the store (%s)", (backend) => {
  test("a pause or resume is kept, and each change is later than the one before, even at the same instant", async () => {
    await using database = await openTestDatabase(backend)
    expect(await database.store.queuePauses()).toEqual([])
    const paused = await database.store.setQueuePaused("polarity", true, 5000)
    const resumed = await database.store.setQueuePaused("polarity", false, 5000)
    expect(paused).toEqual({ queue: "polarity", paused: true, changed_at: 5000 })
    expect(resumed).toEqual({ queue: "polarity", paused: false, changed_at: 5001 })
    await database.store.setQueuePaused("default", true, 6000)
    const store = await database.reopen()
    expect(await store.queuePauses()).toEqual([
      { queue: "default", paused: true, changed_at: 6000 },
      { queue: "polarity", paused: false, changed_at: 5001 },
    ])
  })

  test("a purge revokes, with its reason, the tasks of the kinds asked that have not started, a batch at a time", async () => {
    await using database = await openTestDatabase(backend)
    const { store } = database
    const reviews = [uuidv7(), uuidv7(), uuidv7()]
    const started = uuidv7()
    const document = uuidv7()
    await store.applyEvents([
      ...reviews.map((id, i) => pending(id, "polarity:review", 1000 + i)),
      pending(started, "polarity:review", 1003),
      { task_id: started, state: "STARTED", attempt: 1, run: 1, at: 1004, worker: "w" },
      pending(document, "document:sentences", 1005),
    ])
    const first = await store.revokeNotStarted(["polarity:review"], 2000, "purged", 2)
    const second = await store.revokeNotStarted(["polarity:review"], 2000, "purged", 2)
    expect([first.length, second.length]).toEqual([2, 1])
    expect(
      [...first, ...second].map(({ event }) => event).toSorted((a, b) => a.task_id.localeCompare(b.task_id)),
    ).toEqual(
      reviews.map((task_id) => ({
        task_id,
        state: "REVOKED",
        attempt: 0,
        run: 1,
        at: 2000,
        reason: "purged",
      })),
    )
    for (const id of reviews)
      expect(await store.find(id)).toMatchObject({ status: "REVOKED", error: "purged" })
    expect((await store.find(started))?.status).toBe("STARTED")
    expect((await store.find(document))?.status).toBe("PENDING")
    expect(await store.revokeNotStarted(["polarity:review"], 2000, "purged", 2)).toEqual([])
    expect((await store.statusCounts()).REVOKED).toBe(3)
  })
})

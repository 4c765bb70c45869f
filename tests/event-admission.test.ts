// An event changes its task only once its cause is known, so that no forged or malformed event can create a
// task, start a run, or undo a result: issue 13's reproductions, one by one, against the store's database.
import { describe, expect, test } from "bun:test"
import * as v from "valibot"
import { admit, emptyRow, mergeEvent, rankOf, type TaskRow } from "../services/status-store/task-state.ts"
import { MAX_ATTEMPT, MAX_RETRIES_PER_RUN, type TaskEvent, TaskEventBatch } from "../shared/contracts.ts"
import { openTestDatabase, STORE_BACKENDS } from "./store-backends.ts"

const taskId = "01a2124d-2222-7000-8000-000000000001"
const T0 = 1_700_000_000_000
/** An event of the test's task; `at` follows attempt and stage, which is all the state machine reads of it. */
const event = (
  state: TaskEvent["state"],
  attempt: number,
  run: number,
  fields: object,
  stage = 0,
): TaskEvent =>
  ({ task_id: taskId, state, attempt, run, at: T0 + 10 * attempt + stage, ...fields }) as TaskEvent
const pending = (run = 1) =>
  event("PENDING", run - 1, run, { kind: "polarity:review", input: { review: "awful" } })
const started = (attempt: number, run = 1) => event("STARTED", attempt, run, { worker: "w:1" })
const retry = (attempt: number, run = 1) =>
  event("RETRY", attempt, run, { started_at: T0, error: "boom", retry_at: T0 + 10 * attempt + 5 }, 1)
const result = { comparative: -3, polarity: "negative", positive: [], negative: ["awful"], language: "en" }
const success = (attempt: number, run = 1, score = -3) =>
  event("SUCCESS", attempt, run, { started_at: T0, result: { ...result, score } }, 2)
const failure = (attempt: number, run = 1, startedAt: number | null = T0) =>
  event("FAILURE", attempt, run, { started_at: startedAt, error: "gave up" }, 3)
const expired = (attempt: number, run = 1) => event("EXPIRED", attempt, run, { expires_at: T0 }, 4)
const revoked = (run = 1) => event("REVOKED", run - 1, run, {}, 9)

/** The row after these events, applied in order as the store applies what it admits. */
const rowAfter = (...events: TaskEvent[]): TaskRow =>
  events.reduce<TaskRow>((row, event) => mergeEvent(row, event), emptyRow(taskId))
const seenOf = (...events: TaskEvent[]) => {
  const ids = new Set(events.map((e) => `${e.task_id}:${e.state}:${e.attempt}`))
  return (id: string) => ids.has(id)
}

describe("admit: when an event may change its task", () => {
  const cases: [string, TaskEvent[], TaskEvent, string][] = [
    ["a submission", [], pending(), "apply"],
    ["an outcome of a task never submitted", [], success(1), "hold: the task's submission (its PENDING)"],
    ["a STARTED of a task never submitted", [], started(1), "hold: the task's submission (its PENDING)"],
    ["an outcome of the running attempt", [pending(), started(1)], success(1), "apply"],
    ["an outcome that overtook its STARTED", [pending()], success(1), "apply"],
    ["attempt 2 after the RETRY of attempt 1", [pending(), retry(1)], success(2), "apply"],
    [
      "attempt 3 while attempt 2 has not failed",
      [pending(), retry(1)],
      success(3),
      "hold: the RETRY of attempt 2",
    ],
    ["an EXPIRED of attempt 1, before it started", [pending()], expired(0), "apply"],
    [
      "an EXPIRED of attempt 3 with no RETRY of 2",
      [pending(), retry(1)],
      expired(2),
      "hold: the RETRY of attempt 2",
    ],
    ["the FAILURE of a task the broker refused", [pending()], failure(0, 1, null), "apply"],
    [
      "an attempt before its run began",
      [pending(), failure(1), pending(2)],
      success(1, 2),
      "refuse: attempt 1 comes before run 2 began",
    ],
    [
      "an attempt past the retries a run may have",
      [pending()],
      success(MAX_RETRIES_PER_RUN + 2),
      `refuse: attempt ${MAX_RETRIES_PER_RUN + 2} is more retries than a run has`,
    ],
    [
      "a REVOKED from the queue",
      [pending()],
      revoked(),
      "refuse: a REVOKED comes from the status store alone, which applies it itself",
    ],
    [
      "a PENDING whose attempt is not its run - 1",
      [],
      { ...pending(), attempt: 5 },
      "refuse: a PENDING of run 1 has attempt 0, not 5",
    ],
    ["a replay of a failed task", [pending(), failure(1)], pending(2), "apply"],
    ["a replay of an expired task", [pending(), expired(0)], pending(2), "apply"],
    ["a retry of a revoked task", [pending(), revoked()], pending(2), "apply"],
    [
      "a new run of a task that succeeded",
      [pending(), success(1)],
      pending(2),
      "refuse: the task succeeded in run 1: no run comes after",
    ],
    ["a new run of a task still running", [pending(), started(1)], pending(2), "hold: the end of run 1"],
    ["a run far ahead of the next", [pending(), failure(1)], pending(9), "hold: run 2 before run 9"],
    [
      "a new run of a task never submitted",
      [],
      pending(2),
      "hold: the task's submission (its first PENDING)",
    ],
    [
      "an outcome of a run that has not begun",
      [pending(), failure(1)],
      success(2, 2),
      "hold: the PENDING of run 2",
    ],
    ["a late PENDING of the current run", [pending(), failure(1), pending(2)], pending(2), "apply"],
  ]
  for (const [label, before, event, expected] of cases) {
    test(`${label}: ${expected.split(":")[0]}`, () => {
      const row = before.length > 0 ? rowAfter(...before) : null
      const admission = admit(row, event, seenOf(...before))
      const said =
        admission.verdict === "apply"
          ? "apply"
          : `${admission.verdict}: ${admission.verdict === "hold" ? admission.waitingFor : admission.reason}`
      expect(said).toBe(expected)
    })
  }
})

describe("the contract bounds what a rank is made of", () => {
  test("run and attempt past MAX_ATTEMPT are refused, and the largest rank is exact and in order", () => {
    const forged = { ...revoked(), run: 9_007_199_254, attempt: 9_007_199_253 }
    expect(v.safeParse(TaskEventBatch, { events: [forged] }).success).toBe(false)
    const last = { ...success(MAX_ATTEMPT, MAX_ATTEMPT) }
    expect(v.safeParse(TaskEventBatch, { events: [last] }).success).toBe(true)
    expect(Number.isSafeInteger(rankOf(last))).toBe(true)
    // Every event of a run ranks below every event of the next one.
    expect(rankOf(revoked(MAX_ATTEMPT - 1))).toBeLessThan(rankOf(pending(MAX_ATTEMPT)))
    expect(rankOf(success(MAX_ATTEMPT - 1 + MAX_RETRIES_PER_RUN, MAX_ATTEMPT - 1))).toBeLessThan(
      rankOf(pending(MAX_ATTEMPT)),
    )
  })

  test("times past year 9999 and non-finite scores are refused", () => {
    expect(v.safeParse(TaskEventBatch, { events: [{ ...pending(), at: 1e300 }] }).success).toBe(false)
    const infinite = JSON.parse(
      JSON.stringify({ events: [success(1)] }).replace('"score":-3', '"score":1e400'),
    )
    expect(v.safeParse(TaskEventBatch, infinite).success).toBe(false)
  })
})

for (const backend of STORE_BACKENDS) {
  describe(`the store holds, applies and refuses (${backend})`, () => {
    test("an outcome before its submission waits for it, then applies; forged ones never do", async () => {
      await using database = await openTestDatabase(backend)
      const db = database.store
      expect(await db.applyEvents([success(1)], T0)).toEqual({ applied: [], refused: [] })
      expect(await db.find(taskId)).toBeNull()
      expect((await db.heldBefore(T0 + 1, 10)).map((h) => h.waitingFor)).toEqual([
        "the task's submission (its PENDING)",
      ])
      const { applied } = await db.applyEvents([pending()], T0 + 5)
      expect(applied.map((a) => a.event.state)).toEqual(["PENDING", "SUCCESS"])
      expect(await db.heldBefore(T0 + 10, 10)).toEqual([])
      expect((await db.find(taskId))?.status).toBe("SUCCESS")

      // Issue 13: a PENDING of run 2 moved a SUCCESS back; a SUCCESS of another run replaced the result.
      const forged = await db.applyEvents([pending(2), success(2, 2, 99), success(1, 1, 99)], T0 + 20)
      expect(forged.applied).toEqual([])
      expect(forged.refused.map((r) => r.reason)).toEqual(["the task succeeded in run 1: no run comes after"])
      const row = await db.find(taskId)
      expect({ status: row?.status, score: JSON.parse(row?.result ?? "{}").score }).toEqual({
        status: "SUCCESS",
        score: -3,
      })
      // The forged SUCCESS of run 2 waits for a PENDING of run 2 that will never be admitted.
      expect((await db.heldBefore(T0 + 30, 10)).map((h) => [h.event.state, h.waitingFor])).toEqual([
        ["SUCCESS", "the PENDING of run 2"],
      ])
    })

    test("held events that a later event unblocks apply in the same transaction, in any order", async () => {
      await using database = await openTestDatabase(backend)
      const db = database.store
      const history = [
        pending(),
        started(1),
        retry(1),
        started(2),
        failure(2),
        pending(3),
        started(3, 3),
        success(3, 3),
      ]
      await db.applyEvents(history.toReversed(), T0)
      const row = await db.find(taskId)
      expect(row).toEqual(rowAfter(...history))
      expect(await db.heldBefore(T0 + 1, 100)).toEqual([])
    })

    test("a held event is forgotten only when asked, after its dead letter", async () => {
      await using database = await openTestDatabase(backend)
      const db = database.store
      await db.applyEvents([success(1), started(1)], T0)
      const expired = await db.heldBefore(T0 + 1, 100)
      expect(expired.map((h) => h.event.state).toSorted()).toEqual(["STARTED", "SUCCESS"])
      await db.forgetHeld(expired.map((h) => h.event))
      expect(await db.heldBefore(T0 + 1, 100)).toEqual([])
      expect(await db.find(taskId)).toBeNull()
    })
  })
}

import { describe, expect, test } from "bun:test"
import { mergeEvent, revokeOf, toRecord } from "../services/status-store/task-state.ts"
import type { TaskEvent } from "../shared/contracts.ts"

const taskId = "01a2124d-1111-7000-8000-000000000001"
const pending: TaskEvent = {
  task_id: taskId,
  state: "PENDING",
  attempt: 0,
  run: 1,
  at: 1000,
  kind: "polarity:review",
  input: { review: "awful" },
}
const started: TaskEvent = { task_id: taskId, state: "STARTED", attempt: 1, run: 1, at: 1010, worker: "w:1" }
const success: TaskEvent = {
  task_id: taskId,
  state: "SUCCESS",
  attempt: 1,
  run: 1,
  at: 1020,
  started_at: 1010,
  result: {
    score: -3,
    comparative: -3,
    polarity: "negative",
    positive: [],
    negative: ["awful"],
    language: "en",
  },
}

const replay = (events: TaskEvent[]) =>
  events.reduce((row, e) => mergeEvent(row, e), mergeEvent(null, events[0] as TaskEvent))

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items]
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  )
}

describe("the status store's state machine", () => {
  test("applies PENDING, STARTED, SUCCESS in order", () => {
    expect(replay([pending, started, success])).toEqual({
      task_id: taskId,
      kind: "polarity:review",
      status: "SUCCESS",
      rank: expect.any(Number),
      attempts: 1,
      input: JSON.stringify({ review: "awful" }),
      result: JSON.stringify(success.state === "SUCCESS" && success.result),
      error: null,
      group_id: null,
      group_index: null,
      submitted_at: 1000,
      started_at: 1010,
      finished_at: 1020,
      progress_report: null,
      owner: null,
      eta: null,
      callback_url: null,
    })
  })

  test("a late or repeated STARTED never overwrites SUCCESS", () => {
    const done = replay([pending, started, success])
    expect(replay([pending, started, success, started, started])).toEqual(done)
  })

  test("every order of the events, with duplicates, converges on the same row", () => {
    const expected = replay([pending, started, success])
    for (const order of permutations([pending, started, success, started, pending])) {
      expect(replay(order)).toEqual(expected)
    }
  })

  test("an event after the final state changes nothing, not even the attempt count", () => {
    const failure: TaskEvent = {
      task_id: taskId,
      state: "FAILURE",
      attempt: 2,
      run: 1,
      at: 2000,
      started_at: 1990,
      error: "boom",
    }
    expect(replay([pending, started, success, failure])).toEqual(replay([pending, started, success]))
  })
})

describe("EXPIRED and REVOKED", () => {
  const expired: TaskEvent = {
    task_id: taskId,
    state: "EXPIRED",
    attempt: 0,
    run: 1,
    at: 5000,
    expires_at: 4000,
  }
  const revoked: TaskEvent = { task_id: taskId, state: "REVOKED", attempt: 0, run: 1, at: 3000 }

  test("a task that expired before it started ends EXPIRED with the reason", () => {
    expect(replay([pending, expired])).toMatchObject({
      status: "EXPIRED",
      attempts: 0,
      result: null,
      error: "expired at 1970-01-01T00:00:04.000Z before attempt 1 started",
      started_at: null,
      finished_at: 5000,
    })
  })

  test("a revoked task ends REVOKED, and a worker's later events of that run change nothing", () => {
    const revokedRow = replay([pending, revoked])
    expect(revokedRow).toMatchObject({
      status: "REVOKED",
      error: "revoked before it started",
      finished_at: 3000,
    })
    expect(replay([pending, revoked, started, success])).toEqual(revokedRow)
  })

  test("every order of a revoked task's events, with duplicates, converges on REVOKED", () => {
    const expected = replay([pending, revoked])
    for (const order of permutations([pending, started, success, revoked, started])) {
      expect(replay(order)).toEqual(expected)
    }
  })

  test("a running task is revoked only with terminate, with its reason and start, whatever its attempt reports", () => {
    const running = replay([pending, started])
    expect(revokeOf(running, 3000)).toEqual({ outcome: "started" })
    const { outcome, event } = revokeOf(running, 3000, true)
    expect({ outcome, event }).toEqual({
      outcome: "revoked",
      event: {
        task_id: taskId,
        state: "REVOKED",
        attempt: 1,
        run: 1,
        at: 3000,
        terminate: true,
        reason: "terminated while running attempt 1",
        started_at: 1010,
      },
    })
    const terminated = replay([pending, started, event as TaskEvent])
    expect(terminated).toMatchObject({
      status: "REVOKED",
      attempts: 1,
      error: "terminated while running attempt 1",
      started_at: 1010,
      finished_at: 3000,
    })
    for (const order of permutations([pending, started, success, event as TaskEvent])) {
      expect(replay(order)).toEqual(terminated)
    }
  })

  test("every order of an expired task's events, with duplicates, converges on the same row", () => {
    const expected = replay([pending, expired])
    for (const order of permutations([pending, expired, pending, expired])) {
      expect(replay(order)).toEqual(expected)
    }
  })

  test("a retry that expires counts the attempts that ran, in any order", () => {
    const retry: TaskEvent = {
      task_id: taskId,
      state: "RETRY",
      attempt: 1,
      run: 1,
      at: 1020,
      started_at: 1010,
      error: "Error: boom",
      retry_at: 6000,
    }
    const late: TaskEvent = { ...expired, attempt: 1 }
    for (const order of permutations([pending, started, retry, late])) {
      expect(replay(order)).toMatchObject({
        status: "EXPIRED",
        attempts: 1,
        result: null,
        started_at: null,
        finished_at: 5000,
        error: "expired at 1970-01-01T00:00:04.000Z before attempt 2 started",
      })
    }
  })
})

describe("times from clocks that disagree", () => {
  test("a worker's clock behind the gateway's never shows a task started before it was submitted", () => {
    const early = { ...success, at: 995, started_at: 990 }
    const record = toRecord(replay([pending, { ...started, at: 990 }, early]))
    expect(record).toMatchObject({
      submitted_at: new Date(1000).toISOString(),
      started_at: new Date(1000).toISOString(),
      finished_at: new Date(1000).toISOString(),
    })
  })

  test("times in order are shown as they are", () => {
    expect(toRecord(replay([pending, started, success]))).toMatchObject({
      submitted_at: new Date(1000).toISOString(),
      started_at: new Date(1010).toISOString(),
      finished_at: new Date(1020).toISOString(),
    })
  })
})

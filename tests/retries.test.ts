import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { TaskEvent } from "../shared/contracts.ts"
import { eventually, type Stack, startStack, submitFlaky, waitForFinal, watchEvents } from "./support.ts"

// Retries 100, 200, 400 ms: short enough for a test, long enough to see them grow.
const RETRY_BASE_DELAY_MS = 100
const MAX_RETRIES = 3

let stack: Stack
beforeAll(async () => {
  stack = await startStack("retries", {
    ENABLE_TEST_TASKS: "true",
    RETRY_BASE_DELAY_MS: String(RETRY_BASE_DELAY_MS),
    MAX_RETRIES: String(MAX_RETRIES),
    ADMIN_TOKEN: "s3cret-admin-token-of-at-least-32-chars",
  })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const admin = { authorization: "Bearer s3cret-admin-token-of-at-least-32-chars" }

const ofTask = (taskId: string, state: TaskEvent["state"]) => (events: TaskEvent[]) =>
  events.filter((e) => e.task_id === taskId && e.state === state)

describe("a failing task is retried with growing delays held by the broker", () => {
  test("failing twice, then succeeding, ends SUCCESS with attempts = 3 and growing delays", async () => {
    await using watch = await watchEvents(stack)
    const taskId = await submitFlaky(stack, { fail_times: 2 })
    const final = await waitForFinal(stack, taskId)
    expect(final).toMatchObject({
      status: "SUCCESS",
      attempts: 3,
      error: null,
      result: { succeeded_on_attempt: 3 },
    })

    const events = await watch.until((all) => ofTask(taskId, "SUCCESS")(all).length === 1)
    const retries = ofTask(taskId, "RETRY")(events) as Extract<TaskEvent, { state: "RETRY" }>[]
    // Each attempt's start, from the event that ended it (a STARTED event is dropped when the outcome follows
    // in the same turn).
    const ends = [...retries, ...ofTask(taskId, "SUCCESS")(events)] as Extract<
      TaskEvent,
      { started_at: number }
    >[]
    const starts = ends.map((e) => e.started_at)
    expect(retries.map((e) => e.attempt)).toEqual([1, 2])
    expect(retries.map((e) => e.error)).toEqual([
      "Error: planned failure on attempt 1 of the first 2",
      "Error: planned failure on attempt 2 of the first 2",
    ])
    // Planned waits: equal jitter over 100 ms, then over 200 ms; the broker never delivers a retry early.
    const planned = retries.map((retry) => retry.retry_at - retry.at)
    const waited = retries.map((retry, i) => (starts[i + 1] ?? 0) - retry.at)
    console.log("retry waits planned / actual (ms):", planned, waited)
    expect(planned[0]).toBeWithin(RETRY_BASE_DELAY_MS / 2, RETRY_BASE_DELAY_MS + 1)
    expect(planned[1]).toBeWithin(RETRY_BASE_DELAY_MS, 2 * RETRY_BASE_DELAY_MS + 1)
    waited.forEach((wait, i) => {
      expect(wait).toBeGreaterThanOrEqual(planned[i] ?? Number.POSITIVE_INFINITY)
    })
  })

  test("a NonRetryableError skips the retries and dead-letters the task", async () => {
    const taskId = await submitFlaky(stack, { fail_times: 5, non_retryable: true })
    const final = await waitForFinal(stack, taskId)
    expect(final).toMatchObject({
      status: "FAILURE",
      attempts: 1,
      error: "NonRetryableError: planned failure on attempt 1 of the first 5",
    })
    // FAILURE is published before the dead letter: the listing has it a moment later.
    await eventually(async () => {
      const listing = await (await fetch(stack.url("/admin/dead-letters/failed"), { headers: admin })).json()
      expect(JSON.stringify(listing)).toContain(taskId)
    })
  })
})

describe("a task out of retries ends FAILURE in the failed dead-letter queue, and a replay brings it back", () => {
  test("fails every attempt, is listed with its reason, and a replay runs it again to SUCCESS", async () => {
    // Attempts 1–4 fail (one try plus MAX_RETRIES); the replay's attempt 5 fails, attempt 6 succeeds.
    const taskId = await submitFlaky(stack, { fail_times: 5 })
    const failed = await waitForFinal(stack, taskId)
    expect(failed).toMatchObject({ status: "FAILURE", attempts: MAX_RETRIES + 1, result: null })
    expect(failed.error).toBe("Error: planned failure on attempt 4 of the first 5")

    const res = await fetch(stack.url("/admin/dead-letters/failed?limit=1000"), { headers: admin })
    expect(res.status).toBe(200)
    const { messages } = (await res.json()) as { messages: { body: string; reason: string }[] }
    const letter = messages.find((m) => m.body.includes(taskId))
    expect(letter?.reason).toBe("Error: planned failure on attempt 4 of the first 5")

    const replay = await fetch(stack.url("/admin/dead-letters/failed/replay"), {
      method: "POST",
      headers: admin,
    })
    expect(replay.status).toBe(200)
    expect(((await replay.json()) as { task_ids: string[] }).task_ids).toContain(taskId)

    const again = await waitForFinal(stack, taskId)
    expect(again).toMatchObject({
      status: "SUCCESS",
      attempts: 6,
      error: null,
      result: { succeeded_on_attempt: 6 },
    })
  })

  test("admin endpoints need the token", async () => {
    const res = await fetch(stack.url("/admin/dead-letters/failed"))
    expect(res.status).toBe(401)
    expect(res.headers.get("content-type")).toBe("application/problem+json")
  })
})

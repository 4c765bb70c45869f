import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { MAX_EXPIRES_IN_SECONDS, MAX_TIME_LIMIT_SECONDS, type TaskRecord } from "../shared/contracts.ts"
import { isoTime, type Stack, startStack, taskBody, waitForFinal, watchEvents } from "./support.ts"

// One task at a time per queue, so that a sleeping task holds the ones behind it in the broker.
let stack: Stack
beforeAll(async () => {
  stack = await startStack("deadlines", {
    ENABLE_TEST_TASKS: "true",
    WORKER_PREFETCH: "1",
    MAX_RETRIES: "1",
    RETRY_BASE_DELAY_MS: "50",
  })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

async function post(path: string, body: unknown): Promise<Response> {
  return fetch(stack.url(path), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  })
}

async function submit(path: string, body: unknown): Promise<string> {
  const res = await post(path, body)
  expect(res.status).toBe(202)
  return (await taskBody(res)).task_id
}

describe("expires_in: a task not started by then ends EXPIRED without running", () => {
  test("a task that waits in the queue past its deadline ends EXPIRED, and never starts", async () => {
    await using watch = await watchEvents(stack)
    const blocker = await submit("/test/flaky", { sleep_ms: 600 })
    const late = await submit("/test/flaky", { expires_in: 0.2 })
    const final = await waitForFinal(stack, late)
    expect(final).toEqual({
      task_id: late,
      kind: "test:flaky",
      status: "EXPIRED",
      result: null,
      error: expect.stringMatching(/^expired at \S+Z before attempt 1 started$/),
      attempts: 0,
      group_id: null,
      submitted_at: isoTime,
      started_at: null,
      finished_at: isoTime,
    } satisfies TaskRecord)
    expect(Date.parse(final.finished_at ?? "")).toBeGreaterThanOrEqual(
      Date.parse(final.submitted_at ?? "") + 200,
    )
    expect((await waitForFinal(stack, blocker)).status).toBe("SUCCESS")
    // Events of different states travel in different messages, so only the set is certain.
    const ofLate = watch.events.filter((event) => event.task_id === late).map((event) => event.state)
    expect(ofLate.toSorted()).toEqual(["EXPIRED", "PENDING"])
  })

  test("a task that starts before its deadline runs as usual", async () => {
    const res = await post("/polarities?wait=10", { review: "lovely", expires_in: 60 })
    expect(res.status).toBe(200)
    expect(await taskBody(res)).toMatchObject({ status: "SUCCESS", attempts: 1 })
  })

  test("a retry due after the deadline expires instead of running", async () => {
    const taskId = await submit("/test/flaky", { fail_times: 1, sleep_ms: 300, expires_in: 0.2 })
    expect(await waitForFinal(stack, taskId)).toMatchObject({
      status: "EXPIRED",
      attempts: 1,
      result: null,
      error: expect.stringMatching(/before attempt 2 started$/),
    })
  })
})

describe("time_limit: an attempt that runs past it fails with TimeLimitExceeded and is retried", () => {
  test("an asynchronous wait is cut at the limit, retried, and fails when the retries are spent", async () => {
    await using watch = await watchEvents(stack)
    const taskId = await submit("/test/flaky", { sleep_ms: 10_000, time_limit: 0.1 })
    const final = await waitForFinal(stack, taskId)
    expect(final).toMatchObject({
      status: "FAILURE",
      attempts: 2,
      error: "TimeLimitExceeded: the attempt ran past its time limit of 100 ms",
    })
    const states = watch.events.filter((event) => event.task_id === taskId).map((event) => event.state)
    expect(states.toSorted()).toEqual(["FAILURE", "PENDING", "RETRY", "STARTED", "STARTED"])
    // Cut at the limit, not after the 10 s sleep.
    expect(Date.parse(final.finished_at ?? "") - Date.parse(final.started_at ?? "")).toBeLessThan(1000)
  })

  test("a document is stopped between sentences", async () => {
    const document = "Good day. ".repeat(1999)
    const taskId = await submit("/polarities/documents", { document, time_limit: 0.001 })
    expect(await waitForFinal(stack, taskId)).toMatchObject({
      kind: "document:sentences",
      status: "FAILURE",
      attempts: 2,
      result: null,
      error: "TimeLimitExceeded: the attempt ran past its time limit of 1 ms",
    })
  })

  test("an attempt within its limit succeeds", async () => {
    const res = await post("/polarities/documents?wait=10", { document: "Good. Bad.", time_limit: 10 })
    expect(await taskBody(res)).toMatchObject({ status: "SUCCESS", attempts: 1 })
  })
})

describe("bad deadlines are a 422 problem naming the field", () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ["expires_in of 0", { expires_in: 0 }, "expires_in"],
    ["a negative expires_in", { expires_in: -5 }, "expires_in"],
    ["expires_in as a string", { expires_in: "soon" }, "expires_in"],
    ["expires_in over the maximum", { expires_in: MAX_EXPIRES_IN_SECONDS + 1 }, "expires_in"],
    ["time_limit of 0", { time_limit: 0 }, "time_limit"],
    ["time_limit over the maximum", { time_limit: MAX_TIME_LIMIT_SECONDS + 1 }, "time_limit"],
    ["time_limit as null", { time_limit: null }, "time_limit"],
  ]
  for (const [label, deadlines, field] of cases) {
    test(`rejects ${label}`, async () => {
      for (const [path, body] of [
        ["/polarities", { review: "fine" }],
        ["/polarities/documents", { document: "Fine." }],
      ] as const) {
        const res = await post(path, { ...body, ...deadlines })
        expect(res.headers.get("content-type")).toBe("application/problem+json")
        const max = field === "expires_in" ? MAX_EXPIRES_IN_SECONDS : MAX_TIME_LIMIT_SECONDS
        expect(await res.json()).toEqual({
          type: "about:blank",
          title: "Unprocessable Entity",
          status: 422,
          detail: `${field}: ${field} must be a number of seconds above 0 and at most ${max}`,
        })
      }
    })
  }
})

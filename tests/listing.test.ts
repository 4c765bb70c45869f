import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { TaskLookup, TaskPage } from "../shared/contracts.ts"
import {
  expectProblem,
  postReview,
  type Stack,
  startStack,
  submitFlaky,
  taskBody,
  waitForFinal,
} from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("listing", { ENABLE_TEST_TASKS: "true", MAX_RETRIES: "0" })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

async function list(query: string): Promise<TaskPage> {
  const res = await fetch(stack.url(`/polarities/tasks${query}`))
  expect(res.status).toBe(200)
  expect(res.headers.get("content-type")).toStartWith("application/json")
  return (await res.json()) as TaskPage
}

async function submitReviews(count: number): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < count; i++) ids.push((await taskBody(await postReview(stack, `review ${i}`))).task_id)
  return ids
}

describe("GET /polarities/tasks pages through tasks, newest first", () => {
  test("an empty store lists nothing, with no next page", async () => {
    expect(await list("")).toEqual({ tasks: [], next_cursor: null })
  })

  test("a task appears as soon as it is accepted", async () => {
    const [taskId] = await submitReviews(1)
    const { tasks } = await list("?limit=1")
    expect(tasks.map((task) => task.task_id)).toEqual([taskId ?? ""])
  })

  test("follows next_cursor through every page, newest first, and stops on the last", async () => {
    const submitted = await submitReviews(5)
    const older = (await list("?limit=100")).tasks.map((task) => task.task_id)
    const seen: string[] = []
    let cursor: string | null = ""
    const sizes: number[] = []
    while (cursor !== null) {
      const page = await list(`?limit=2${cursor ? `&cursor=${cursor}` : ""}`)
      sizes.push(page.tasks.length)
      seen.push(...page.tasks.map((task) => task.task_id))
      cursor = page.next_cursor
    }
    expect(seen).toEqual(older)
    expect(seen.slice(0, 5)).toEqual(submitted.toReversed())
    expect(sizes).toEqual([2, 2, 2])
  })

  test("filters by status", async () => {
    const failed = await fetch(stack.url("/test/flaky?wait=10"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ fail_times: 1 }),
    }).then(taskBody)
    expect(failed.status).toBe("FAILURE")
    const done = await submitReviews(2)
    await Promise.all(done.map((id) => waitForFinal(stack, id)))

    const failures = await list("?status=FAILURE")
    expect(failures).toEqual({ tasks: [failed], next_cursor: null })
    const successes = await list("?status=SUCCESS&limit=100")
    expect(successes.tasks.slice(0, 2).map((task) => task.task_id)).toEqual(done.toReversed())
    expect(successes.tasks.every((task) => task.status === "SUCCESS")).toBe(true)
  })
})

describe("GET /polarities/tasks rejects bad queries with a 422 problem", () => {
  const cases: [string, string, string][] = [
    ["a limit of 0", "?limit=0", "limit: limit must be a whole number from 1 to 100"],
    ["a limit over 100", "?limit=101", "limit: limit must be a whole number from 1 to 100"],
    ["a limit that is not a number", "?limit=ten", "limit: limit must be a whole number from 1 to 100"],
    [
      "an unknown status",
      "?status=DONE",
      'status: status must be one of SCHEDULED, PENDING, STARTED, RETRY, SUCCESS, FAILURE, EXPIRED, REVOKED, not "DONE"',
    ],
    ["a made-up cursor", "?cursor=bm9wZQ", 'cursor: "bm9wZQ" is not a cursor this API gave out'],
  ]
  for (const [label, query, detail] of cases) {
    test(`rejects ${label}`, async () => {
      const res = await fetch(stack.url(`/polarities/tasks${query}`))
      expect(res.headers.get("content-type")).toBe("application/problem+json")
      expect(await res.json()).toEqual({
        type: "about:blank",
        title: "Unprocessable Entity",
        status: 422,
        detail,
      })
    })
  }
})

function lookup(body: unknown, query = ""): Promise<Response> {
  return fetch(stack.url(`/polarities/tasks/lookup${query}`), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  })
}

describe("POST /polarities/tasks/lookup reads many tasks in one request", () => {
  test("finds tasks the moment they are accepted, in the order asked, with null for an unknown id", async () => {
    const ids = await submitReviews(3)
    const unknown = Bun.randomUUIDv7()
    const [first = "", second = "", third = ""] = ids
    // Each id once: the same id twice is a 422 (tests/limits.test.ts).
    const asked = [third, unknown, first, second]
    const res = await lookup({ task_ids: asked })
    expect(res.status).toBe(200)
    const { tasks } = (await res.json()) as TaskLookup
    expect(tasks.map((task) => task?.task_id ?? null)).toEqual(
      asked.map((id) => (id === unknown ? null : id)),
    )
  })

  test("answers each task as GET does, results included once final", async () => {
    const ids = await submitReviews(3)
    const finals = await Promise.all(ids.map((id) => waitForFinal(stack, id)))
    const { tasks } = (await (await lookup({ task_ids: ids })).json()) as TaskLookup
    expect(tasks).toEqual(finals)
    expect(tasks.map((task) => task?.status)).toEqual(["SUCCESS", "SUCCESS", "SUCCESS"])
  })

  test("?wait= holds the answer until every task found is final; an unknown id does not hold it", async () => {
    // The second ends first: the hold must notice that it ended while it waited on the first.
    const slow = await Promise.all([
      submitFlaky(stack, { sleep_ms: 300 }),
      submitFlaky(stack, { sleep_ms: 200 }),
    ])
    const [review] = await submitReviews(1)
    const asked = [...slow, Bun.randomUUIDv7(), review ?? ""]
    const sentAt = Date.now()
    const res = await lookup({ task_ids: asked }, "?wait=30")
    expect(res.status).toBe(200)
    const { tasks } = (await res.json()) as TaskLookup
    expect(tasks.map((task) => task?.status ?? null)).toEqual(["SUCCESS", "SUCCESS", null, "SUCCESS"])
    // Answered when the last task ended, not when the wait ran out.
    expect(Date.now() - sentAt).toBeLessThan(15_000)
  })

  test("?wait= answers when the time is up, with the tasks as they are then", async () => {
    const sleeper = await submitFlaky(stack, { sleep_ms: 3000 })
    const [review = ""] = await submitReviews(1)
    await waitForFinal(stack, review)
    const res = await lookup({ task_ids: [sleeper, review] }, "?wait=0.3")
    expect(res.status).toBe(200)
    const { tasks } = (await res.json()) as TaskLookup
    expect(tasks.map((task) => task?.status)).toEqual([
      expect.stringMatching(/^(PENDING|STARTED)$/),
      "SUCCESS",
    ])
  })

  test("takes up to 1000 ids", async () => {
    const ids = Array.from({ length: 1000 }, () => Bun.randomUUIDv7())
    const res = await lookup({ task_ids: ids })
    expect(res.status).toBe(200)
    expect(((await res.json()) as TaskLookup).tasks).toEqual(ids.map(() => null))
  })

  const cases: [string, unknown, number, string | RegExp][] = [
    ["no ids", { task_ids: [] }, 422, "task_ids: task_ids must hold at least one id"],
    [
      "1001 ids",
      { task_ids: Array.from({ length: 1001 }, () => Bun.randomUUIDv7()) },
      422,
      "task_ids: task_ids must hold at most 1000 ids",
    ],
    ["an id that is not a UUID", { task_ids: [Bun.randomUUIDv7(), "42"] }, 422, "task_ids.1: must be a UUID"],
    ["a body without task_ids", { ids: [] }, 422, /task_ids/],
    ["a body that is not JSON", "{task_ids", 400, /JSON/],
  ]
  for (const [label, body, status, detail] of cases) {
    test(`rejects ${label} with a ${status} problem`, async () => {
      await expectProblem(await lookup(body), status, detail)
    })
  }

  test("rejects a wait over 30 s with a 422 problem", async () => {
    const res = await lookup({ task_ids: [Bun.randomUUIDv7()] }, "?wait=31")
    await expectProblem(res, 422, 'wait: wait must be a number of seconds from 0 to 30, not "31"')
  })
})

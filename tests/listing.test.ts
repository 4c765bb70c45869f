import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { TaskPage } from "../shared/contracts.ts"
import { postReview, type Stack, startStack, taskBody, waitForFinal } from "./support.ts"

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
      'status: status must be one of PENDING, STARTED, RETRY, SUCCESS, FAILURE, EXPIRED, REVOKED, not "DONE"',
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

// What a client gets when the status store answers a query with an error rather than a result: a 503 to retry,
// never a 500. The store here is real, on PostgreSQL, and its tasks table is renamed away for a moment, so that
// every query of it fails in the database, as when the database is in trouble.
import { afterAll, beforeAll, expect, test } from "bun:test"
import postgres from "postgres"
import { postReview, type Stack, startStack, taskBody } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("store-errors", {}, {}, { backend: "postgres" })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

test("a read the store fails to answer is a 503 problem+json with Retry-After; answered again once it can", async () => {
  const { task_id } = await taskBody(await postReview(stack, "lovely", "?wait=10"))
  const sql = postgres(stack.database?.url ?? "", { max: 1, onnotice: () => {} })
  try {
    await sql`ALTER TABLE tasks RENAME TO tasks_away`
    const failed = await fetch(`${stack.gateway.url}/polarities/tasks/${task_id}`)
    const problem = await failed.json()
    expect({
      status: failed.status,
      type: failed.headers.get("content-type"),
      retryAfter: failed.headers.get("retry-after"),
      problem,
    }).toEqual({
      status: 503,
      type: "application/problem+json",
      retryAfter: "2",
      problem: expect.objectContaining({
        status: 503,
        detail: expect.stringMatching(/^the status store could not answer \(.*tasks.*\); retry shortly$/),
      }),
    })
  } finally {
    await sql`ALTER TABLE IF EXISTS tasks_away RENAME TO tasks`
    await sql.end()
  }
  const answered = await fetch(`${stack.gateway.url}/polarities/tasks/${task_id}`)
  expect({ status: answered.status, task: await answered.json() }).toEqual({
    status: 200,
    task: expect.objectContaining({ task_id, status: "SUCCESS" }),
  })
})

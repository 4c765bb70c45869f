// Three status-store replicas on one PostgreSQL database, consuming the same events and RPC queues: a query held on
// one replica must see what another applied. Their held queries read again only every minute here
// (WAIT_RECHECK_MS), so that an answer in time can only come from another replica's notice. Three, not two: a
// read-your-writes barrier then also waits for a replica that neither published nor committed it (barriers.ts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { TaskRecord } from "../shared/contracts.ts"
import { askStore, type Stack, sseReader, startStack, taskBody } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack(
    "replica-waits",
    { WAIT_RECHECK_MS: "60000", MAX_WAITS_PER_CALLER: "1000" },
    {},
    { backend: "postgres", storeReplicas: 3 },
  )
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const post = (path: string, body: unknown) =>
  fetch(stack.url(path), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  })

/**
 * Any replica takes each query and each event, so with dozens of each, queries held on one replica and finished
 * by another's events are certain (the chance that none is is below 2^-40).
 */
const MANY = 90

describe("a query held on one replica, the events applied by another", () => {
  test("POST ?wait= answers every task final", async () => {
    const answers = await Promise.all(
      Array.from({ length: MANY }, (_, i) => post("/polarities?wait=20", { review: `lovely day ${i}` })),
    )
    const records = await Promise.all(answers.map(taskBody))
    expect(answers.map((res) => res.status)).toEqual(answers.map(() => 200))
    expect(records.map((record) => record.status)).toEqual(records.map(() => "SUCCESS"))
  })

  test("a batch's ?wait= and a lookup's ?wait= answer with every task final", async () => {
    const batches = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        post("/polarities/batch?wait=20", { reviews: [`good ${i}`, `bad ${i}`, `fine ${i}`] }),
      ),
    )
    const groups = (await Promise.all(batches.map((res) => res.json()))) as {
      status: string
      results: TaskRecord[] | null
    }[]
    expect(batches.map((res) => res.status)).toEqual(batches.map(() => 200))
    expect(groups.map((group) => group.results?.length)).toEqual(groups.map(() => 3))

    const submitted = await Promise.all(
      Array.from({ length: MANY }, (_, i) => post("/polarities", { review: `a table ${i}` })),
    )
    const taskIds = (await Promise.all(submitted.map(taskBody))).map((record) => record.task_id)
    const lookup = await post("/polarities/tasks/lookup?wait=20", { task_ids: taskIds })
    expect(lookup.status).toBe(200)
    const { tasks } = (await lookup.json()) as { tasks: TaskRecord[] }
    expect(tasks.map((task) => [task.task_id, task.status])).toEqual(taskIds.map((id) => [id, "SUCCESS"]))
  })

  test("an SSE stream follows its task to SUCCESS", async () => {
    const submitted = await Promise.all(
      Array.from({ length: 20 }, (_, i) => post("/polarities", { review: `so-so ${i}` })),
    )
    const taskIds = (await Promise.all(submitted.map(taskBody))).map((record) => record.task_id)
    const lastEvents = await Promise.all(
      taskIds.map(async (taskId) => {
        const events = sseReader(await fetch(stack.url(`/polarities/tasks/${taskId}/events`)))
        for (;;) {
          const { event } = await events.next()
          if (event === "SUCCESS" || event === "FAILURE") {
            await events.cancel()
            return event
          }
        }
      }),
    )
    expect(lastEvents).toEqual(taskIds.map(() => "SUCCESS"))
  })
})

describe("read-your-writes across replicas", () => {
  test("a query for an unknown id reads what is queued, whichever replica takes its barrier, and answers null", async () => {
    const answers = await Promise.all(
      Array.from({ length: MANY }, () => askStore(stack, { op: "get", task_id: crypto.randomUUID() })),
    )
    expect(answers).toEqual(answers.map(() => ({ task: null })))
  })

  test("a task is found from the moment its submission was answered, on either replica", async () => {
    const submitted = await Promise.all(
      Array.from({ length: MANY }, (_, i) => post("/polarities", { review: `quick ${i}` })),
    )
    const taskIds = (await Promise.all(submitted.map(taskBody))).map((record) => record.task_id)
    const reads = await Promise.all(taskIds.map((id) => fetch(stack.url(`/polarities/tasks/${id}`))))
    expect(reads.map((res) => res.status)).toEqual(reads.map(() => 200))
  })
})

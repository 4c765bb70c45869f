// Result expiry end to end (RESULT_EXPIRES=2s), on each store backend: a finished task is readable, then answers
// 410 everywhere it is read; a task not final stays whatever its age; a late copy of an expired task's events is
// dead-lettered and does not bring it back, whether the expiry is EVENT_HOLD_SECONDS old or younger; new tasks
// flow while a big expiry runs.
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { v7 as uuidv7 } from "uuid"
import { MessageType, type TaskRecord } from "../shared/contracts.ts"
import { eventRoutingKey } from "../shared/topology.ts"
import { createTestDatabase, type TestDatabase } from "./postgres.ts"
import { STORE_BACKENDS, type StoreBackend } from "./store-backends.ts"
import {
  eventually,
  expectProblem,
  postReview,
  rawChannel,
  type Stack,
  startStack,
  takeMessages,
  taskBody,
  waitForFinal,
  watchEvents,
} from "./support.ts"

/** The stack of the backend under test (each describe starts its own, in turn). */
let stack: Stack

const gone = (kind: "task" | "group", id: string) =>
  `${kind} ${id} has expired: the status store deletes a task's result RESULT_EXPIRES after it ends (1 day by default)`

/** Submit a review and wait for it to be final. */
async function finishedTask(review = "A lovely day"): Promise<TaskRecord> {
  const { task_id: taskId } = await taskBody(await postReview(stack, review))
  return waitForFinal(stack, taskId)
}

async function lookup(taskIds: string[]): Promise<{ tasks: (TaskRecord | null)[]; expired?: string[] }> {
  const res = await fetch(stack.url("/polarities/tasks/lookup"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ task_ids: taskIds }),
  })
  expect(res.status).toBe(200)
  return (await res.json()) as { tasks: (TaskRecord | null)[]; expired?: string[] }
}

/** A batch of reviews, submitted: its group and task ids. */
async function submitBatch(reviews: string[]): Promise<{ group_id: string; task_ids: string[] }> {
  const res = await fetch(stack.url("/polarities/batch"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ reviews }),
  })
  expect(res.status).toBe(202)
  return (await res.json()) as { group_id: string; task_ids: string[] }
}

/** Resolves once the task reads as expired through GET. */
const expiredSoon = (taskId: string) =>
  eventually(
    async () => expect((await fetch(stack.url(`/polarities/tasks/${taskId}`))).status).toBe(410),
    20_000,
  )

/** The describe's stack, with RESULT_EXPIRES=2s and `env`, on the backend under test (PostgreSQL: a database of its own). */
function useStack(backend: StoreBackend, topic: string, env: Record<string, string> = {}): void {
  let database: TestDatabase | undefined
  beforeAll(async () => {
    database = backend === "postgres" ? await createTestDatabase(topic) : undefined
    stack = await startStack(topic, {
      RESULT_EXPIRES: "2s",
      ...env,
      ...(database && { DATABASE_URL: database.url }),
    })
  })
  afterAll(async () => {
    await stack?.[Symbol.asyncDispose]()
    await database?.[Symbol.asyncDispose]()
  })
}

describe.each(STORE_BACKENDS)("after RESULT_EXPIRES, on %s", (backend) => {
  useStack(backend, "retention", {
    // Small batches, so that a few thousand tasks take many of them: the flow test submits in between.
    RESULT_EXPIRY_BATCH: "100",
    RESULT_EXPIRY_PAUSE_MS: "20",
    // Expiries refuse late events once this old: the late copies below come seconds after.
    EVENT_HOLD_SECONDS: "1",
  })

  test("a finished task reads 410 through GET, its event stream, lookup, DELETE, retry and the dashboard's detail", async () => {
    const record = await finishedTask()
    const taskId = record.task_id
    expect(record.status).toBe("SUCCESS")
    expect((await fetch(stack.url(`/dashboard/api/tasks/${taskId}`))).status).toBe(200)
    await expiredSoon(taskId)
    await expectProblem(await fetch(stack.url(`/polarities/tasks/${taskId}`)), 410, gone("task", taskId))
    await expectProblem(
      await fetch(stack.url(`/polarities/tasks/${taskId}/events`)),
      410,
      gone("task", taskId),
    )
    await expectProblem(
      await fetch(stack.url(`/polarities/tasks/${taskId}`), { method: "DELETE" }),
      410,
      gone("task", taskId),
    )
    await expectProblem(await fetch(stack.url(`/dashboard/api/tasks/${taskId}`)), 410, gone("task", taskId))
    await expectProblem(
      await fetch(stack.url(`/polarities/tasks/${taskId}/retry`), { method: "POST" }),
      410,
      gone("task", taskId),
    )
    const unknown = uuidv7()
    expect(await lookup([taskId, unknown])).toEqual({ tasks: [null, null], expired: [taskId] })
  })

  test("an id minted moments ago that the store never held is still a 404", async () => {
    const unknown = uuidv7()
    await expectProblem(
      await fetch(stack.url(`/polarities/tasks/${unknown}`)),
      404,
      `no task with id ${unknown}`,
    )
  })

  test("a batch's group reads 410 once its tasks expired", async () => {
    const { group_id: groupId, task_ids: taskIds } = await submitBatch(["Good", "Bad"])
    const final = await fetch(stack.url(`/polarities/groups/${groupId}?wait=10`))
    expect(((await final.json()) as { status: string }).status).toBe("SUCCESS")
    for (const taskId of taskIds) await expiredSoon(taskId)
    await expectProblem(await fetch(stack.url(`/polarities/groups/${groupId}`)), 410, gone("group", groupId))
  })

  test("a task that is not final stays, however old", async () => {
    const delayed = await fetch(stack.url("/polarities"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ review: "Much later", countdown: 3600 }),
    })
    const { task_id: scheduled } = await taskBody(delayed)
    // A task finished after it was submitted expires; by then the scheduled one is older than RESULT_EXPIRES.
    const after = await finishedTask()
    await expiredSoon(after.task_id)
    const read = await fetch(stack.url(`/polarities/tasks/${scheduled}`))
    expect(read.status).toBe(200)
    expect((await taskBody(read)).status).toBe("SCHEDULED")
    expect((await fetch(stack.url(`/polarities/tasks/${scheduled}`), { method: "DELETE" })).status).toBe(200)
  })

  test("a late copy of an expired task's events is dead-lettered as expired and does not bring it back", async () => {
    await using watch = await watchEvents(stack)
    const { task_id: taskId } = await finishedTask()
    const events = await watch.until((seen) =>
      seen.some((e) => e.task_id === taskId && e.state === "SUCCESS"),
    )
    const ofTask = events.filter((e) => e.task_id === taskId)
    await expiredSoon(taskId)
    // Late events are refused once the expiry is EVENT_HOLD_SECONDS old (1 s here): a task that ends after this one
    // expired, expires RESULT_EXPIRES (2 s) later, in the batch that settles this one's expiry.
    await expiredSoon((await finishedTask("Ends later")).task_id)
    await using amqp = await rawChannel()
    const why = "its task is not held and was submitted before results that have expired: it expired too"
    // One at a time, so that each is a commit and a dead letter of its own.
    for (const event of ofTask) {
      const [reason] = await poisonAfter(async () => {
        await amqp.channel.basicPublish(
          stack.names.eventsExchange,
          eventRoutingKey(event.state),
          JSON.stringify({ events: [event] }),
          { type: MessageType.taskEvents },
        )
      }, 1)
      expect(reason).toBe(`1 event(s) refused: ${event.state} of ${taskId}: ${why}`)
    }
    expect(ofTask.map((event) => event.state)).toContain("PENDING")
    await expectProblem(await fetch(stack.url(`/polarities/tasks/${taskId}`)), 410, gone("task", taskId))
  })

  test("new tasks are accepted and finish while thousands of results expire in small batches", async () => {
    const reviews = Array.from({ length: 100 }, (_, i) => `Review number ${i}, fine`)
    const batches: { group_id: string; task_ids: string[] }[] = []
    await using watch = await watchEvents(stack)
    for (let i = 0; i < 30; i++) batches.push(await submitBatch(reviews))
    // Watched on the exchange rather than read: the first groups may have expired before the last one ends.
    const submitted = new Set(batches.flatMap((batch) => batch.task_ids))
    const succeeded = new Set<string>()
    await watch.until((events) => {
      for (const { task_id: taskId, state } of events.splice(0))
        if (state === "SUCCESS" && submitted.has(taskId)) succeeded.add(taskId)
      return succeeded.size === submitted.size
    }, 60_000)
    const allGone = async () => {
      for (const { task_ids: taskIds } of batches) {
        if ((await lookup(taskIds)).expired?.length !== taskIds.length) return false
      }
      return true
    }
    // While the 3,000 go, a hundred at a time: each new task is taken, applied and read back.
    const during: TaskRecord[] = []
    do during.push(await finishedTask(`During the expiry ${during.length}`))
    while (!(await allGone()))
    expect(during.map((record) => record.status)).toEqual(during.map(() => "SUCCESS"))
    for (const { group_id: groupId } of batches) {
      await expectProblem(
        await fetch(stack.url(`/polarities/groups/${groupId}`)),
        410,
        gone("group", groupId),
      )
    }
  }, 120_000)
})

describe.each(STORE_BACKENDS)("before an expiry is EVENT_HOLD_SECONDS old, on %s", (backend) => {
  // EVENT_HOLD_SECONDS as deployed: the horizon refuses late events 300 s after an expiry, not before.
  useStack(backend, "retention-lately")

  test("a redelivered copy of an expired task's PENDING is dead-lettered, and the task still reads 410", async () => {
    await using watch = await watchEvents(stack)
    const { task_id: taskId } = await finishedTask()
    const events = await watch.until((seen) =>
      seen.some((e) => e.task_id === taskId && e.state === "SUCCESS"),
    )
    const submitted = events.find((e) => e.task_id === taskId && e.state === "PENDING")
    await expiredSoon(taskId)
    await using amqp = await rawChannel()
    const [reason] = await poisonAfter(async () => {
      await amqp.channel.basicPublish(
        stack.names.eventsExchange,
        eventRoutingKey("PENDING"),
        JSON.stringify({ events: [submitted] }),
        { type: MessageType.taskEvents },
      )
    }, 1)
    expect(reason).toBe(
      `1 event(s) refused: PENDING of ${taskId}: its task's result expired moments ago (RESULT_EXPIRES): a late copy does not bring it back`,
    )
    await expectProblem(await fetch(stack.url(`/polarities/tasks/${taskId}`)), 410, gone("task", taskId))
    expect(await lookup([taskId])).toEqual({ tasks: [null], expired: [taskId] })
  })
})

/** The dead-letter reasons of `count` messages that reach the poison queue after `act`. */
async function poisonAfter(act: () => Promise<void>, count: number): Promise<string[]> {
  const taken = takeMessages(stack.names.poisonQueue, count, 15_000)
  await act()
  return (await taken).map((msg) => String(msg.properties.headers?.["x-dead-letter-reason"]))
}

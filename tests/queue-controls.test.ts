import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { TaskQueueState } from "../shared/contracts.ts"
import {
  eventually,
  expectProblem,
  postBody,
  postReview,
  queueState,
  type Stack,
  startStack,
  taskBody,
} from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("queue-controls")
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const admin = (path: string, method = "POST") => fetch(stack.url(`/admin/queues${path}`), { method })

async function setPaused(queue: string, paused: boolean): Promise<TaskQueueState> {
  const res = await admin(`/${queue}/${paused ? "pause" : "resume"}`)
  expect(res.status).toBe(200)
  return (await res.json()) as TaskQueueState
}

const statusOf = async (taskId: string) => taskBody(await fetch(stack.url(`/polarities/tasks/${taskId}`)))

async function postDocument(body: Record<string, unknown>, query = "") {
  return fetch(stack.url(`/polarities/documents${query}`), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  })
}

/** The worker's counter of revoked tasks it dropped unrun. */
async function skippedByWorker(): Promise<number> {
  const text = await (await fetch(`${stack.worker.url}/metrics`)).text()
  return Number(/^polarity_tasks_revoked_skipped_total\{[^}]*\} (\d+)/m.exec(text)?.[1] ?? 0)
}

describe("pausing a queue", () => {
  test("a paused queue is consumed by no worker, a worker started later included; resumed, its tasks run", async () => {
    const { polarity, default: other } = stack.names.taskQueues
    expect(await setPaused("polarity", true)).toEqual({
      queue: "polarity",
      work_queue: polarity,
      paused: true,
      changed_at: expect.stringMatching(/Z$/),
    })
    await eventually(async () => {
      expect(await queueState(polarity)).toEqual({ messages: 0, consumers: 0 })
      expect((await queueState(stack.names.quarantineQueues.polarity)).consumers).toBe(0)
    })
    const review = await taskBody(await postReview(stack, "lovely"))
    // The document goes through the other queue after the review was queued: the worker has had its chance.
    expect((await taskBody(await postDocument({ document: "A fine day." }, "?wait=10"))).status).toBe(
      "SUCCESS",
    )
    expect((await statusOf(review.task_id)).status).toBe("PENDING")

    // A worker that starts while the queue is paused learns it before it consumes anything.
    await stack.restartWorker()
    expect(await queueState(polarity)).toEqual({ messages: 1, consumers: 0 })
    expect((await queueState(other)).consumers).toBe(1)
    const listed = await (await admin("", "GET")).json()
    expect(listed).toEqual({
      queues: [
        {
          queue: "polarity",
          work_queue: polarity,
          paused: true,
          changed_at: expect.any(String),
          messages: 1,
          consumers: 0,
        },
        { queue: "default", work_queue: other, paused: false, changed_at: null, messages: 0, consumers: 1 },
      ],
    })

    expect((await setPaused("polarity", false)).paused).toBe(false)
    await eventually(async () => expect((await statusOf(review.task_id)).status).toBe("SUCCESS"), 10_000)
    expect((await queueState(polarity)).consumers).toBe(1)
  })

  test("pausing twice and resuming twice change nothing more", async () => {
    const first = await setPaused("default", true)
    const second = await setPaused("default", true)
    expect(second.paused).toBe(true)
    expect(Date.parse(second.changed_at ?? "")).toBeGreaterThan(Date.parse(first.changed_at ?? ""))
    await setPaused("default", false)
    await setPaused("default", false)
    await eventually(async () => expect((await queueState(stack.names.taskQueues.default)).consumers).toBe(1))
    expect((await taskBody(await postDocument({ document: "Fine." }, "?wait=10"))).status).toBe("SUCCESS")
  })
})

describe("purging a queue", () => {
  test("every task of the queue that has not started ends REVOKED (purged): queued, batched and delayed; other queues keep theirs", async () => {
    await setPaused("polarity", true)
    await eventually(async () =>
      expect((await queueState(stack.names.taskQueues.polarity)).consumers).toBe(0),
    )
    const queued: string[] = []
    for (let i = 0; i < 5; i++) queued.push((await taskBody(await postReview(stack, `review ${i}`))).task_id)
    const batch = await fetch(stack.url("/polarities/batch"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ reviews: Array.from({ length: 10 }, (_, i) => `batched ${i}`) }),
    })
    const { task_ids: batched } = (await batch.json()) as { task_ids: string[] }
    // Due in a second: in the delay ladder when the purge runs, in the work queue after it.
    const delayed = (await taskBody(await postBody(stack, { review: "later", countdown: 1 }))).task_id
    const otherQueue = (await taskBody(await postDocument({ document: "Not purged.", countdown: 600 })))
      .task_id

    const res = await admin("/polarity/purge")
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ queue: "polarity", messages_purged: 6, tasks_revoked: 16 })
    for (const taskId of [...queued, ...batched, delayed]) {
      expect(await statusOf(taskId)).toMatchObject({ status: "REVOKED", error: "purged" })
    }
    expect(await queueState(stack.names.taskQueues.polarity)).toEqual({ messages: 0, consumers: 0 })
    expect((await statusOf(otherQueue)).status).toBe("SCHEDULED")

    // The delayed task leaves the ladder after the purge; resumed, the worker drops it unrun.
    await eventually(
      async () => expect((await queueState(stack.names.taskQueues.polarity)).messages).toBe(1),
      10_000,
    )
    const skippedBefore = await skippedByWorker()
    await setPaused("polarity", false)
    await eventually(async () => expect(await skippedByWorker()).toBe(skippedBefore + 1), 10_000)
    expect(await statusOf(delayed)).toMatchObject({ status: "REVOKED", error: "purged" })
    expect((await taskBody(await postReview(stack, "after the purge", "?wait=10"))).status).toBe("SUCCESS")

    // A queue with no message waiting: its delayed task is revoked all the same.
    const res2 = await admin("/default/purge")
    expect(await res2.json()).toEqual({ queue: "default", messages_purged: 0, tasks_revoked: 1 })
    expect(await statusOf(otherQueue)).toMatchObject({ status: "REVOKED", error: "purged" })
  })
})

describe("the queue routes", () => {
  test("an unknown queue is a 404 problem", async () => {
    await expectProblem(
      await admin("/emails/pause"),
      404,
      'no queue "emails": the work queues are polarity and default',
    )
    await expectProblem(await admin("/__proto__/purge"), 404, /no queue "__proto__"/)
  })

  test("they need the admin token where one is set, and are served to the dashboard under its credentials", async () => {
    const token = "t".repeat(32)
    const guarded = await stack.gatewayWith({ ADMIN_TOKEN: token, DASHBOARD_TOKEN: "d".repeat(32) })
    await expectProblem(
      await fetch(guarded("/admin/queues/polarity/pause"), { method: "POST" }),
      401,
      /ADMIN_TOKEN/,
    )
    const listed = await fetch(guarded("/admin/queues"), { headers: { authorization: `Bearer ${token}` } })
    expect(listed.status).toBe(200)
    const dashboard = await fetch(guarded("/dashboard/api/queues"), {
      headers: { authorization: `Bearer ${"d".repeat(32)}` },
    })
    expect(dashboard.status).toBe(200)
    const overview = (await (await fetch(stack.url("/dashboard/api/overview"))).json()) as {
      task_queues: TaskQueueState[]
    }
    expect(overview.task_queues.map(({ queue, paused }) => ({ queue, paused }))).toEqual([
      { queue: "polarity", paused: false },
      { queue: "default", paused: false },
    ])
  })
})

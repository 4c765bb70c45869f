import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { type GroupRecord, MAX_BATCH_SIZE, TASK_STATUSES, type TaskStatus } from "../shared/contracts.ts"
import { expectProblem, rawChannel, type Stack, startStack, taskBody } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("batch", { MAX_BATCH_BODY_BYTES: String(256 * 1024) })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const postBatch = (body: unknown, query = "") =>
  fetch(stack.url(`/polarities/batch${query}`), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  })

const getGroup = (groupId: string, query = "") => fetch(stack.url(`/polarities/groups/${groupId}${query}`))

function counts(of: Partial<Record<TaskStatus, number>>): Record<TaskStatus, number> {
  return Object.fromEntries(TASK_STATUSES.map((status) => [status, of[status] ?? 0])) as Record<
    TaskStatus,
    number
  >
}

describe("POST /polarities/batch?wait= answers with every result, in input order", () => {
  test("three reviews: a group that ends SUCCESS with their results in order", async () => {
    const reviews = [
      "What a wonderful day!",
      "This is terrible, awful and sad.",
      "The parcel came on Tuesday.",
    ]
    const res = await postBatch({ reviews }, "?wait=10")
    expect(res.status).toBe(200)
    const group = (await res.json()) as GroupRecord
    expect(group).toEqual({
      group_id: expect.any(String),
      status: "SUCCESS",
      size: 3,
      counts: counts({ SUCCESS: 3 }),
      task_ids: expect.any(Array),
      results: expect.any(Array),
      submitted_at: expect.any(String),
    })
    expect(res.headers.get("location")).toBe(`/polarities/groups/${group.group_id}`)
    expect(group.results?.map((task) => task.task_id)).toEqual(group.task_ids)
    expect(group.results?.map((task) => [task.kind, task.group_id, task.status])).toEqual(
      reviews.map(() => ["polarity:review", group.group_id, "SUCCESS"]),
    )
    expect(
      group.results?.map((task) => task.result && "polarity" in task.result && task.result.polarity),
    ).toEqual(["positive", "negative", "neutral"])
    // Each task is a task like any other.
    const first = await fetch(stack.url(`/polarities/tasks/${group.task_ids[0]}`)).then(taskBody)
    expect([first]).toEqual(group.results?.slice(0, 1) ?? [])
  })

  test(`a batch of ${MAX_BATCH_SIZE}, the limit, is published at once and finishes in input order`, async () => {
    const reviews = Array.from({ length: MAX_BATCH_SIZE }, (_, i) => (i % 2 ? `awful ${i}` : `lovely ${i}`))
    const startedAt = performance.now()
    const res = await postBatch({ reviews, language: "en" }, "?wait=30")
    console.log(`batch of ${MAX_BATCH_SIZE} scored in ${Math.round(performance.now() - startedAt)} ms`)
    expect(res.status).toBe(200)
    const group = (await res.json()) as GroupRecord
    expect(group).toMatchObject({
      status: "SUCCESS",
      size: MAX_BATCH_SIZE,
      counts: counts({ SUCCESS: MAX_BATCH_SIZE }),
    })
    const polarities = group.results?.map(
      (task) => task.result && "polarity" in task.result && task.result.polarity,
    )
    expect(polarities).toEqual(reviews.map((_, i) => (i % 2 ? "negative" : "positive")))
  })
})

describe("POST /polarities/batch, then GET /polarities/groups/{id}", () => {
  test("answers 202 with the group and its task ids, and the group reads PENDING, then FAILURE when one is revoked", async () => {
    const reviews = ["good", "bad", "fine"]
    const accepted = await stack.restartWorker(async () => {
      const res = await postBatch({ reviews })
      expect(res.status).toBe(202)
      const body = (await res.json()) as { group_id: string; status: string; task_ids: string[] }
      expect(body).toEqual({
        group_id: expect.any(String),
        status: "PENDING",
        task_ids: [expect.any(String), expect.any(String), expect.any(String)],
      })
      expect(res.headers.get("location")).toBe(`/polarities/groups/${body.group_id}`)

      const pending = (await (await getGroup(body.group_id)).json()) as GroupRecord
      expect(pending).toEqual({
        group_id: body.group_id,
        status: "PENDING",
        size: 3,
        counts: counts({ PENDING: 3 }),
        task_ids: body.task_ids,
        results: null,
        submitted_at: expect.any(String),
      })
      const revoked = await fetch(stack.url(`/polarities/tasks/${body.task_ids[1]}`), { method: "DELETE" })
      expect(revoked.status).toBe(200)
      const started = (await (await getGroup(body.group_id)).json()) as GroupRecord
      expect(started).toMatchObject({
        status: "STARTED",
        counts: counts({ PENDING: 2, REVOKED: 1 }),
        results: null,
      })
      return body
    })
    const res = await getGroup(accepted?.group_id ?? "", "?wait=10")
    expect(res.status).toBe(200)
    const final = (await res.json()) as GroupRecord
    expect(final).toMatchObject({ status: "FAILURE", counts: counts({ SUCCESS: 2, REVOKED: 1 }) })
    expect(final.results?.map((task) => task.status)).toEqual(["SUCCESS", "REVOKED", "SUCCESS"])
  })

  test("an unknown group is a 404 problem, and so is an id that is not a UUID", async () => {
    const unknown = crypto.randomUUID()
    await expectProblem(await getGroup(unknown), 404, `no group with id ${unknown}`)
    await expectProblem(await getGroup("nope"), 404, 'no group "nope": group ids are UUIDs')
  })

  test("a bad wait is a 422 problem", async () => {
    await expectProblem(await getGroup(crypto.randomUUID(), "?wait=99"), 422, /^wait: wait must be/)
  })
})

describe("POST /polarities/batch checks every review before it publishes any", () => {
  const cases: [string, unknown, string][] = [
    [
      "an empty review, naming its index",
      { reviews: ["good", "fine", "ok", " "] },
      "reviews.3: review must not be empty",
    ],
    ["a review that is not a string", { reviews: ["good", 7] }, "reviews.1: review must be a string"],
    ["an empty batch", { reviews: [] }, "reviews: reviews must hold at least one review"],
    [
      `more than ${MAX_BATCH_SIZE} reviews`,
      { reviews: Array.from({ length: MAX_BATCH_SIZE + 1 }, () => "x") },
      `reviews: reviews must hold at most ${MAX_BATCH_SIZE} reviews`,
    ],
    [
      "reviews that are not an array",
      { reviews: "good" },
      "reviews: reviews must be an array of review strings",
    ],
    ["a body that is not an object", "good", 'the body must be a JSON object with a "reviews" array'],
    [
      "an unknown language",
      { reviews: ["gut"], language: "de" },
      'language: language must be one of "en", "ru", not "de"',
    ],
    [
      "a bad deadline",
      { reviews: ["good"], expires_in: 0 },
      "expires_in: expires_in must be a number of seconds above 0 and at most 604800",
    ],
  ]
  for (const [label, body, detail] of cases) {
    test(`rejects ${label} with 422`, async () => {
      await expectProblem(await postBatch(body), 422, detail)
    })
  }

  test("rejects a body over MAX_BATCH_BODY_BYTES with 413", async () => {
    const reviews = Array.from({ length: 30 }, () => "x".repeat(9000))
    await expectProblem(await postBatch({ reviews }), 413, "the body is larger than 262144 bytes")
  })

  test("rejects a bad wait with 422 before it publishes anything", async () => {
    await expectProblem(await postBatch({ reviews: ["good"] }, "?wait=-1"), 422, /^wait: wait must be/)
  })
})

describe("a batch the work queue has room for only in part", () => {
  test("records every task of the group, closes the refused ones as FAILURE and says so in a 503", async () => {
    // Confirms of a thousand tasks and events can be slow on a busy machine; a timeout is not what is tested.
    const env = { TASK_QUEUE_MAX_LENGTH: "5", PUBLISH_TIMEOUT_MS: "30000" }
    await using nearlyFull = await startStack("batch-full", env)
    const post = (path: string, body: unknown) =>
      fetch(nearlyFull.url(path), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      })
    // Three messages of 100 tasks, one more than the queue has room for. (With several refusals in flight at once,
    // RabbitMQ 3.10 sometimes never sends some of their nacks: see docs/guarantees.md.)
    const reviews = Array.from({ length: 300 }, (_, i) => `review number ${i}, quite good`)
    let groupId = ""
    await nearlyFull.restartWorker(async () => {
      // Three of the queue's five messages are taken, so two messages of the batch (100 tasks each) fit.
      for (const review of ["one", "two", "three"])
        expect((await post("/polarities", { review })).status).toBe(202)
      await using amqp = await rawChannel()
      const queue = await amqp.channel.queueDeclare(nearlyFull.names.taskQueues.polarity, { passive: true })
      expect(queue.messageCount).toBe(3)
      expect(queue.consumerCount).toBe(0)
      const res = await post("/polarities/batch", { reviews })
      const after = await amqp.channel.queueDeclare(nearlyFull.names.taskQueues.polarity, { passive: true })
      expect(after.messageCount).toBe(5)
      expect(res.status).toBe(503)
      expect(res.headers.get("retry-after")).toBe("2")
      const problem = (await res.json()) as { detail: string }
      expect(problem.detail).toMatch(
        /^the broker refused 100 of the 300 tasks of group [0-9a-f-]{36} \(the queue is full\): they ended FAILURE without running, and the other 200 run; GET \/polarities\/groups\/[0-9a-f-]{36} shows each task\. Retry the refused reviews shortly$/,
      )
      groupId = problem.detail.match(/group ([0-9a-f-]{36})/)?.[1] ?? ""
    })
    const group = (await (
      await fetch(nearlyFull.url(`/polarities/groups/${groupId}?wait=30`))
    ).json()) as GroupRecord
    expect(group.counts).toEqual(counts({ SUCCESS: 200, FAILURE: 100 }))
    expect(group.results?.map((task) => task.kind)).toEqual(reviews.map(() => "polarity:review"))
    expect(group.results?.every((task) => task.group_id === groupId && task.submitted_at !== null)).toBe(true)
    const refused = group.results?.filter((task) => task.status === "FAILURE") ?? []
    expect(new Set(refused.map((task) => task.error))).toEqual(
      new Set(["the broker refused the task (the queue is full); it never ran"]),
    )
    expect(refused.every((task) => task.attempts === 0 && task.started_at === null)).toBe(true)
  })
})

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import {
  isoTime,
  postReview,
  reviewResult,
  type Stack,
  startStack,
  taskBody,
  waitForFinal,
  watchEvents,
} from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("polarity")
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

describe("POST /polarities?wait= (the synchronous path)", () => {
  test("scores a negative review below zero", async () => {
    const res = await postReview(stack, "This is terrible, awful and sad.", "?wait=10")
    expect(res.status).toBe(200)
    const task = await taskBody(res)
    expect(task).toEqual({
      task_id: expect.any(String),
      kind: "polarity:review",
      status: "SUCCESS",
      result: {
        score: -8,
        comparative: -8 / 6,
        polarity: "negative",
        positive: [],
        negative: ["sad", "awful", "terrible"],
        language: "en",
      },
      error: null,
      attempts: 1,
      group_id: null,
      submitted_at: isoTime,
      started_at: isoTime,
      finished_at: isoTime,
    })
    expect(res.headers.get("location")).toBe(`/polarities/tasks/${task.task_id}`)
  })

  test("scores a positive review above zero", async () => {
    const task = await taskBody(
      await postReview(stack, "What a wonderful, lovely little cafe. Great coffee!", "?wait=10"),
    )
    expect(task.status).toBe("SUCCESS")
    expect(reviewResult(task).polarity).toBe("positive")
    expect(reviewResult(task).score).toBeGreaterThan(0)
  })

  test("scores a neutral review as zero", async () => {
    const task = await taskBody(await postReview(stack, "The parcel arrived on Tuesday.", "?wait=10"))
    expect(task.status).toBe("SUCCESS")
    expect(task.result).toEqual({
      score: 0,
      comparative: 0,
      polarity: "neutral",
      positive: [],
      negative: [],
      language: "en",
    })
  })

  test("answers 202 when the wait is zero", async () => {
    const res = await postReview(stack, "fine", "?wait=0")
    expect(res.status).toBe(202)
  })
})

describe("POST /polarities then GET the task (the asynchronous path)", () => {
  test("accepts with 202 and a Location, and the task ends SUCCESS", async () => {
    const res = await postReview(stack, "This is terrible, awful and sad.")
    expect(res.status).toBe(202)
    const accepted = await res.json()
    expect(accepted).toEqual({ task_id: expect.stringMatching(/^[0-9a-f-]{36}$/), status: "PENDING" })
    const { task_id } = accepted as { task_id: string }
    expect(res.headers.get("location")).toBe(`/polarities/tasks/${task_id}`)

    const final = await waitForFinal(stack, task_id)
    expect(final).toMatchObject({ task_id, status: "SUCCESS", attempts: 1 })
    expect(reviewResult(final).score).toBeLessThan(0)
  })

  test("the seed's path /polarities/task/{id} answers the same as /polarities/tasks/{id}", async () => {
    const { task_id } = await taskBody(await postReview(stack, "great", "?wait=10"))
    const [plural, singular] = await Promise.all([
      fetch(stack.url(`/polarities/tasks/${task_id}`)).then(taskBody),
      fetch(stack.url(`/polarities/task/${task_id}`)).then(taskBody),
    ])
    expect(singular).toEqual(plural)
    expect(plural.status).toBe("SUCCESS")
  })

  test("an id that was never issued answers 404, not PENDING", async () => {
    const res = await fetch(stack.url(`/polarities/tasks/${crypto.randomUUID()}`))
    expect(res.status).toBe(404)
    expect(res.headers.get("content-type")).toBe("application/problem+json")
  })
})

describe("events", () => {
  test("a task that starts and ends in one turn sends no separate STARTED: its outcome carries started_at", async () => {
    await using watch = await watchEvents(stack)
    const { task_id } = await taskBody(await postReview(stack, "nice", "?wait=10"))
    const events = await watch.until((all) => all.some((e) => e.task_id === task_id && e.state === "SUCCESS"))
    const states = events.filter((e) => e.task_id === task_id).map((e) => e.state)
    // The PENDING event may arrive after the outcome: the gateway sends it once the task is confirmed.
    expect(states.sort()).toEqual(["PENDING", "SUCCESS"])
    expect(events.find((e) => e.state === "SUCCESS")).toMatchObject({ started_at: expect.any(Number) })
  })
})

describe("/healthz", () => {
  test("each service reports its broker connection", async () => {
    for (const service of [stack.gateway, stack.worker, stack.store]) {
      const res = await fetch(`${service.url}/healthz`)
      expect(res.status).toBe(200)
      const database = service === stack.store ? { database: "reachable" } : {}
      expect(await res.json()).toEqual({ status: "ok", broker: "connected", ...database })
    }
  })
})

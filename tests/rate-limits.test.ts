import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { loadWorkerConfig } from "../services/polarity-worker.ts"
import type { TaskEvent } from "../shared/contracts.ts"
import { type Stack, startStack, watchEvents } from "./support.ts"

const LIMIT_PER_S = 20
const REVIEWS = 60

let stack: Stack
beforeAll(async () => {
  stack = await startStack("rate-limits", { RATE_LIMITS: `polarity:review=${LIMIT_PER_S}/s` })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

describe("RATE_LIMITS", () => {
  test("a burst of reviews starts no faster than its kind's limit, and every one succeeds", async () => {
    await using watch = await watchEvents(stack)
    const res = await fetch(stack.url("/polarities/batch"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ reviews: Array.from({ length: REVIEWS }, (_, i) => `good review ${i}`) }),
    })
    expect(res.status).toBe(202)
    const { task_ids } = (await res.json()) as { task_ids: string[] }
    const mine = new Set(task_ids)
    const successes = (events: TaskEvent[]) =>
      events.filter(
        (e): e is Extract<TaskEvent, { state: "SUCCESS" }> => e.state === "SUCCESS" && mine.has(e.task_id),
      )
    const done = successes(await watch.until((events) => successes(events).length === REVIEWS, 30_000))

    const starts = done.map((e) => e.started_at).toSorted((a, b) => a - b)
    const spanMs = (starts.at(-1) ?? 0) - (starts[0] ?? 0)
    const rate = ((REVIEWS - 1) * 1000) / spanMs
    console.log(
      `rate limit ${LIMIT_PER_S}/s: ${REVIEWS} reviews started over ${spanMs} ms, ${rate.toFixed(1)}/s`,
    )
    // Loose: a busy machine only makes it slower, and the one-token bucket never lets a burst through.
    expect(rate).toBeLessThanOrEqual(LIMIT_PER_S * 1.25)
    expect(new Set(done.map((e) => e.task_id)).size).toBe(REVIEWS)
  })
})

describe("RATE_LIMITS at start-up", () => {
  const problem = (value: string) => {
    try {
      loadWorkerConfig({ RATE_LIMITS: value })
      return "accepted"
    } catch (err) {
      return (err as Error).message
    }
  }

  test("takes kind=N/s, N/m or N/h, each kind once, and nothing else", () => {
    expect(
      loadWorkerConfig({ RATE_LIMITS: "polarity:review=200/s, document:sentences=0.5/m" }).RATE_LIMITS,
    ).toEqual(
      new Map([
        ["polarity:review", 5],
        ["document:sentences", 120_000],
      ]),
    )
    expect(problem("polarity:review=fast")).toContain('"polarity:review=fast" is not kind=N/s, N/m or N/h')
    expect(problem("mail:send=1/s")).toContain('"mail:send" is not a task kind')
    expect(problem("polarity:review=1/s,polarity:review=2/s")).toContain('"polarity:review" is limited twice')
    expect(problem("polarity:review=0/s")).toContain("the rate must be above 0")
  })
})

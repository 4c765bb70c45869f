// The benchmark's throughput phase against a real stack: every task it submits must be seen final, however it
// follows them, and the figures it prints must count what happened.
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { type Follow, reviewText, runThroughput } from "../bench/load.ts"
import { type Stack, startStack } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("bench-load")
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

describe("runThroughput", () => {
  const cases: [Follow, number][] = [
    ["lookup", 2],
    ["get", 16],
  ]
  for (const [follow, pollConcurrency] of cases) {
    test(`follows every task until final by ${follow}, and counts the requests it made`, async () => {
      const tasks = 300
      const finals: number[] = []
      const result = await runThroughput({
        gatewayUrl: stack.url(""),
        tasks,
        concurrency: 16,
        reviewBytes: 0,
        follow,
        pollConcurrency,
        settleTimeoutMs: 15_000,
        onFinal: (n) => finals.push(n),
      })
      expect(result).toMatchObject({
        submitted: tasks,
        accepted: tasks,
        succeeded: tasks,
        failed: 0,
        lost: 0,
      })
      expect(result.rejected).toEqual({})
      expect(result.pollErrors).toEqual({})
      expect(finals).toEqual(Array.from({ length: tasks }, (_, i) => i + 1))
      expect(result.polls).toBeGreaterThanOrEqual(tasks)
      expect(result.seenFinalMs.samples).toBe(tasks)
      if (follow === "get") expect(result.pollRequests).toBe(result.polls)
      else expect(result.pollRequests).toBeLessThan(result.polls)
    })
  }
})

describe("reviewText", () => {
  test("is one sentence and its index by default, and exactly the length asked otherwise", () => {
    expect(reviewText(3)).toMatch(/^[^#]+ #3$/)
    for (const bytes of [200, 1000, 10_000]) {
      const review = reviewText(12345, bytes)
      expect(review.length).toBe(bytes)
      expect(review).toEndWith(" #12345")
    }
    // Never shorter than one whole sentence and its index.
    expect(reviewText(3, 10)).toBe(reviewText(3))
  })
})

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import {
  expectProblem,
  postBody,
  postReview,
  type Stack,
  startStack,
  submitFlaky,
  taskBody,
  waitForFinal,
} from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("quorum", {
    QUEUE_TYPE: "quorum",
    QUORUM_DELIVERY_LIMIT: "7",
    ENABLE_TEST_TASKS: "true",
    RETRY_BASE_DELAY_MS: "50",
    MAX_RETRIES: "2",
  })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

/** What the broker itself says about the stack's queues (rabbitmqctl lists arguments as [name, type, value]). */
function brokerQueues(): { name: string; type: string; arguments: Record<string, unknown> }[] {
  const command = ["rabbitmqctl", "list_queues", "-q", "--formatter", "json", "name", "type", "arguments"]
  const queues = JSON.parse(Bun.spawnSync(command).stdout.toString()) as {
    name: string
    type: string
    arguments: [string, string, unknown][]
  }[]
  return queues
    .filter((q) => q.name.startsWith(stack.env.AMQP_PREFIX ?? "?"))
    .map((q) => ({ ...q, arguments: Object.fromEntries(q.arguments.map(([key, , value]) => [key, value])) }))
}

describe("QUEUE_TYPE=quorum", () => {
  test("declares every queue as a quorum queue, the consumed ones with an explicit delivery limit", () => {
    const queues = brokerQueues()
    expect(queues.length).toBeGreaterThanOrEqual(8)
    expect(queues.filter((q) => q.type !== "quorum")).toEqual([])
    const work = queues.find((q) => q.name === stack.names.taskQueues.polarity)
    expect(work?.arguments).toMatchObject({
      "x-delivery-limit": 7,
      "x-dead-letter-strategy": "at-least-once",
      "x-overflow": "reject-publish",
    })
  })

  test("a review ends SUCCESS, and a failing task is retried through the quorum wait queues", async () => {
    const review = await taskBody(await postReview(stack, "awful", "?wait=10"))
    expect(review.status).toBe("SUCCESS")
    const flaky = await waitForFinal(stack, await submitFlaky(stack, { fail_times: 1 }))
    expect(flaky).toMatchObject({ status: "SUCCESS", attempts: 2 })
  })

  test("a submission with a priority is a 422: quorum queues have no priorities in RabbitMQ 3.10", async () => {
    await expectProblem(
      await postBody(stack, { review: "fine", priority: 5 }),
      422,
      /quorum queues \(QUEUE_TYPE=quorum\), which have no priorities in RabbitMQ 3.10/,
    )
    const batch = await fetch(stack.url("/polarities/batch"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ reviews: ["fine"], priority: 0 }),
    })
    await expectProblem(batch, 422, /no priorities/)
    const schedule = await fetch(stack.url("/schedules"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ every: 60, task: { kind: "polarity:review", review: "fine", priority: 1 } }),
    })
    await expectProblem(schedule, 422, /no priorities/)
  })
})

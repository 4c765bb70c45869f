import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { postReview, rawChannel, type Stack, startStack, taskBody } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  // One event message in hand at a time, so a status query overtakes a backlog of events.
  stack = await startStack("read-your-writes", { EVENTS_PREFETCH: "1" })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

describe("a task is known from the moment it is accepted", () => {
  test("a GET right after the 202 never answers 404 (read-your-writes)", async () => {
    const accepted = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => taskBody(await postReview(stack, `review number ${i}`))),
    )
    const statuses = await Promise.all(
      accepted.map(({ task_id }) => fetch(stack.url(`/polarities/tasks/${task_id}`)).then((r) => r.status)),
    )
    expect(statuses).toEqual(accepted.map(() => 200))
  })

  test("read-your-writes holds while the store works through a backlog of events", async () => {
    const ids: string[] = []
    // Queue 20,000 accepted tasks' events while the store is down, then ask for the last one
    // as soon as it is back: the answer has to wait for the backlog, not say 404.
    await stack.restartStore(async () => {
      await using amqp = await rawChannel()
      for (let batch = 0; batch < 100; batch++) {
        const events = Array.from({ length: 200 }, () => {
          const task_id = Bun.randomUUIDv7()
          ids.push(task_id)
          return {
            task_id,
            state: "PENDING",
            attempt: 0,
            at: Date.now(),
            kind: "polarity:review",
            input: { review: "x" },
          }
        })
        await amqp.channel.basicPublish(
          stack.names.eventsExchange,
          "task.pending",
          JSON.stringify({ events }),
          {
            type: "task-events",
            deliveryMode: 2,
          },
        )
      }
      await amqp.channel.queueDeclare(stack.names.statusEventsQueue, { passive: true })
    })
    const last = await fetch(stack.url(`/polarities/tasks/${ids.at(-1)}`))
    expect(last.status).toBe(200)
    expect((await taskBody(last)).status).toBe("PENDING")
  })
})

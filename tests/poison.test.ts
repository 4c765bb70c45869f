import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { postReview, rawChannel, type Stack, startStack, takeMessages, taskBody } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("poison")
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const malformed: [string, Uint8Array][] = [
  ["not JSON", new TextEncoder().encode("this is not json")],
  ["bad UTF-8", new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
  ["wrong schema", new TextEncoder().encode(JSON.stringify({ task_id: "nope", review: 42 }))],
  ["empty", new Uint8Array()],
  ["over 1 MiB", new TextEncoder().encode(JSON.stringify({ review: "x".repeat(2 * 1024 * 1024) }))],
]

describe("a malformed message on any queue is dead-lettered with its reason, and the consumer goes on", () => {
  for (const queueKey of ["polarityTasksQueue", "statusEventsQueue", "statusRpcQueue"] as const) {
    test(`on ${queueKey}`, async () => {
      const queue = stack.names[queueKey]
      {
        await using amqp = await rawChannel()
        for (const [, body] of malformed) {
          // The RPC queue's consumer answers its caller; these have a reply-to so only the body is wrong.
          await amqp.channel.basicPublish("", queue, body, { replyTo: `${queue}.nobody`, deliveryMode: 2 })
        }
      }
      const deadLettered = await takeMessages(stack.names.poisonQueue, malformed.length)
      expect(deadLettered.map((m) => m.properties.headers?.["x-original-queue"])).toEqual(
        malformed.map(() => queue),
      )
      const reasons = deadLettered.map((m) => String(m.properties.headers?.["x-poison-reason"]))
      expect(reasons).toEqual([
        expect.stringMatching(/not JSON/),
        expect.stringMatching(/not valid UTF-8/),
        expect.stringMatching(/not a valid/),
        expect.stringMatching(/empty body/),
        expect.stringMatching(/exceeds 1048576/),
      ])
      // The bodies are kept as they were, for an operator to inspect.
      expect(deadLettered[1]?.body).toEqual(malformed[1]?.[1] ?? null)

      const res = await postReview(stack, "good and happy", "?wait=10")
      expect(res.status).toBe(200)
      expect((await taskBody(res)).status).toBe("SUCCESS")
    })
  }
})

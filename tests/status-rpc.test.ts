import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { postReview, rawChannel, type Stack, startStack, taskBody } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("status-rpc")
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

/** One request on the store's RPC queue, straight over the broker, and its one reply. */
async function askStore(body: unknown): Promise<unknown> {
  await using amqp = await rawChannel()
  const reply = Promise.withResolvers<unknown>()
  await amqp.channel.basicConsume("amq.rabbitmq.reply-to", { noAck: true }, (msg) => {
    reply.resolve(JSON.parse(msg.bodyString() ?? ""))
  })
  await amqp.channel.basicPublish("", stack.names.statusRpcQueue, JSON.stringify(body), {
    replyTo: "amq.rabbitmq.reply-to",
    correlationId: "1",
    type: "status-query",
  })
  return await reply.promise
}

describe("the status store's RPC", () => {
  test("answers a batch of queries in one reply, in order, each on its own", async () => {
    const { task_id } = await taskBody(await postReview(stack, "lovely", "?wait=10"))
    const unknown = crypto.randomUUID()
    const reply = await askStore({
      queries: [
        { op: "get", task_id },
        { op: "get", task_id: unknown },
        { op: "list", limit: 1 },
      ],
    })
    expect(reply).toEqual({
      replies: [
        { task: expect.objectContaining({ task_id, status: "SUCCESS" }) },
        { task: null },
        expect.objectContaining({ tasks: [expect.objectContaining({ task_id })] }),
      ],
    })
  })

  test("a malformed request gets one error reply and is dead-lettered", async () => {
    const reply = await askStore({ queries: [{ op: "nope" }] })
    expect(reply).toEqual({ replies: [{ error: expect.stringContaining("not a valid StatusQueryBatch") }] })
  })
})

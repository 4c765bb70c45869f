import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { postReview, requestStore, type Stack, startStack, taskBody } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("status-rpc")
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const askStore = (body: unknown) => requestStore(stack, body)

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

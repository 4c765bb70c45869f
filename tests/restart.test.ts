import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { STORE_BACKENDS } from "./store-backends.ts"
import { postReview, type Stack, startStack, taskBody, waitForFinal } from "./support.ts"

describe.each(STORE_BACKENDS)("the status store keeps state across restarts (%s)", (backend) => {
  let stack: Stack
  beforeAll(async () => {
    stack = await startStack(`restart-${backend}`, {}, {}, { backend })
  })
  afterAll(async () => {
    await stack?.[Symbol.asyncDispose]()
  })

  test("results from before a restart are still there after it", async () => {
    const before = await Promise.all(
      ["awful", "lovely", "a table"].map(async (review) =>
        taskBody(await postReview(stack, review, "?wait=10")),
      ),
    )
    expect(before.map((t) => t.status)).toEqual(["SUCCESS", "SUCCESS", "SUCCESS"])

    await stack.restartStore()

    const after = await Promise.all(
      before.map(({ task_id }) => fetch(stack.url(`/polarities/tasks/${task_id}`)).then(taskBody)),
    )
    expect(after).toEqual(before)
  })

  test("events sent while the store is down are applied when it is back", async () => {
    const accepted = await stack.restartStore(() =>
      Promise.all(
        Array.from({ length: 20 }, async (_, i) => taskBody(await postReview(stack, `good review ${i}`))),
      ),
    )
    expect(accepted?.map((t) => t.status)).toEqual(accepted?.map(() => "PENDING"))

    const finals = await Promise.all((accepted ?? []).map(({ task_id }) => waitForFinal(stack, task_id)))
    expect(finals.map((t) => t.status)).toEqual(finals.map(() => "SUCCESS"))
    expect(finals).toHaveLength(20)
  })
})

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { postReview, type Stack, startStack, taskBody, waitForFinal } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("retry", { ENABLE_TEST_TASKS: "true", MAX_RETRIES: "0", WORKER_PREFETCH: "1" })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

async function flaky(body: Record<string, unknown>, query = ""): Promise<string> {
  const res = await fetch(stack.url(`/test/flaky${query}`), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  })
  expect([200, 202]).toContain(res.status)
  return (await taskBody(res)).task_id
}

const retry = (taskId: string) => fetch(stack.url(`/polarities/tasks/${taskId}/retry`), { method: "POST" })

async function expectRetried(taskId: string): Promise<void> {
  const res = await retry(taskId)
  expect(res.status).toBe(202)
  expect(res.headers.get("location")).toBe(`/polarities/tasks/${taskId}`)
  expect(await res.json()).toEqual({ task_id: taskId, status: "PENDING" })
}

describe("POST /polarities/tasks/{id}/retry runs a task that did not succeed again, as a new run", () => {
  test("a FAILURE runs again and succeeds, its attempts counting on", async () => {
    const taskId = await flaky({ fail_times: 1, non_retryable: true }, "?wait=10")
    expect((await waitForFinal(stack, taskId)).status).toBe("FAILURE")
    await expectRetried(taskId)
    expect(await waitForFinal(stack, taskId)).toMatchObject({ status: "SUCCESS", attempts: 2, error: null })
  })

  test("an EXPIRED task runs again without its old deadline", async () => {
    const taskId = await stack.restartWorker(async () => {
      const id = await flaky({ expires_in: 0.001 })
      await Bun.sleep(20)
      return id
    })
    expect((await waitForFinal(stack, taskId ?? "")).status).toBe("EXPIRED")
    await expectRetried(taskId ?? "")
    expect(await waitForFinal(stack, taskId ?? "")).toMatchObject({ status: "SUCCESS", attempts: 2 })
  })

  test("a REVOKED task runs again, though the worker that heard of the revoke still remembers it", async () => {
    // With a prefetch of 1 the target waits in its queue behind a sleeper, so it is revoked unstarted.
    const sleeper = await flaky({ sleep_ms: 500 })
    const target = await flaky({})
    const revoked = await fetch(stack.url(`/polarities/tasks/${target}`), { method: "DELETE" })
    expect(revoked.status).toBe(200)
    expect((await waitForFinal(stack, sleeper)).status).toBe("SUCCESS")
    await expectRetried(target)
    expect(await waitForFinal(stack, target)).toMatchObject({ status: "SUCCESS", error: null })
  })

  test("a task that is running, waiting or has succeeded is a 409; an unknown one a 404", async () => {
    const done = await taskBody(await postReview(stack, "lovely", "?wait=10"))
    const res = await retry(done.task_id)
    expect(res.status).toBe(409)
    expect(res.headers.get("content-type")).toBe("application/problem+json")
    expect(await res.json()).toEqual({
      type: "about:blank",
      title: "Conflict",
      status: 409,
      detail: `task ${done.task_id} is SUCCESS; only a task that ended FAILURE, EXPIRED or REVOKED can be retried`,
    })
    const unknown = crypto.randomUUID()
    expect(await retry(unknown).then((r) => r.json())).toMatchObject({
      status: 404,
      detail: `no task with id ${unknown}`,
    })
    expect((await retry("nope")).status).toBe(404)
  })
})

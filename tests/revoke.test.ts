import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { TaskEvent, TaskPage, TaskRecord } from "../shared/contracts.ts"
import {
  expectProblem,
  rawChannel,
  type Stack,
  startStack,
  submitFlaky,
  taskBody,
  waitForFinal,
  watchEvents,
} from "./support.ts"

// One task at a time per queue, so that a sleeping task holds the ones behind it in the broker.
let stack: Stack
beforeAll(async () => {
  stack = await startStack("revoke", {
    ENABLE_TEST_TASKS: "true",
    WORKER_PREFETCH: "1",
    MAX_RETRIES: "1",
    RETRY_BASE_DELAY_MS: "400",
  })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const revoke = (taskId: string) => fetch(stack.url(`/polarities/tasks/${taskId}`), { method: "DELETE" })

/** Poll the API until the task shows `status` (the store's view, which a revoke is judged by). */
async function untilStatus(taskId: string, status: TaskRecord["status"]): Promise<TaskRecord> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await Bun.sleep(10)) {
    const record = await fetch(stack.url(`/polarities/tasks/${taskId}`)).then(taskBody)
    if (record.status === status) return record
  }
  throw new Error(`task ${taskId} never showed ${status}`)
}

const statesOf = (events: TaskEvent[], taskId: string) =>
  events.filter((event) => event.task_id === taskId).map((event) => `${event.state}:${event.attempt}`)

describe("DELETE /polarities/tasks/{id} revokes a task that has not started", () => {
  test("a queued task ends REVOKED at once, and the worker skips it", async () => {
    await using watch = await watchEvents(stack)
    const blocker = await submitFlaky(stack, { sleep_ms: 500 })
    await untilStatus(blocker, "STARTED")
    const target = await submitFlaky(stack)

    const res = await revoke(target)
    expect(res.status).toBe(200)
    const revoked = await taskBody(res)
    expect(revoked).toEqual({
      task_id: target,
      kind: "test:flaky",
      status: "REVOKED",
      result: null,
      error: "revoked before it started",
      attempts: 0,
      group_id: null,
      submitted_at: expect.any(String),
      started_at: null,
      finished_at: expect.any(String),
    } satisfies TaskRecord)

    // Queued behind the revoked task: once it has run, the worker has had the revoked one in hand.
    const after = await submitFlaky(stack)
    expect((await waitForFinal(stack, after)).status).toBe("SUCCESS")
    expect(statesOf(watch.events, target).toSorted()).toEqual(["PENDING:0", "REVOKED:0"])
    expect(await fetch(stack.url(`/polarities/tasks/${target}`)).then(taskBody)).toEqual(revoked)
  })

  test("a worker started after the revoke learns it from the store, and skips the task", async () => {
    await using watch = await watchEvents(stack)
    let target = ""
    await stack.restartWorker(async () => {
      target = await submitFlaky(stack)
      expect((await revoke(target)).status).toBe(200)
    })

    // Queued behind the revoked task: once it has run, the new worker has had the revoked one in hand.
    const after = await submitFlaky(stack)
    expect((await waitForFinal(stack, after)).status).toBe("SUCCESS")
    expect(statesOf(watch.events, target).toSorted()).toEqual(["PENDING:0", "REVOKED:0"])
    expect(await untilStatus(target, "REVOKED")).toMatchObject({ started_at: null, attempts: 0 })
  })

  test("a task waiting for its retry ends REVOKED, and the retry never runs", async () => {
    await using watch = await watchEvents(stack)
    const target = await submitFlaky(stack, { fail_times: 1 })
    await untilStatus(target, "RETRY")
    const res = await revoke(target)
    expect(res.status).toBe(200)
    expect(await taskBody(res)).toMatchObject({ status: "REVOKED", attempts: 1, result: null })

    const events = await watch.until((all) => statesOf(all, target).includes("RETRY:1"))
    const retry = events.find((e) => e.task_id === target && e.state === "RETRY")
    const retryAt = retry?.state === "RETRY" ? retry.retry_at : Number.POSITIVE_INFINITY
    // Once the retry is due it is back in the work queue, and a task queued after it runs after it.
    while (Date.now() < retryAt + 50) await Bun.sleep(10)
    const after = await submitFlaky(stack)
    expect((await waitForFinal(stack, after)).status).toBe("SUCCESS")
    expect(statesOf(watch.events, target).toSorted()).toEqual([
      "PENDING:0",
      "RETRY:1",
      "REVOKED:1",
      "STARTED:1",
    ])
  })

  test("a worker's report of a run it started before the revoke does not undo REVOKED", async () => {
    const blocker = await submitFlaky(stack, { sleep_ms: 300 })
    await untilStatus(blocker, "STARTED")
    const target = await submitFlaky(stack)
    expect((await revoke(target)).status).toBe(200)

    await using amqp = await rawChannel()
    await amqp.channel.confirmSelect()
    const at = Date.now()
    const late: TaskEvent[] = [
      { task_id: target, state: "STARTED", attempt: 1, run: 1, at, worker: "late:1" },
      {
        task_id: target,
        state: "SUCCESS",
        attempt: 1,
        run: 1,
        at,
        started_at: at,
        result: { succeeded_on_attempt: 1 },
      },
    ]
    for (const event of late) {
      await amqp.channel.basicPublish(
        stack.names.eventsExchange,
        `task.${event.state.toLowerCase()}`,
        JSON.stringify({ events: [event] }),
        { type: "task-events", deliveryMode: 2 },
      )
    }
    // Listing reads every event queued before it, the late ones included.
    const res = await fetch(stack.url("/polarities/tasks?status=REVOKED&limit=100"))
    const { tasks } = (await res.json()) as TaskPage
    expect(tasks.find((task) => task.task_id === target)).toMatchObject({ status: "REVOKED", result: null })
    await waitForFinal(stack, blocker)
  })
})

describe("DELETE /polarities/tasks/{id}?terminate=true stops a running task", () => {
  const terminate = (taskId: string, value = "true") =>
    fetch(stack.url(`/polarities/tasks/${taskId}?terminate=${value}`), { method: "DELETE" })

  test("the attempt is aborted and the task ends REVOKED with its reason, neither retried nor dead-lettered", async () => {
    await using watch = await watchEvents(stack)
    // Longer than the test may take: only the abort ends it in time.
    const target = await submitFlaky(stack, { sleep_ms: 60_000 })
    const started = await untilStatus(target, "STARTED")

    const res = await terminate(target)
    expect(res.status).toBe(200)
    const revoked = await taskBody(res)
    expect(revoked).toEqual({
      task_id: target,
      kind: "test:flaky",
      status: "REVOKED",
      result: null,
      error: "terminated while running attempt 1",
      attempts: 1,
      group_id: null,
      submitted_at: expect.any(String),
      started_at: started.started_at,
      finished_at: expect.any(String),
    } satisfies TaskRecord)

    // One task at a time: the next one runs only once the terminated one is acked.
    const after = await submitFlaky(stack)
    expect((await waitForFinal(stack, after)).status).toBe("SUCCESS")
    expect(statesOf(watch.events, target).toSorted()).toEqual(["PENDING:0", "REVOKED:1", "STARTED:1"])
    expect(await fetch(stack.url(`/polarities/tasks/${target}`)).then(taskBody)).toEqual(revoked)
    const metrics = await fetch(`${stack.worker.url}/metrics`).then((r) => r.text())
    expect(metrics).toMatch(
      /^polarity_tasks_terminated_total\{kind="test:flaky",service="polarity-worker"\} 1$/m,
    )
    await using amqp = await rawChannel()
    const failed = await amqp.channel.queueDeclare(stack.names.failedQueue, { passive: true })
    expect(failed.messageCount).toBe(0)
  })

  test("a task that has not started is revoked as without terminate", async () => {
    const blocker = await submitFlaky(stack, { sleep_ms: 300 })
    await untilStatus(blocker, "STARTED")
    const target = await submitFlaky(stack)
    const res = await terminate(target)
    expect(await taskBody(res)).toMatchObject({ status: "REVOKED", error: "revoked before it started" })
    await waitForFinal(stack, blocker)
  })

  test("terminate must be true or false: anything else is a 422 problem", async () => {
    await expectProblem(await terminate(crypto.randomUUID(), "yes"), 422, /terminate must be true or false/)
  })
})

describe("DELETE /polarities/tasks/{id} refuses what cannot be revoked", () => {
  test("a running task is a 409 problem, and it goes on to finish", async () => {
    const taskId = await submitFlaky(stack, { sleep_ms: 300 })
    await untilStatus(taskId, "STARTED")
    const res = await revoke(taskId)
    expect(res.status).toBe(409)
    await expectProblem(
      res,
      409,
      `task ${taskId} is already running; only a task that has not started can be revoked, unless with ?terminate=true`,
    )
    expect((await waitForFinal(stack, taskId)).status).toBe("SUCCESS")
  })

  test("a finished task is a 409 problem naming its state", async () => {
    const done = await fetch(stack.url("/polarities?wait=10"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ review: "good" }),
    }).then(taskBody)
    const res = await revoke(done.task_id)
    expect(res.status).toBe(409)
    await expectProblem(
      res,
      409,
      `task ${done.task_id} has already finished (SUCCESS); there is nothing to revoke`,
    )
  })

  test("revoking twice: the second is a 409, the task stays REVOKED", async () => {
    const blocker = await submitFlaky(stack, { sleep_ms: 300 })
    await untilStatus(blocker, "STARTED")
    const target = await submitFlaky(stack)
    expect((await revoke(target)).status).toBe(200)
    await expectProblem(await revoke(target), 409, /already finished \(REVOKED\)/)
    await waitForFinal(stack, blocker)
  })

  test("an unknown id is a 404 problem, and so is one that is not a UUID", async () => {
    const unknown = crypto.randomUUID()
    const res = await revoke(unknown)
    expect(res.status).toBe(404)
    await expectProblem(res, 404, `no task with id ${unknown}`)
    await expectProblem(await revoke("not-a-uuid"), 404, /task ids are UUIDs/)
  })
})

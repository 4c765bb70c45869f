import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { hostname } from "node:os"
import { loadWorkerConfig, start as startWorker } from "../services/polarity-worker.ts"
import type { ActiveTask, WorkerStatus } from "../shared/contracts.ts"
import { controlRoutingKey } from "../shared/topology.ts"
import {
  eventually,
  expectProblem,
  isoTime,
  rawChannel,
  type Stack,
  startStack,
  submitFlaky,
  waitForFinal,
} from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("remote-control", {
    ENABLE_TEST_TASKS: "true",
    WORKER_HEARTBEAT_MS: "100",
    CONTROL_TIMEOUT_MS: "1000",
  })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const admin = (path: string, init?: RequestInit) => fetch(stack.url(`/admin${path}`), init)
const post = (path: string) => admin(path, { method: "POST" })
const workerPath = (workerId: string) => `/workers/${encodeURIComponent(workerId)}`

async function listWorkers(): Promise<WorkerStatus[]> {
  const res = await admin("/workers")
  expect(res.status).toBe(200)
  return ((await res.json()) as { workers: WorkerStatus[] }).workers
}

describe("GET /admin/workers", () => {
  test("lists the worker with the heartbeat it answered the ping with, and how long that took", async () => {
    const workers = await listWorkers()
    expect(workers).toEqual([
      {
        worker: stack.worker.worker,
        host: hostname(),
        pid: process.pid,
        queues: ["polarity", "default"],
        prefetch: 64,
        in_hand: 0,
        succeeded: expect.any(Number),
        failed: expect.any(Number),
        retried: expect.any(Number),
        interval_ms: 100,
        status: "online",
        started_at: isoTime,
        last_heartbeat_at: isoTime,
        ping_ms: expect.any(Number),
      },
    ])
  })
})

describe("GET /admin/workers/{id}/active", () => {
  test("lists the attempts running, with their run time", async () => {
    const ids = [await submitFlaky(stack, { sleep_ms: 1500 }), await submitFlaky(stack, { sleep_ms: 1500 })]
    const tasks = await eventually(async () => {
      const res = await admin(`${workerPath(stack.worker.worker)}/active`)
      expect(res.status).toBe(200)
      const body = (await res.json()) as { worker: string; tasks: ActiveTask[] }
      expect(body.worker).toBe(stack.worker.worker)
      expect(body.tasks.filter((task) => task.started_at !== null)).toHaveLength(2)
      return body.tasks
    })
    expect(tasks.map((task) => task.task_id).toSorted()).toEqual(ids.toSorted())
    for (const task of tasks) {
      expect(task).toEqual({
        task_id: expect.any(String),
        kind: "test:flaky",
        attempt: 1,
        run: 1,
        queue: stack.names.taskQueues.default,
        started_at: isoTime,
        running_ms: expect.any(Number),
      })
      expect(task.running_ms).toBeGreaterThanOrEqual(0)
    }
    for (const id of ids) expect((await waitForFinal(stack, id)).status).toBe("SUCCESS")
    const after = await admin(`${workerPath(stack.worker.worker)}/active`)
    expect(await after.json()).toEqual({ worker: stack.worker.worker, tasks: [] })
  })

  test("an unknown worker is a 404 problem, and so is an id that is no worker id", async () => {
    await expectProblem(
      await admin(`${workerPath("nowhere:1")}/active`),
      404,
      "no worker nowhere:1 is connected",
    )
    await expectProblem(await admin("/workers/no%20such/active"), 404, /worker ids are host:pid/)
  })

  test("a worker that does not answer in time is a 504 problem", async () => {
    // A queue bound for the worker id, that nobody consumes: the command is taken, and never answered.
    await using amqp = await rawChannel()
    const { name } = await amqp.channel.queueDeclare("", { exclusive: true, autoDelete: true })
    await amqp.channel.queueBind(name, stack.names.controlExchange, controlRoutingKey("silent:1"))
    const res = await admin(`${workerPath("silent:1")}/active`)
    await expectProblem(res, 504, /^worker silent:1 did not answer within 1000 ms/)
  })
})

describe("pool commands", () => {
  test("to a worker that is not an autoscaled pool are a 409 problem", async () => {
    const res = await post(`${workerPath(stack.worker.worker)}/pool/grow?n=2`)
    await expectProblem(res, 409, /is not the supervisor of an autoscaled pool/)
  })

  test("with a bad n are a 422 problem", async () => {
    await expectProblem(await post(`${workerPath(stack.worker.worker)}/pool/shrink?n=0`), 422, /^n: /)
  })
})

describe("POST /admin/workers/{id}/shutdown", () => {
  test("stops the worker gracefully: its task in hand finishes, and it is then unknown", async () => {
    const second = await startWorker(
      loadWorkerConfig({ ...stack.env, WORKER_QUEUES: "default", WORKER_NAME: "second@remote-control" }),
    )
    try {
      // Stop the stack's worker from taking it: only `second` consumes default, once the first is gone.
      await stack.restartWorker(async () => {
        const taskId = await submitFlaky(stack, { sleep_ms: 800 })
        await eventually(async () => {
          const res = await admin(`${workerPath(second.worker)}/active`)
          expect(((await res.json()) as { tasks: ActiveTask[] }).tasks).toHaveLength(1)
        })
        const res = await post(`${workerPath(second.worker)}/shutdown`)
        expect(res.status).toBe(202)
        expect(await res.json()).toEqual({ worker: second.worker, status: "shutting_down" })
        await second.stopped
        expect((await waitForFinal(stack, taskId)).status).toBe("SUCCESS")
      })
      await expectProblem(await admin(`${workerPath(second.worker)}/active`), 404, /is connected/)
      const listed = await listWorkers()
      expect(listed.find((worker) => worker.worker === second.worker)).toMatchObject({ ping_ms: null })
    } finally {
      await second.stop()
    }
  })
})

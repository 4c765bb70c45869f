import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { loadWorkerConfig, start as startWorker } from "../services/polarity-worker.ts"
import { ConfigError } from "../shared/config.ts"
import type { WorkerRecord } from "../shared/contracts.ts"
import { askStore, eventually, postReview, queueState, type Stack, startStack, taskBody } from "./support.ts"

// The stack's own worker consumes the default queue alone.
let stack: Stack
beforeAll(async () => {
  stack = await startStack("worker-queues", { WORKER_QUEUES: "default", WORKER_HEARTBEAT_MS: "100" })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const postDocument = (document: string) =>
  fetch(stack.url("/polarities/documents?wait=10"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ document }),
  })

describe("WORKER_QUEUES picks the queues a worker consumes", () => {
  test("a worker for default alone runs documents and never takes a polarity task", async () => {
    const review = await taskBody(await postReview(stack, "lovely"))
    const document = await taskBody(await postDocument("A fine day. A sad end."))
    expect(document.status).toBe("SUCCESS")
    // The document went through the default queue after the review was queued: the worker has had its chance.
    expect((await fetch(stack.url(`/polarities/tasks/${review.task_id}`)).then(taskBody)).status).toBe(
      "PENDING",
    )
    expect(await queueState(stack.names.taskQueues.polarity)).toEqual({ messages: 1, consumers: 0 })
    expect(await queueState(stack.names.quarantineQueues.polarity)).toEqual({ messages: 0, consumers: 0 })
    expect(await queueState(stack.names.taskQueues.default)).toEqual({ messages: 0, consumers: 1 })
    expect(await queueState(stack.names.quarantineQueues.default)).toEqual({ messages: 0, consumers: 1 })

    const polarityWorker = await startWorker(loadWorkerConfig({ ...stack.env, WORKER_QUEUES: "polarity" }))
    try {
      const record = await eventually(async () => {
        const current = await fetch(stack.url(`/polarities/tasks/${review.task_id}`)).then(taskBody)
        expect(current.status).toBe("SUCCESS")
        return current
      }, 10_000)
      expect(record.result).toMatchObject({ polarity: "positive" })
    } finally {
      await polarityWorker.stop()
    }
  })

  test("the heartbeat says which queues a worker consumes", async () => {
    const workers = await eventually(async () => {
      const { workers } = (await askStore(stack, { op: "workers" })) as { workers: WorkerRecord[] }
      const online = workers.filter((worker) => worker.status === "online")
      expect(online).toHaveLength(1)
      return online
    })
    expect(workers[0]?.queues).toEqual(["default"])
  })

  test("an unknown queue, an empty list or a queue named twice stops start-up with a clear message", () => {
    const load = (WORKER_QUEUES: string) => () => loadWorkerConfig({ ...stack.env, WORKER_QUEUES })
    expect(load("polarity,emails")).toThrow(
      new ConfigError(
        'invalid configuration: WORKER_QUEUES.1: each queue must be one of polarity, default, not "emails"',
      ),
    )
    expect(load("default,default")).toThrow(/WORKER_QUEUES: must not name a queue twice/)
    expect(load("")).toThrow(/WORKER_QUEUES/)
    expect(loadWorkerConfig({ ...stack.env, WORKER_QUEUES: " default , polarity " }).WORKER_QUEUES).toEqual([
      "default",
      "polarity",
    ])
    expect(loadWorkerConfig({ AMQP_PREFIX: "x." }).WORKER_QUEUES).toEqual(["polarity", "default"])
  })
})

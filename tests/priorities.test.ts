import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { rmSync } from "node:fs"
import { loadWorkerConfig, start as startWorker } from "../services/polarity-worker.ts"
import { topologyOptions } from "../shared/amqp.ts"
import { BrokerEnv, loadConfig } from "../shared/config.ts"
import type { TaskDetail } from "../shared/contracts.ts"
import { declareTopology, topologyDeclarations } from "../shared/topology.ts"
import {
  askStore,
  deleteTopology,
  expectProblem,
  postBody,
  rawChannel,
  type Stack,
  startStack,
  taskBody,
  testEnv,
  uniquePrefix,
  watchEvents,
} from "./support.ts"

// The stack's own worker takes the default queue alone: the polarity queue fills up until the test starts one.
let stack: Stack
beforeAll(async () => {
  stack = await startStack("priorities", { WORKER_QUEUES: "default", WORKER_PREFETCH: "1" })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const BACKLOG = 20

describe("priority on a submission", () => {
  test("an interactive review (priority 9) overtakes a backlog of batch reviews waiting in the queue", async () => {
    // One request at a time: each review is a message of its own, as a backlog from many clients would be.
    const backlog: string[] = []
    for (let i = 0; i < BACKLOG; i++) {
      backlog.push((await taskBody(await postBody(stack, { review: `batch review ${i}` }))).task_id)
    }
    const interactive = (await taskBody(await postBody(stack, { review: "I need this now", priority: 9 })))
      .task_id
    await using events = await watchEvents(stack)
    const worker = await startWorker(loadWorkerConfig({ ...stack.env, WORKER_QUEUES: "polarity" }))
    try {
      const done = await events.until((seen) => seen.filter((e) => e.state === "SUCCESS").length > BACKLOG)
      const order = done.filter((e) => e.state === "SUCCESS").map((e) => e.task_id)
      expect(order[0]).toBe(interactive)
      expect(order.slice(1).toSorted()).toEqual(backlog.toSorted())
    } finally {
      await worker.stop()
    }
  })

  test("the task's input keeps the priority it was submitted with", async () => {
    const res = await fetch(stack.url("/polarities/documents?wait=10"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ document: "A fine day.", priority: 3 }),
    })
    const { task_id, status } = await taskBody(res)
    expect(status).toBe("SUCCESS")
    const { detail } = (await askStore(stack, { op: "detail", task_id })) as { detail: TaskDetail }
    expect(detail.input).toEqual({ document: "A fine day.", priority: 3 })
  })

  test("a priority outside 0–9 is a 422 problem", async () => {
    for (const priority of [10, -1, 2.5, "high"]) {
      await expectProblem(
        await postBody(stack, { review: "fine", priority }),
        422,
        /priority must be a whole number from 0 to 9/,
      )
    }
  })
})

describe("upgrading a deployment whose work queues were declared without priorities", () => {
  test("the old queue is kept and the operator is told, instead of PRECONDITION_FAILED stopping the service", async () => {
    const { env, dataDir } = testEnv("priorities-upgrade", {
      AMQP_PREFIX: uniquePrefix("priorities-upgrade"),
    })
    const options = topologyOptions(loadConfig(BrokerEnv, env))
    try {
      await using amqp = await rawChannel()
      const earlier = topologyDeclarations(options).queues.filter((q) => q.before)
      expect(earlier).toHaveLength(2)
      for (const queue of earlier) {
        await amqp.channel.queueDeclare(queue.name, { durable: true }, queue.before?.arguments)
      }
      const kept: string[] = []
      await declareTopology(await amqp.client.channel(), options, (queue, missing) => {
        kept.push(`${queue}: ${missing}`)
      })
      expect(kept.toSorted()).toEqual(
        earlier
          .map(
            (q) =>
              `${q.name}: priorities: it was declared without x-max-priority, so a task's priority is ignored`,
          )
          .toSorted(),
      )
    } finally {
      await deleteTopology(env)
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { hostname } from "node:os"
import type { WorkerHeartbeat, WorkerRecord } from "../shared/contracts.ts"
import { askStore, eventually, postReview, rawChannel, type Stack, startStack } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("heartbeats", { WORKER_HEARTBEAT_MS: "100", WORKER_LOST_AFTER_MISSED: "3" })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

async function workers(): Promise<WorkerRecord[]> {
  return ((await askStore(stack, { op: "workers" })) as { workers: WorkerRecord[] }).workers
}

const thisWorker = `${hostname()}:${process.pid}`

describe("workers' heartbeats", () => {
  test("a running worker is listed online with its host, pid, queues, prefetch and counts", async () => {
    await postReview(stack, "lovely", "?wait=10")
    await postReview(stack, "awful", "?wait=10")
    const listed = await eventually(async () => {
      const [worker] = await workers()
      expect(worker?.succeeded).toBe(2)
      return worker
    })
    expect(listed).toEqual({
      worker: thisWorker,
      host: hostname(),
      pid: process.pid,
      queues: ["polarity", "default"],
      prefetch: 64,
      in_hand: 0,
      succeeded: 2,
      failed: 0,
      retried: 0,
      interval_ms: 100,
      status: "online",
      started_at: expect.any(String),
      last_heartbeat_at: expect.any(String),
    })
  })

  test("a worker that stops says so and is shown offline, then online again when it is back", async () => {
    const whileDown = await stack.restartWorker(() =>
      eventually(async () => {
        const [worker] = await workers()
        expect(worker?.status).toBe("offline")
        return worker
      }),
    )
    expect(whileDown?.worker).toBe(thisWorker)
    await eventually(async () => expect((await workers()).map((w) => w.status)).toEqual(["online"]))
  })

  test("a worker whose heartbeats stop without a word is shown lost after 3 missed", async () => {
    await using amqp = await rawChannel()
    const heartbeat: WorkerHeartbeat = {
      worker: "vanished:1",
      host: "vanished",
      pid: 1,
      state: "online",
      prefetch: 8,
      in_hand: 8,
      succeeded: 0,
      failed: 0,
      retried: 0,
      started_at: Date.now(),
      sent_at: Date.now(),
      interval_ms: 100,
    }
    await amqp.channel.basicPublish(
      stack.names.eventsExchange,
      "worker.heartbeat",
      JSON.stringify(heartbeat),
      {
        type: "worker-heartbeat",
      },
    )
    const vanished = async () => (await workers()).find((w) => w.worker === "vanished:1")?.status
    await eventually(async () => expect(await vanished()).toBe("online"))
    await eventually(async () => expect(await vanished()).toBe("lost"))
    expect((await workers()).find((w) => w.worker === thisWorker)?.status).toBe("online")
  })
})

// Consumers the broker ends without closing the connection, and the worker's graceful stop.
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { TaskRecord } from "../../shared/contracts.ts"
import { rawChannel, submitFlaky } from "../support.ts"
import { awaitFinal, type Cluster, queueDepth, startCluster, submitReviews } from "./cluster.ts"

let cluster: Cluster
beforeAll(async () => {
  cluster = await startCluster("consumers", {}, { workers: 1 })
})
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]()
})

const gatewayUrl = () => cluster.gateway.url
const polarityQueue = () => `${cluster.env.AMQP_PREFIX}tasks.polarity`

describe("a consumer the broker ends", () => {
  test("a deleted work queue is declared again and consumed again, and tasks flow", async () => {
    {
      await using amqp = await rawChannel()
      await amqp.channel.queueDelete(polarityQueue())
    }
    // The broker cancels the consumer; the worker's watchdog notices within two checks and subscribes again.
    const deadline = Date.now() + 15_000
    let resubscribed = false
    while (!resubscribed && Date.now() < deadline) {
      resubscribed = cluster.workers[0]?.count("consumer ended by the broker, subscribing again") === 1
      if (!resubscribed) await Bun.sleep(100)
    }
    expect(resubscribed).toBe(true)
    // The log line comes before the topology is declared again: tasks flow once the queue has its consumer back.
    let consumers = 0
    while (consumers === 0 && Date.now() < deadline) {
      await using amqp = await rawChannel()
      const queue = await amqp.channel.queueDeclare(polarityQueue(), { passive: true }).catch(() => null)
      consumers = queue?.consumerCount ?? 0
      if (consumers === 0) await Bun.sleep(50)
    }
    expect(consumers).toBe(1)
    const { accepted } = await submitReviews(gatewayUrl, { count: 20, concurrency: 4 })
    expect(accepted).toHaveLength(20)
    const final = await awaitFinal(gatewayUrl, accepted)
    expect([...final.values()].map((t) => t.status)).toEqual(accepted.map(() => "SUCCESS"))
  })
})

async function untilAllStarted(taskIds: string[]): Promise<void> {
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    const statuses = await Promise.all(
      taskIds.map(
        async (id) =>
          ((await (await fetch(`${gatewayUrl()}/polarities/tasks/${id}`)).json()) as TaskRecord).status,
      ),
    )
    if (statuses.every((status) => status === "STARTED")) return
    await Bun.sleep(20)
  }
  throw new Error("the tasks did not all start")
}

describe("SIGTERM to a worker with tasks in hand", () => {
  test("finishes them, acks them and exits 0: nothing is left unacked or redelivered", async () => {
    const stack = { url: (path: string) => `${gatewayUrl()}${path}` }
    // Each takes 400 ms; with a prefetch of 64 all five are in hand, and STARTED, when the signal comes.
    const ids = await Promise.all(Array.from({ length: 5 }, () => submitFlaky(stack, { sleep_ms: 400 })))
    await untilAllStarted(ids)
    const code = await cluster.workers[0]?.stop()
    expect(code).toBe(0)
    // Had the worker closed with a task unacked, the broker would have put it back in the queue.
    expect(await queueDepth(cluster.env, `${cluster.env.AMQP_PREFIX}tasks.default`)).toBe(0)
    const final = await awaitFinal(gatewayUrl, ids, 10_000)
    expect([...final.values()].map((t) => t.status)).toEqual(ids.map(() => "SUCCESS"))
  })
})

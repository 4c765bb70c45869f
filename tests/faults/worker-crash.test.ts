import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { Runtimes } from "../runtimes.ts"
import {
  awaitFinal,
  type Cluster,
  killWorkersUnderLoad,
  report,
  startCluster,
  submitReviews,
  watchFinalEvents,
} from "./cluster.ts"

// Under Deno as under Bun: the guarantees come from the broker's acks and the store's inbox, whatever runs
// the services.
const KILL_DEPLOYMENTS: [string, Runtimes][] = [
  ["Bun", {}],
  ["Deno", { gateway: "deno", worker: "deno", store: "deno" }],
]

describe.each(KILL_DEPLOYMENTS)("%s workers killed with -9", (runtime, runtimes) => {
  let cluster: Cluster
  beforeAll(async () => {
    cluster = await startCluster(`worker-kill-${runtime.toLowerCase()}`, {}, { workers: 2, runtimes })
  })
  afterAll(async () => {
    await cluster?.[Symbol.asyncDispose]()
  })

  test("killed repeatedly while 5,000 tasks flow: every task ends final exactly once", async () => {
    const { figures, final } = await killWorkersUnderLoad(cluster, 5000)
    report(`${runtime} worker kill -9 under load`, figures)
    expect(figures.kills).toBeGreaterThanOrEqual(3)
    expect(figures).toMatchObject({
      accepted: 5000,
      final: 5000,
      lost: 0,
      doubled: 0,
      deadLettered: 0,
      refused: 0,
      failed: 0,
    })
    expect([...final.values()].every((t) => t.status === "SUCCESS" && t.attempts === 1)).toBe(true)
  })
})

describe("workers killed with -9", () => {
  let cluster: Cluster
  beforeAll(async () => {
    cluster = await startCluster("worker-crash", {}, { workers: 2 })
  })
  afterAll(async () => {
    await cluster?.[Symbol.asyncDispose]()
  })
  const gatewayUrl = () => cluster.gateway.url
  const redeliveries = () => cluster.workers.reduce((sum, w) => sum + w.count("task redelivered"), 0)

  test("a worker that dies after its outcome is confirmed but before the ack: one final state, attempts 1", async () => {
    await using finals = await watchFinalEvents(cluster.env)
    for (const worker of cluster.workers) worker.supervise()
    const restartsBefore = cluster.workers.reduce((sum, w) => sum + w.restarts, 0)
    const { accepted } = await submitReviews(gatewayUrl, {
      count: 1,
      concurrency: 1,
      path: "/test/flaky",
      body: () => ({
        crash_before_ack: true,
      }),
    })
    const [taskId = ""] = accepted

    const final = await awaitFinal(gatewayUrl, [taskId])
    // The redelivered copy runs again and reports again: same event id, so the store applies it once.
    await finals.received(taskId, 2)
    const restarts = cluster.workers.reduce((sum, w) => sum + w.restarts, 0) - restartsBefore
    report("crash between outcome and ack", {
      accepted: 1,
      final: final.size,
      lost: 1 - final.size,
      doubled: finals.doubled(),
      redeliveries: redeliveries(),
      deadLettered: 0,
      restarts,
    })
    expect(restarts).toBe(1)
    expect(final.get(taskId)).toMatchObject({
      status: "SUCCESS",
      attempts: 1,
      result: { succeeded_on_attempt: 1 },
    })
    expect(finals.doubled()).toBe(0)
  })

  test("a task that kills its worker on every delivery is dead-lettered after 3, and others still run", async () => {
    for (const worker of cluster.workers) worker.supervise()
    const restartsBefore = cluster.workers.reduce((sum, w) => sum + w.restarts, 0)
    const { accepted } = await submitReviews(gatewayUrl, {
      count: 1,
      concurrency: 1,
      path: "/test/flaky",
      body: () => ({ crash_worker: true }),
    })
    const [taskId = ""] = accepted

    const final = await awaitFinal(gatewayUrl, [taskId])
    const restarts = cluster.workers.reduce((sum, w) => sum + w.restarts, 0) - restartsBefore
    // At least REDELIVERY_LIMIT crashes; a few more when a killed worker's last ack dies with it
    // (the kernel resets a socket that still has unread deliveries), which redelivers a copy again.
    console.log(`[fault] crasher took down ${restarts} workers before it was dead-lettered`)
    expect(restarts).toBeGreaterThanOrEqual(3)
    expect(restarts).toBeLessThanOrEqual(8)
    expect(final.get(taskId)).toMatchObject({
      status: "FAILURE",
      error: "redelivered 3 times without finishing: it crashes or stalls its worker",
    })

    const after = await submitReviews(gatewayUrl, { count: 20, concurrency: 4 })
    const done = await awaitFinal(gatewayUrl, after.accepted)
    expect([...done.values()].map((t) => t.status)).toEqual(after.accepted.map(() => "SUCCESS"))
  })
})

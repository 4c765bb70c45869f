import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import {
  awaitFinal,
  type Cluster,
  queueDepth,
  report,
  startCluster,
  submitReviews,
  watchFinalEvents,
} from "./cluster.ts"

let cluster: Cluster
beforeAll(async () => {
  cluster = await startCluster("worker-crash", {}, { workers: 2 })
})
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]()
})

const gatewayUrl = () => cluster.gateway.url
const prefix = () => cluster.env.AMQP_PREFIX ?? ""
const deadLettered = async () =>
  (await queueDepth(cluster.env, `${prefix()}dead-letter.failed`)) +
  (await queueDepth(cluster.env, `${prefix()}dead-letter.poison`))
const redeliveries = () => cluster.workers.reduce((sum, w) => sum + w.count("task redelivered"), 0)

describe("workers killed with -9", () => {
  test("killed repeatedly while 5,000 tasks flow: every task ends final exactly once", async () => {
    await using finals = await watchFinalEvents(cluster.env)
    const deadBefore = await deadLettered()
    let submitting = true
    const load = submitReviews(gatewayUrl, { count: 5000, concurrency: 16 }).finally(() => {
      submitting = false
    })
    let kills = 0
    while (submitting) {
      await Bun.sleep(150)
      const victim = cluster.workers[kills % cluster.workers.length]
      await victim?.kill()
      kills++
      await victim?.start()
    }
    const { accepted, refused, failed } = await load
    expect(refused).toEqual([])
    expect(failed).toBe(0)

    const final = await awaitFinal(gatewayUrl, accepted)
    const figures = {
      accepted: accepted.length,
      final: final.size,
      lost: accepted.length - final.size,
      doubled: finals.doubled(),
      redeliveries: redeliveries(),
      deadLettered: (await deadLettered()) - deadBefore,
      kills,
    }
    report("worker kill -9 under load", figures)
    expect(kills).toBeGreaterThanOrEqual(3)
    expect(figures).toMatchObject({ accepted: 5000, final: 5000, lost: 0, doubled: 0, deadLettered: 0 })
    expect([...final.values()].every((t) => t.status === "SUCCESS" && t.attempts === 1)).toBe(true)
  })

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

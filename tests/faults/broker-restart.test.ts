import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { awaitFinal, type Cluster, report, startCluster, submitReviews, watchFinalEvents } from "./cluster.ts"
import { PrivateBroker } from "./private-broker.ts"

// The broker of this file's own: stopping or killing it never disturbs the shared one.
const broker = new PrivateBroker()
let cluster: Cluster
beforeAll(async () => {
  await broker.start()
  cluster = await startCluster("broker-restart", { AMQP_URL: broker.url, PUBLISH_TIMEOUT_MS: "2000" })
}, 120_000)
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]()
  await broker[Symbol.asyncDispose]()
})

const gatewayUrl = () => cluster.gateway.url
const services = () => [cluster.gateway, cluster.store, ...cluster.workers]
const redeliveries = () => cluster.workers.reduce((sum, w) => sum + w.count("task redelivered"), 0)

/** Wait until every service's /healthz answers `status` (they notice a lost connection within moments). */
async function expectHealth(status: 200 | 503, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  for (const service of services()) {
    while ((await fetch(`${service.url}/healthz`)).status !== status) {
      if (Date.now() > deadline)
        throw new Error(`${service.name} /healthz did not answer ${status} in ${timeoutMs} ms`)
      await Bun.sleep(50)
    }
  }
}

/** While the broker is away: every /healthz says so, and a submission gets a 503 with Retry-After, fast. */
async function expectDegraded() {
  await expectHealth(503, 5000)
  const started = performance.now()
  const res = await fetch(`${gatewayUrl()}/polarities`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ review: "nobody home" }),
  })
  const elapsedMs = performance.now() - started
  expect(res.status).toBe(503)
  expect(res.headers.get("retry-after")).toBe("2")
  expect(res.headers.get("content-type")).toBe("application/problem+json")
  // Bounded by PUBLISH_TIMEOUT_MS (2 s here) at worst; with the connection known down it is immediate.
  expect(elapsedMs).toBeLessThan(2500)
  return elapsedMs
}

describe("the broker goes away with tasks queued and in flight", () => {
  for (const [label, down, up] of [
    ["stopped and started", () => broker.stopApp(), () => broker.startApp()],
    ["killed with -9 and started again", () => broker.kill(), () => broker.start()],
  ] as const) {
    test(`${label}: no accepted task is lost, the gateway answers 503 meanwhile, consumers come back`, async () => {
      await using finals = await watchFinalEvents(cluster.env)
      const redeliveriesBefore = redeliveries()
      // Stop the worker for a moment so that some tasks are still queued when the broker goes.
      await cluster.workers[0]?.stop()
      const queued = await submitReviews(gatewayUrl, { count: 300, concurrency: 8 })
      await cluster.workers[0]?.start()
      const load = submitReviews(gatewayUrl, { count: 1500, concurrency: 8 })
      await Bun.sleep(200)
      await down()
      const fast503Ms = await expectDegraded()
      const { accepted, refused, failed } = await load
      await up()
      await expectHealth(200)
      await finals.reconnect()

      const all = [...queued.accepted, ...accepted]
      const final = await awaitFinal(gatewayUrl, all, 120_000)
      const figures = {
        accepted: all.length,
        final: final.size,
        lost: all.length - final.size,
        doubled: finals.doubled(),
        redeliveries: redeliveries() - redeliveriesBefore,
        deadLettered: [...final.values()].filter((t) => t.status !== "SUCCESS").length,
        refusedWhileDown: refused.length + failed,
        fast503Ms: Math.round(fast503Ms),
      }
      report(`broker ${label}`, figures)
      expect(refused.every((status) => status === 503)).toBe(true)
      expect(figures).toMatchObject({ lost: 0, doubled: 0, deadLettered: 0 })
    }, 240_000)
  }
})

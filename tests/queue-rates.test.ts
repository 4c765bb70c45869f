// Publish and deliver rates come from RabbitMQ's management API when RABBITMQ_MANAGEMENT_URL is set. The shared
// broker has no management plugin, so this file runs a private node that has one.
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { DashboardOverview } from "../shared/contracts.ts"
import { PrivateBroker } from "./faults/private-broker.ts"
import { eventually, postReview, type Stack, startStack } from "./support.ts"

const broker = new PrivateBroker({ management: true })
let stack: Stack
beforeAll(async () => {
  await broker.start()
  stack = await startStack("queue-rates", {
    AMQP_URL: broker.url,
    RABBITMQ_MANAGEMENT_URL: broker.managementUrl ?? "",
  })
}, 120_000)
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
  await broker[Symbol.asyncDispose]()
})

describe("queue rates with RABBITMQ_MANAGEMENT_URL", () => {
  test("publish and deliver rates of each queue come from the management API", async () => {
    const overview = await eventually(async () => {
      // Steady traffic while the broker samples its rates.
      await Promise.all(Array.from({ length: 20 }, (_, i) => postReview(stack, `lovely ${i}`)))
      await Bun.sleep(250)
      const res = await fetch(stack.url("/dashboard/api/overview"))
      const body = (await res.json()) as DashboardOverview
      const polarity = body.queues.queues.find((q) => q.name === stack.names.taskQueues.polarity)
      expect(body.queues.source).toBe("management")
      expect(polarity?.publish_rate).toBeGreaterThan(0)
      expect(polarity?.deliver_rate).toBeGreaterThan(0)
      return body
    }, 30_000)
    const events = overview.queues.queues.find((q) => q.name === stack.names.statusEventsQueue)
    expect(events?.publish_rate).toBeGreaterThan(0)
    expect(overview.queues.queues.every((q) => q.net_rate === null || typeof q.net_rate === "number")).toBe(
      true,
    )
  }, 60_000)
})

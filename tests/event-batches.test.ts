import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { Broker, brokerOptions, MAX_MESSAGE_BYTES } from "../shared/amqp.ts"
import { BrokerEnv, loadConfig } from "../shared/config.ts"
import { MAX_REVIEW_LENGTH, type TaskEvent } from "../shared/contracts.ts"
import { EventPublisher } from "../shared/events.ts"
import { createLogger } from "../shared/log.ts"
import { rawChannel, type Stack, startStack } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("event-batches")
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

describe("EventPublisher", () => {
  test("cuts a turn's events into messages a consumer accepts, however long the reviews", async () => {
    await using amqp = await rawChannel()
    const { name } = await amqp.channel.queueDeclare("", { exclusive: true, autoDelete: true })
    await amqp.channel.queueBind(name, stack.names.eventsExchange, "task.pending")
    const sizes: number[] = []
    let events = 0
    const all = Promise.withResolvers<void>()
    await amqp.channel.basicConsume(name, { noAck: true }, (msg) => {
      sizes.push(msg.bodySize)
      events += (JSON.parse(msg.bodyString() ?? "") as { events: unknown[] }).events.length
      if (events === 300) all.resolve()
    })

    const config = loadConfig(BrokerEnv, stack.env)
    const broker = await Broker.connect(
      brokerOptions("event-batches-test", config, createLogger("test", "error")),
    )
    try {
      const publisher = new EventPublisher(broker)
      // Cyrillic: two bytes of UTF-8 per character, 300 reviews of the longest kind in one turn.
      const review = "ж".repeat(MAX_REVIEW_LENGTH)
      const pending = Array.from(
        { length: 300 },
        (): TaskEvent => ({
          task_id: Bun.randomUUIDv7(),
          state: "PENDING",
          attempt: 0,
          run: 1,
          at: Date.now(),
          kind: "polarity:review",
          input: { review },
        }),
      )
      await Promise.all(pending.map((event) => publisher.emit(event)))
      await all.promise
    } finally {
      await broker.close()
    }
    expect(sizes.length).toBeGreaterThan(1)
    expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES)
  })
})

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { AMQPMessage } from "@cloudamqp/amqp-client"
import { MAX_COMMIT_BYTES } from "../services/status-store.ts"
import { Broker, brokerOptions, MAX_MESSAGE_BYTES } from "../shared/amqp.ts"
import { BrokerEnv, loadConfig } from "../shared/config.ts"
import { MAX_REVIEW_LENGTH, type TaskLookup } from "../shared/contracts.ts"
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

/** Every message the events exchange routes as `task.pending` from now on, handed to `seen` as it arrives. */
async function watchPendingMessages(
  amqp: Awaited<ReturnType<typeof rawChannel>>,
  seen: (msg: AMQPMessage) => void,
): Promise<void> {
  const { name } = await amqp.channel.queueDeclare("", { exclusive: true, autoDelete: true })
  await amqp.channel.queueBind(name, stack.names.eventsExchange, "task.pending")
  await amqp.channel.basicConsume(name, { noAck: true }, seen)
}

/** A PENDING event for each task id, all with this review, emitted in one turn as a gateway emits them. */
async function emitPending(taskIds: string[], review: string): Promise<void> {
  const config = loadConfig(BrokerEnv, stack.env)
  const broker = await Broker.connect(
    brokerOptions("event-batches-test", config, createLogger("test", "error")),
  )
  try {
    const publisher = new EventPublisher(broker)
    await Promise.all(
      taskIds.map((task_id) =>
        publisher.emit({
          task_id,
          state: "PENDING",
          attempt: 0,
          run: 1,
          at: Date.now(),
          kind: "polarity:review",
          input: { review },
        }),
      ),
    )
  } finally {
    await broker.close()
  }
}

const newTaskIds = (count: number) => Array.from({ length: count }, () => Bun.randomUUIDv7())

describe("EventPublisher", () => {
  test("cuts a turn's events into messages a consumer accepts, however long the reviews", async () => {
    await using amqp = await rawChannel()
    const sizes: number[] = []
    let events = 0
    const all = Promise.withResolvers<void>()
    await watchPendingMessages(amqp, (msg) => {
      sizes.push(msg.bodySize)
      events += (JSON.parse(msg.bodyString() ?? "") as { events: unknown[] }).events.length
      if (events === 300) all.resolve()
    })
    // Cyrillic: two bytes of UTF-8 per character, 300 reviews of the longest kind in one turn.
    await emitPending(newTaskIds(300), "ж".repeat(MAX_REVIEW_LENGTH))
    await all.promise
    expect(sizes.length).toBeGreaterThan(1)
    expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES)
  })
})

describe("the status store", () => {
  test("commits a backlog a slice at a time, so that no transaction holds it all in memory", async () => {
    const taskIds = newTaskIds(2000)
    const backlogBytes = await stack.restartStore(async () => {
      await using amqp = await rawChannel()
      let bytes = 0
      await watchPendingMessages(amqp, (msg) => {
        bytes += msg.bodySize
      })
      await emitPending(taskIds, "A long and thoughtful review of a small hotel. ".repeat(32))
      await Bun.sleep(200)
      return bytes
    })
    expect(backlogBytes ?? 0).toBeGreaterThan(4 * MAX_COMMIT_BYTES)

    for (let i = 0; i < taskIds.length; i += 1000) {
      const res = await fetch(stack.url("/polarities/tasks/lookup"), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ task_ids: taskIds.slice(i, i + 1000) }),
      })
      const { tasks } = (await res.json()) as TaskLookup
      expect(tasks.map((task) => task?.status)).toEqual(Array(1000).fill("PENDING"))
    }
    const metrics = await (await fetch(`${stack.store.url}/metrics`)).text()
    const commits = Number(
      /^polarity_event_commit_duration_seconds_count\{[^}]*\} (\d+)$/m.exec(metrics)?.[1],
    )
    // A slice ends with the message that takes it past the limit, which may add up to 256 KB more. In one
    // transaction, the whole backlog was one commit.
    expect(commits).toBeGreaterThanOrEqual(Math.floor((backlogBytes ?? 0) / (2 * MAX_COMMIT_BYTES)))
    expect(commits).toBeGreaterThan(1)
  })
})

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { quarantineRoutingKey, statusRpcKey, type Topology } from "../shared/topology.ts"
import {
  postReview,
  rawChannel,
  type Stack,
  startStack,
  takeMessages,
  taskBody,
  waitForFinal,
} from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("poison")
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const malformed: [string, Uint8Array][] = [
  ["not JSON", new TextEncoder().encode("this is not json")],
  ["bad UTF-8", new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
  ["wrong schema", new TextEncoder().encode(JSON.stringify({ task_id: "nope", review: 42 }))],
  [
    "__proto__ keys",
    new TextEncoder().encode(
      '{"__proto__": {"polluted": "yes"}, "constructor": {"prototype": {"polluted": "yes"}}}',
    ),
  ],
  ["empty", new Uint8Array()],
  ["over 1 MiB", new TextEncoder().encode(JSON.stringify({ review: "x".repeat(2 * 1024 * 1024) }))],
]

describe("a work-queue message of several tasks", () => {
  test("dead-letters a malformed task alone and runs the others", async () => {
    const good = (i: number) => ({
      task_id: Bun.randomUUIDv7(),
      kind: "polarity:review",
      review: `good ${i}`,
      submitted_at: Date.now(),
      attempt: 1,
    })
    const tasks = [good(1), { kind: "polarity:review", review: 42 }, good(2)]
    {
      await using amqp = await rawChannel()
      // Submitted as the gateway submits: the store applies a task's events only once it knows the task.
      const submitted = [tasks[0], tasks[2]].map((task) => ({
        task_id: (task as { task_id: string }).task_id,
        state: "PENDING",
        attempt: 0,
        run: 1,
        at: Date.now(),
        kind: "polarity:review",
        input: {},
      }))
      await amqp.channel.basicPublish(
        stack.names.eventsExchange,
        "task.pending",
        JSON.stringify({ events: submitted }),
      )
      await amqp.channel.basicPublish(stack.names.tasksExchange, "polarity", JSON.stringify({ tasks }), {
        deliveryMode: 2,
      })
    }
    const [letter] = await takeMessages(stack.names.poisonQueue, 1)
    expect(String(letter?.properties.headers?.["x-dead-letter-reason"])).toMatch(/^not a valid Task: /)
    expect(JSON.parse(letter?.bodyString() ?? "")).toEqual({ tasks: [tasks[1]] })
    for (const task of [tasks[0], tasks[2]]) {
      const final = await waitForFinal(stack, (task as { task_id: string }).task_id)
      expect(final.status).toBe("SUCCESS")
    }
  })
})

/** Every queue a service consumes, and the exchange and routing key that reach it. */
const consumedQueues: [string, (names: Topology) => { queue: string; exchange: string; key: string }][] = [
  [
    "the polarity work queue",
    (n) => ({ queue: n.taskQueues.polarity, exchange: n.tasksExchange, key: "polarity" }),
  ],
  [
    "the default work queue",
    (n) => ({ queue: n.taskQueues.default, exchange: n.tasksExchange, key: "default" }),
  ],
  [
    "the polarity quarantine queue",
    (n) => ({
      queue: n.quarantineQueues.polarity,
      exchange: n.tasksExchange,
      key: quarantineRoutingKey("polarity"),
    }),
  ],
  [
    "the default quarantine queue",
    (n) => ({
      queue: n.quarantineQueues.default,
      exchange: n.tasksExchange,
      key: quarantineRoutingKey("default"),
    }),
  ],
  [
    "the status store's event queue",
    (n) => ({ queue: n.statusEventsQueue, exchange: n.eventsExchange, key: "task.success" }),
  ],
  [
    "the status store's RPC queue",
    (n) => ({ queue: n.statusRpcQueue, exchange: n.rpcExchange, key: statusRpcKey("gateway") }),
  ],
]

describe("a malformed message on any queue is dead-lettered with its reason, and the consumer goes on", () => {
  for (const [label, route] of consumedQueues) {
    test(`on ${label}`, async () => {
      const { queue, exchange, key } = route(stack.names)
      {
        await using amqp = await rawChannel()
        // The RPC queue's consumer answers its caller's direct reply-to: these have one, so only the body is wrong.
        await amqp.channel.basicConsume("amq.rabbitmq.reply-to", { noAck: true }, () => {})
        for (const [, body] of malformed) {
          await amqp.channel.basicPublish(exchange, key, body, {
            replyTo: "amq.rabbitmq.reply-to",
            deliveryMode: 2,
          })
        }
      }
      const deadLettered = await takeMessages(stack.names.poisonQueue, malformed.length)
      expect(deadLettered.map((m) => m.properties.headers?.["x-original-queue"])).toEqual(
        malformed.map(() => queue),
      )
      // Consumers handle a prefetched batch concurrently, so the dead letters' order is not promised.
      const reasons = deadLettered.map((m) => String(m.properties.headers?.["x-dead-letter-reason"]))
      expect(reasons).toHaveLength(malformed.length)
      expect(reasons).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/not JSON/),
          expect.stringMatching(/not valid UTF-8/),
          expect.stringMatching(/not a valid/),
          expect.stringMatching(/not a valid/),
          expect.stringMatching(/empty body/),
          expect.stringMatching(/exceeds 1048576/),
        ]),
      )
      // The bodies are kept as they were, for an operator to inspect.
      const badUtf8 = deadLettered.find((m) =>
        /UTF-8/.test(String(m.properties.headers?.["x-dead-letter-reason"])),
      )
      expect(badUtf8?.body).toEqual(malformed[1]?.[1] ?? null)

      // The services run in this process: a polluted Object.prototype would show here.
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()

      const res = await postReview(stack, "good and happy", "?wait=10")
      expect(res.status).toBe(200)
      expect((await taskBody(res)).status).toBe("SUCCESS")
    })
  }
})

describe("a message put straight into a queue through the default exchange is dead-lettered, whatever it holds", () => {
  for (const [label, route] of consumedQueues) {
    test(`on ${label}`, async () => {
      const { queue } = route(stack.names)
      {
        await using amqp = await rawChannel()
        await amqp.channel.basicPublish("", queue, JSON.stringify({ events: [] }), { deliveryMode: 2 })
      }
      const [letter] = await takeMessages(stack.names.poisonQueue, 1)
      expect(letter?.properties.headers?.["x-original-queue"]).toBe(queue)
      expect(String(letter?.properties.headers?.["x-dead-letter-reason"])).toStartWith(
        "came through the default exchange, not through ",
      )
    })
  }
})

// The latency floor: one task at a time through the hops a single task needs in our design, with our client
// library, SQLite and nothing else. The publisher sends a persistent task into queue A and a persistent PENDING
// event into queue B, both confirmed → a consumer on A publishes a confirmed outcome event into queue B, and acks
// A after that confirm → a consumer on B commits each event to SQLite (WAL, synchronous=FULL), and after the
// outcome's commit sends a reply to the publisher. A sample is the time from the publishes to both confirms and
// the reply. The services do the same plus HTTP, validation, scoring and the status query: their single-task
// latency can't be below this on the same machine at the same time.
import { Database } from "bun:sqlite"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { AMQPSession } from "@cloudamqp/amqp-client"
import type { ReviewTask } from "../shared/contracts.ts"
import { deleteQueuesAndExchanges } from "../tests/broker.ts"
import { eventBody, taskBody } from "./ceiling.ts"
import { type Percentiles, percentiles } from "./load.ts"

export interface FloorOptions {
  amqpUrl: string
  prefix: string
  samples: number
}

export interface FloorResult {
  /** Publish → confirm and reply, the whole chain. */
  chain: Percentiles
  /** Publish → confirms of the task and its PENDING: two persistent messages, fsynced by the broker. */
  confirm: Percentiles
}

const WARMUP = 50
const PENDING = "pending"

export function floorNames(prefix: string) {
  return {
    tasksQueue: `${prefix}floor.tasks`,
    eventsQueue: `${prefix}floor.events`,
    repliesQueue: `${prefix}floor.replies`,
  }
}

/** One connection per role, as in the services: publisher (the gateway), relay (the worker), sink (the store). */
export async function runLatencyFloor(options: FloorOptions): Promise<FloorResult> {
  const names = floorNames(options.prefix)
  const dataDir = mkdtempSync(join(tmpdir(), "polarity-floor-"))
  const db = new Database(join(dataDir, "floor.sqlite"), { create: true })
  db.run("PRAGMA journal_mode = WAL")
  db.run("PRAGMA synchronous = FULL")
  db.run("CREATE TABLE events (task_id TEXT PRIMARY KEY, body TEXT NOT NULL)")
  const insert = db.query<void, [string, string]>("INSERT INTO events VALUES (?, ?)")
  const sessions = await Promise.all(
    ["bench-floor-publisher", "bench-floor-relay", "bench-floor-sink"].map((name) =>
      AMQPSession.connect(options.amqpUrl, { name }),
    ),
  )
  const [publisher, relay, sink] = sessions as [AMQPSession, AMQPSession, AMQPSession]
  try {
    const durable = { durable: true, autoDelete: false, exclusive: false }
    const tasksIn = await publisher.queue(names.tasksQueue, durable)
    const tasksOut = await relay.queue(names.tasksQueue, durable)
    const eventsIn = await relay.queue(names.eventsQueue, durable)
    const eventsOut = await sink.queue(names.eventsQueue, durable)
    const repliesIn = await sink.queue(names.repliesQueue, durable)
    const repliesOut = await publisher.queue(names.repliesQueue, durable)

    const pendingIn = await publisher.queue(names.eventsQueue, durable)
    let replied = Promise.withResolvers<void>()
    await repliesOut.subscribe({ noAck: true }, () => replied.resolve())
    await eventsOut.subscribe({ prefetch: 500, manualAck: true }, async (msg) => {
      const body = msg.bodyString() ?? ""
      insert.run(crypto.randomUUID(), body)
      if (msg.properties.type !== PENDING) await repliesIn.publish(body, { deliveryMode: 1 })
      await msg.ack()
    })
    await tasksOut.subscribe({ prefetch: 64, manualAck: true }, async (msg) => {
      const { task_id } = JSON.parse(msg.bodyString() ?? "{}") as ReviewTask
      await eventsIn.publish(eventBody(task_id))
      await msg.ack()
    })

    const chain: number[] = []
    const confirm: number[] = []
    for (let i = 0; i < WARMUP + options.samples; i++) {
      replied = Promise.withResolvers<void>()
      const start = performance.now()
      const task = taskBody(i)
      await Promise.all([tasksIn.publish(task), pendingIn.publish(task, { type: PENDING })])
      const confirmed = performance.now()
      await replied.promise
      if (i < WARMUP) continue
      confirm.push(confirmed - start)
      chain.push(performance.now() - start)
    }
    return { chain: percentiles(chain), confirm: percentiles(confirm) }
  } finally {
    await Promise.allSettled(sessions.map((session) => session.stop()))
    await deleteQueuesAndExchanges({ queues: Object.values(names), exchanges: [] }, options.amqpUrl)
    db.close()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

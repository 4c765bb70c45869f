// The latency floor: one task at a time through the hops a single task needs in our design, in three processes
// as our three services are, with our client library, SQLite and nothing else. The publisher sends a persistent
// task into queue A and a persistent PENDING event into queue B, both confirmed → the relay, consuming A,
// publishes a confirmed outcome event into B and acks A after that confirm → the sink, consuming B, commits each
// event to SQLite (WAL, synchronous=FULL), and after the outcome's commit replies to the publisher. A sample is
// the time from the publishes to both confirms and the reply. The services do the same plus HTTP, validation,
// scoring and the status query: their single-task latency can't be below this on the same machine at the same time.
// Run as `bun bench/floor.ts relay|sink <amqp url> <prefix> <data dir>` it is one of the two consuming roles.
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
  /** Review length, as the latency phase submits them. */
  reviewBytes: number
}

export interface FloorResult {
  /** Publish → confirms and reply, the whole chain. */
  chain: Percentiles
  /** Publish → confirms of the task and its PENDING: two persistent messages, fsynced by the broker. */
  confirm: Percentiles
}

const WARMUP = 50
const PENDING = "pending"
const ROLES = ["relay", "sink"] as const
type Role = (typeof ROLES)[number]
const durable = { durable: true, autoDelete: false, exclusive: false }

export function floorNames(prefix: string) {
  return {
    tasksQueue: `${prefix}floor.tasks`,
    eventsQueue: `${prefix}floor.events`,
    repliesQueue: `${prefix}floor.replies`,
  }
}

/** The relay (the worker) or the sink (the store), consuming until its process is killed. */
async function runRole(role: Role, amqpUrl: string, prefix: string, dataDir: string): Promise<void> {
  const names = floorNames(prefix)
  const session = await AMQPSession.connect(amqpUrl, { name: `bench-floor-${role}` })
  const events = await session.queue(names.eventsQueue, durable)
  if (role === "relay") {
    const tasks = await session.queue(names.tasksQueue, durable)
    await tasks.subscribe({ prefetch: 64, manualAck: true }, async (msg) => {
      const { task_id } = JSON.parse(msg.bodyString() ?? "{}") as ReviewTask
      await events.publish(eventBody(task_id))
      await msg.ack()
    })
  } else {
    const db = new Database(join(dataDir, "floor.sqlite"), { create: true })
    db.run("PRAGMA journal_mode = WAL")
    db.run("PRAGMA synchronous = FULL")
    db.run("CREATE TABLE events (event_id TEXT PRIMARY KEY, body TEXT NOT NULL)")
    const insert = db.query<void, [string, string]>("INSERT INTO events VALUES (?, ?)")
    const replies = await session.queue(names.repliesQueue, durable)
    await events.subscribe({ prefetch: 500, manualAck: true }, async (msg) => {
      const body = msg.bodyString() ?? ""
      insert.run(crypto.randomUUID(), body)
      if (msg.properties.type !== PENDING) await replies.publish(body, { deliveryMode: 1 })
      await msg.ack()
    })
  }
  process.stdout.write("ready\n")
}

/** Starts a role in a process of its own; resolves once it consumes. */
async function spawnRole(role: Role, options: FloorOptions, dataDir: string) {
  const child = Bun.spawn(
    [process.execPath, import.meta.path, role, options.amqpUrl, options.prefix, dataDir],
    {
      stdout: "pipe",
      stderr: "inherit",
    },
  )
  const reader = child.stdout.getReader()
  const { value } = await reader.read()
  reader.releaseLock()
  if (!new TextDecoder().decode(value).startsWith("ready")) throw new Error(`floor ${role} did not start`)
  return child
}

export async function runLatencyFloor(options: FloorOptions): Promise<FloorResult> {
  const names = floorNames(options.prefix)
  const dataDir = mkdtempSync(join(tmpdir(), "polarity-floor-"))
  const session = await AMQPSession.connect(options.amqpUrl, { name: "bench-floor-publisher" })
  const children: ReturnType<typeof Bun.spawn>[] = []
  try {
    const tasks = await session.queue(names.tasksQueue, durable)
    const events = await session.queue(names.eventsQueue, durable)
    const replies = await session.queue(names.repliesQueue, durable)
    let replied = Promise.withResolvers<void>()
    await replies.subscribe({ noAck: true }, () => replied.resolve())
    for (const role of ROLES) children.push(await spawnRole(role, options, dataDir))

    const chain: number[] = []
    const confirm: number[] = []
    for (let i = 0; i < WARMUP + options.samples; i++) {
      replied = Promise.withResolvers<void>()
      const task = taskBody(i, options.reviewBytes)
      const start = performance.now()
      await Promise.all([tasks.publish(task), events.publish(task, { type: PENDING })])
      const confirmed = performance.now()
      await replied.promise
      if (i < WARMUP) continue
      confirm.push(confirmed - start)
      chain.push(performance.now() - start)
    }
    return { chain: percentiles(chain), confirm: percentiles(confirm) }
  } finally {
    for (const child of children) child.kill()
    await Promise.allSettled([...children.map((child) => child.exited), session.stop()])
    await deleteQueuesAndExchanges({ queues: Object.values(names), exchanges: [] }, options.amqpUrl)
    rmSync(dataDir, { recursive: true, force: true })
  }
}

if (import.meta.main) {
  const [role, amqpUrl, prefix, dataDir] = process.argv.slice(2)
  if (!ROLES.includes(role as Role) || !amqpUrl || !prefix || !dataDir) {
    console.error("usage: bun bench/floor.ts relay|sink <amqp url> <prefix> <data dir>")
    process.exit(2)
  }
  await runRole(role as Role, amqpUrl, prefix, dataDir)
}

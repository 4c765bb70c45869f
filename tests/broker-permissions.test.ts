// The broker as a boundary: on a private node, each service runs as a RabbitMQ user of its own, made by the
// rabbitmqctl lines of docs/security.md (generated from the topology), and the topology is declared by the
// operator. The whole path still works, and a publish, a bind or a declare across a trust boundary is refused
// by the broker itself (ACCESS_REFUSED).
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { AMQPClient } from "@cloudamqp/amqp-client"
import {
  brokerDefinitions,
  brokerUsers,
  passwordVariable,
  rabbitmqctlScript,
} from "../scripts/broker-access.ts"
import { topologyOptions } from "../shared/amqp.ts"
import { BrokerEnv, loadConfig } from "../shared/config.ts"
import type { WorkerRecord } from "../shared/contracts.ts"
import {
  BARRIER_KEY,
  CONTROL_BROADCAST_KEY,
  delayEntryExchange,
  delayRoutingKey,
  eventRoutingKey,
  QUEUE_PAUSE_KEY,
  quarantineRoutingKey,
  retryRoutingKey,
  SERVICES,
  type Service,
  statusRpcKey,
  type Topology,
  type TopologyOptions,
  WORKER_HEARTBEAT_KEY,
} from "../shared/topology.ts"
import { PrivateBroker } from "./faults/private-broker.ts"
import {
  askStore,
  eventually,
  postReview,
  type Stack,
  startStack,
  submitFlaky,
  taskBody,
  uniquePrefix,
  waitForFinal,
} from "./support.ts"

const passwords = Object.fromEntries(SERVICES.map((s) => [s, `${s}-${crypto.randomUUID()}`])) as Record<
  Service,
  string
>
const passwordEnv = Object.fromEntries(SERVICES.map((s) => [passwordVariable(s), passwords[s]]))
const ADMIN_TOKEN = "a".repeat(40)
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }

/** A completion webhook's receiver, at a loopback address the allow list names. */
const RECEIVER_ADDRESS = "127.0.0.2"
let receiver: ReturnType<typeof Bun.serve> | undefined
const webhooks: string[] = []
let node: PrivateBroker
let stack: Stack
let options: TopologyOptions
let urlOf: (service: Service) => string

beforeAll(async () => {
  node = new PrivateBroker()
  await node.start()
  const prefix = uniquePrefix("permissions")
  const env = { AMQP_URL: node.url, AMQP_PREFIX: prefix, RETRY_BASE_DELAY_MS: "10", MAX_RETRIES: "2" }
  options = topologyOptions(loadConfig(BrokerEnv, env))
  node.shell(rabbitmqctlScript(options, "/"), passwordEnv)
  const declared = Bun.spawnSync(["bun", "scripts/broker-access.ts", "declare"], {
    env: { ...process.env, ...env },
    stderr: "pipe",
  })
  expect(declared.stderr.toString()).toBe(`topology of prefix "${prefix}" declared\n`)
  const port = new URL(node.url).port
  urlOf = (service) =>
    `amqp://${encodeURIComponent(`${prefix}${service}`)}:${passwords[service]}@127.0.0.1:${port}`
  receiver = Bun.serve({
    port: 0,
    hostname: RECEIVER_ADDRESS,
    fetch: async (req) => {
      webhooks.push(await req.text())
      return new Response(null, { status: 204 })
    },
  })
  stack = await startStack(
    "permissions",
    {
      ...env,
      ENABLE_TEST_TASKS: "true",
      ADMIN_TOKEN,
      WORKER_HEARTBEAT_MS: "100",
      WEBHOOK_SECRET: "whsec_cGVybWlzc2lvbnMtdGVzdC1zZWNyZXQtb2YtMzI",
      WEBHOOK_ALLOW_HOSTS: RECEIVER_ADDRESS,
    },
    Object.fromEntries(SERVICES.map((s) => [s, { AMQP_URL: urlOf(s) }])),
  )
}, 120_000)

afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
  receiver?.stop(true)
  await node?.[Symbol.asyncDispose]()
}, 60_000)

describe("services running as users of their own", () => {
  test("a review is scored end to end, and an unknown id is a 404 after the store caught up", async () => {
    const res = await postReview(stack, "good and happy", "?wait=10")
    expect(res.status).toBe(200)
    expect((await taskBody(res)).status).toBe("SUCCESS")
    expect((await fetch(stack.url(`/polarities/tasks/${crypto.randomUUID()}`))).status).toBe(404)
  })

  test("a delayed task goes down the delay ladder to its work queue", async () => {
    const res = await fetch(stack.url("/polarities"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ review: "later, please", countdown: 0.3 }),
    })
    expect(res.status).toBe(202)
    expect((await waitForFinal(stack, (await taskBody(res)).task_id)).status).toBe("SUCCESS")
  })

  test("a completion webhook goes down the delay ladder to a worker, which posts it", async () => {
    const res = await fetch(stack.url("/polarities"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        review: "tell me",
        callback_url: `http://${RECEIVER_ADDRESS}:${receiver?.port}/done`,
      }),
    })
    const { task_id } = await taskBody(res)
    await eventually(async () => expect(webhooks.some((body) => body.includes(task_id))).toBe(true), 15_000)
  })

  test("the gateway asks the workers over the control exchange, and they answer", async () => {
    const res = await fetch(stack.url("/admin/workers"), { headers: admin })
    expect(res.status).toBe(200)
    const body = (await res.json()) as { workers: { status: string; ping_ms: number | null }[] }
    expect(body.workers.filter((w) => w.status === "online" && typeof w.ping_ms === "number")).toHaveLength(1)
  })

  test("a failed attempt is retried through the retry exchange", async () => {
    const taskId = await submitFlaky(stack, { fail_times: 1 })
    expect(await waitForFinal(stack, taskId)).toMatchObject({ status: "SUCCESS", attempts: 2 })
  })

  test("a failed task is dead-lettered, listed and replayed", async () => {
    const taskId = await submitFlaky(stack, { fail_times: 1, non_retryable: true })
    expect((await waitForFinal(stack, taskId)).status).toBe("FAILURE")
    await eventually(async () => {
      const listing = await fetch(stack.url("/admin/dead-letters/failed"), { headers: admin })
      expect(JSON.stringify(await listing.json())).toContain(taskId)
    })
    const replay = await fetch(stack.url("/admin/dead-letters/failed/replay"), {
      method: "POST",
      headers: admin,
    })
    expect(((await replay.json()) as { task_ids: string[] }).task_ids).toEqual([taskId])
    await eventually(async () => expect((await waitForFinal(stack, taskId)).status).toBe("SUCCESS"), 15_000)
  })

  test("a task revoked while the worker is away is skipped by the worker, which asks the store at start", async () => {
    const taskId = await stack.restartWorker(async () => {
      const { task_id } = await taskBody(await postReview(stack, "revoke me"))
      const revoked = await fetch(stack.url(`/polarities/tasks/${task_id}`), { method: "DELETE" })
      expect((await taskBody(revoked)).status).toBe("REVOKED")
      return task_id
    })
    const after = await postReview(stack, "after the revoke", "?wait=10")
    expect((await taskBody(after)).status).toBe("SUCCESS")
    expect((await waitForFinal(stack, taskId ?? "")).status).toBe("REVOKED")
  })

  test("a task's events stream to a client, and the worker's heartbeats reach the store", async () => {
    const { task_id } = await taskBody(await postReview(stack, "stream me"))
    const stream = await (await fetch(stack.url(`/polarities/tasks/${task_id}/events`))).text()
    expect(stream).toContain("event: SUCCESS")
    await eventually(async () => {
      const { workers } = (await askStore(stack, { op: "workers" })) as { workers: WorkerRecord[] }
      expect(workers.filter((w) => w.status === "online")).toHaveLength(1)
    })
  })
})

/** Connect as a service's user, do one thing on a fresh channel with confirms, and say how it went. */
async function attempt(
  service: Service,
  act: (channel: Awaited<ReturnType<AMQPClient["channel"]>>, names: Topology) => Promise<unknown>,
): Promise<string> {
  const client = new AMQPClient(urlOf(service), undefined, null)
  await client.connect()
  try {
    const channel = await client.channel()
    await channel.confirmSelect()
    await act(channel, stack.names)
    return "allowed"
  } catch (err) {
    return (err as Error).message.match(/ACCESS_REFUSED/)?.[0] ?? (err as Error).message
  } finally {
    await client.close().catch(() => {})
  }
}

const body = JSON.stringify({ forged: true })
const publish =
  (exchange: (names: Topology) => string, key: (names: Topology) => string) =>
  (channel: Awaited<ReturnType<AMQPClient["channel"]>>, names: Topology) =>
    channel.basicPublish(exchange(names), key(names), body, { deliveryMode: 2 })
const events = (names: Topology) => names.eventsExchange
const tasks = (names: Topology) => names.tasksExchange
const key = (routingKey: string) => () => routingKey

describe("a publish across a trust boundary is refused by the broker", () => {
  const refused: [string, Service, ReturnType<typeof publish>][] = [
    ["the gateway publishes a worker's outcome", "gateway", publish(events, key(eventRoutingKey("SUCCESS")))],
    ["the gateway publishes a STARTED", "gateway", publish(events, key(eventRoutingKey("STARTED")))],
    ["the gateway publishes a FAILURE", "gateway", publish(events, key(eventRoutingKey("FAILURE")))],
    [
      "the gateway publishes the store's REVOKED",
      "gateway",
      publish(events, key(eventRoutingKey("REVOKED"))),
    ],
    ["the gateway publishes a heartbeat", "gateway", publish(events, key(WORKER_HEARTBEAT_KEY))],
    ["the gateway publishes the store's barrier", "gateway", publish(events, key(BARRIER_KEY))],
    [
      "the gateway publishes a retry copy",
      "gateway",
      publish((n) => n.retryExchange, key("retry.10.polarity")),
    ],
    [
      "the gateway publishes to the quarantine",
      "gateway",
      publish(tasks, key(quarantineRoutingKey("polarity"))),
    ],
    [
      "the gateway asks the store as a worker",
      "gateway",
      publish((n) => n.rpcExchange, key(statusRpcKey("polarity-worker"))),
    ],
    [
      "the gateway publishes into the store's queue directly",
      "gateway",
      publish(
        () => "",
        (n) => n.statusEventsQueue,
      ),
    ],
    ["a worker publishes a submission", "polarity-worker", publish(tasks, key("polarity"))],
    ["a worker publishes a PENDING", "polarity-worker", publish(events, key(eventRoutingKey("PENDING")))],
    [
      "a worker publishes the store's REVOKED",
      "polarity-worker",
      publish(events, key(eventRoutingKey("REVOKED"))),
    ],
    [
      "a worker asks the store as the gateway",
      "polarity-worker",
      publish((n) => n.rpcExchange, key(statusRpcKey("gateway"))),
    ],
    [
      "a worker publishes a delayed submission",
      "polarity-worker",
      publish(delayEntryExchange, () => delayRoutingKey(1, "polarity")),
    ],
    [
      "a worker commands the workers",
      "polarity-worker",
      publish((n) => n.controlExchange, key(CONTROL_BROADCAST_KEY)),
    ],
    [
      "the gateway publishes a webhook delivery",
      "gateway",
      publish(delayEntryExchange, () => delayRoutingKey(0, "webhook")),
    ],
    [
      "the store commands the workers",
      "status-store",
      publish((n) => n.controlExchange, key(CONTROL_BROADCAST_KEY)),
    ],
    [
      "the store publishes a worker's outcome",
      "status-store",
      publish(events, key(eventRoutingKey("SUCCESS"))),
    ],
    [
      "the store publishes a retry copy",
      "status-store",
      publish((n) => n.retryExchange, key("retry.10.default")),
    ],
  ]
  for (const [label, service, act] of refused) {
    test(label, async () => expect(await attempt(service, act)).toBe("ACCESS_REFUSED"))
  }

  // The same users, within their rights: so that a refusal above is the boundary, not a broken user.
  const allowed: [string, Service, ReturnType<typeof publish>][] = [
    ["the gateway publishes a submission", "gateway", publish(tasks, key("polarity"))],
    ["the gateway publishes a PENDING", "gateway", publish(events, key(eventRoutingKey("PENDING")))],
    ["a worker publishes an outcome", "polarity-worker", publish(events, key(eventRoutingKey("SUCCESS")))],
    [
      "a worker publishes to the quarantine",
      "polarity-worker",
      publish(tasks, key(quarantineRoutingKey("polarity"))),
    ],
    [
      "a worker publishes a retry copy",
      "polarity-worker",
      publish(
        (n) => n.retryExchange,
        () => retryRoutingKey(10, "polarity"),
      ),
    ],
    ["the store publishes a REVOKED", "status-store", publish(events, key(eventRoutingKey("REVOKED")))],
    ["the store publishes a scheduled task", "status-store", publish(tasks, key("default"))],
    ["the store publishes a queue's pause", "status-store", publish(events, key(QUEUE_PAUSE_KEY))],
  ]
  for (const [label, service, act] of allowed) {
    test(`but ${label}`, async () => expect(await attempt(service, act)).toBe("allowed"))
  }
  test("but the gateway purges a work queue (an operator's purge)", async () => {
    expect(await attempt("gateway", (channel, names) => channel.queuePurge(names.taskQueues.default))).toBe(
      "allowed",
    )
  })
})

describe("nor can a service read, bind or change what is not its own", () => {
  const cases: [string, Service, Parameters<typeof attempt>[1]][] = [
    [
      "the store purges a work queue",
      "status-store",
      (channel, names) => channel.queuePurge(names.taskQueues.polarity),
    ],
    [
      "a worker listens to every task event",
      "polarity-worker",
      async (channel, names) => {
        const { name } = await channel.queueDeclare("", { exclusive: true })
        await channel.queueBind(name, names.eventsExchange, "task.#")
      },
    ],
    [
      "the gateway listens to heartbeats",
      "gateway",
      async (channel, names) => {
        const { name } = await channel.queueDeclare("", { exclusive: true })
        await channel.queueBind(name, names.eventsExchange, WORKER_HEARTBEAT_KEY)
      },
    ],
    [
      "the gateway consumes the store's events",
      "gateway",
      (channel, names) => channel.basicConsume(names.statusEventsQueue, {}, () => {}),
    ],
    [
      "a worker consumes the store's requests",
      "polarity-worker",
      (channel, names) => channel.basicConsume(names.statusRpcQueue, {}, () => {}),
    ],
    [
      "the store consumes a work queue",
      "status-store",
      (channel, names) => channel.basicConsume(names.taskQueues.polarity, {}, () => {}),
    ],
    [
      "the gateway deletes a work queue",
      "gateway",
      (channel, names) => channel.queueDelete(names.taskQueues.polarity),
    ],
    [
      "a worker deletes the store's queue",
      "polarity-worker",
      (channel, names) => channel.queueDelete(names.statusEventsQueue),
    ],
    [
      "the store declares an exchange",
      "status-store",
      (channel) => channel.exchangeDeclare("rogue", "fanout"),
    ],
  ]
  for (const [label, service, act] of cases) {
    test(label, async () => expect(await attempt(service, act)).toBe("ACCESS_REFUSED"))
  }
})

describe("the definitions file grants what the rabbitmqctl lines grant", () => {
  test("same users, permissions, topic permissions, exchanges, queues and bindings", async () => {
    const dir = mkdtempSync(join(tmpdir(), "definitions-"))
    try {
      const file = join(dir, "definitions.json")
      writeFileSync(file, JSON.stringify(brokerDefinitions(options, { vhost: "defs", passwords })))
      chmodSync(dir, 0o755)
      chmodSync(file, 0o644)
      node.rabbitmqctl("import_definitions", file)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
    const exported = JSON.parse(node.rabbitmqctl("export_definitions", "-", "--silent")) as Record<
      string,
      Record<string, unknown>[]
    >
    // The running services' listeners (server-named `amq.gen-…` queues) are no part of the topology.
    const ofVhost = (section: string, vhost: string) =>
      (exported[section] ?? [])
        .filter(
          (item) => item.vhost === vhost && item.destination?.toString().startsWith("amq.gen-") !== true,
        )
        .filter((item) => JSON.stringify(item).includes(options.prefix))
        .map(({ vhost: _, ...item }) => JSON.stringify(item, Object.keys(item).toSorted()))
        .toSorted()
    for (const section of ["permissions", "topic_permissions", "exchanges", "queues", "bindings"]) {
      const declared = ofVhost(section, "/")
      expect(declared.length).toBeGreaterThan(0)
      expect(ofVhost(section, "defs")).toEqual(declared)
    }
    // The users now hold the definitions' password hashes: each still logs in with its password.
    for (const service of SERVICES) expect(await attempt(service, async () => {})).toBe("allowed")
    const users = (exported.users ?? []).filter((u) => String(u.name).startsWith(options.prefix))
    expect(new Map(users.map(({ name, tags }) => [name, tags]))).toEqual(
      new Map(brokerUsers(options).map(({ name, tags }) => [name, tags])),
    )
  })
})

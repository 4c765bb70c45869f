// A real three-node RabbitMQ cluster of the test's own, set up as docs/deploy.md says: quorum queues declared
// by the operator once the cluster has formed, and each service as a broker user of its own (which may not
// declare anything) given all three addresses. Then the node they are connected to, which leads some of the
// queues, is killed with -9 while 5,000 tasks flow. Every accepted task must end once, and the services must
// carry on against the survivors.
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { passwordVariable, rabbitmqctlScript } from "../../scripts/broker-access.ts"
import { topologyOptions } from "../../shared/amqp.ts"
import { BrokerEnv, loadConfig } from "../../shared/config.ts"
import type { DashboardOverview } from "../../shared/contracts.ts"
import { allNames, SERVICES, type Service } from "../../shared/topology.ts"
import type { ServiceName } from "../runtimes.ts"
import { uniquePrefix } from "../support.ts"
import {
  awaitFinal,
  type Cluster,
  report,
  type ServiceProcess,
  startCluster,
  submitReviews,
  watchFinalEvents,
} from "./cluster.ts"
import { type PrivateBroker, PrivateCluster } from "./private-broker.ts"

const TASKS = 5000

const brokers = new PrivateCluster(3)
const [first, second] = brokers.nodes as [PrivateBroker, PrivateBroker, PrivateBroker]
const prefix = uniquePrefix("rabbitmq-cluster")
const passwords = Object.fromEntries(SERVICES.map((s) => [s, crypto.randomUUID()])) as Record<Service, string>

/** Every node's address, as the service's own user. */
function addressesOf(service: Service): string {
  return brokers.nodes
    .map((node) => {
      const url = new URL(node.url)
      url.username = `${prefix}${service}`
      url.password = passwords[service]
      return url.toString()
    })
    .join(",")
}

/** As the operator: the services' users (on one node, for the whole cluster), then the quorum topology. */
function setUpBroker(env: Record<string, string>): void {
  const passwordEnv = Object.fromEntries(SERVICES.map((s) => [passwordVariable(s), passwords[s]]))
  first.shell(rabbitmqctlScript(topologyOptions(loadConfig(BrokerEnv, env)), "/"), passwordEnv)
  const declare = Bun.spawnSync([process.execPath, "scripts/broker-access.ts", "declare"], {
    env: { ...process.env, ...env },
    stderr: "pipe",
  })
  if (!declare.success) throw new Error(`declaring the topology failed: ${declare.stderr.toString()}`)
}

let stack: Cluster
beforeAll(async () => {
  try {
    await brokers.start()
    // The operator's settings: an administrator (guest) on every node.
    const env = {
      AMQP_URL: brokers.urls,
      AMQP_PREFIX: prefix,
      QUEUE_TYPE: "quorum",
      PUBLISH_TIMEOUT_MS: "3000",
    }
    setUpBroker(env)
    const serviceEnv: Record<ServiceName, Record<string, string>> = {
      gateway: { AMQP_URL: addressesOf("gateway") },
      worker: { AMQP_URL: addressesOf("polarity-worker") },
      store: { AMQP_URL: addressesOf("status-store") },
    }
    stack = await startCluster("rabbitmq-cluster", env, {
      workers: 2,
      deleteTopologyAfter: false,
      serviceEnv,
    })
  } catch (err) {
    await brokers[Symbol.asyncDispose]()
    throw err
  }
}, 300_000)
afterAll(async () => {
  try {
    await stack?.[Symbol.asyncDispose]()
  } finally {
    await brokers[Symbol.asyncDispose]()
  }
}, 120_000)

const gatewayUrl = () => stack.gateway.url
const services = () => [stack.gateway, stack.store, ...stack.workers]
const redeliveries = () => stack.workers.reduce((sum, w) => sum + w.count("task redelivered"), 0)

interface QueueInfo {
  name: string
  type: string
  leader: string
  members: string[]
}

/** The stack's queues as the cluster reports them, asked of a node that stays up. */
function stackQueues(): QueueInfo[] {
  return second
    .ctlJson<QueueInfo[]>(["list_queues", "name", "type", "leader", "members"])
    .filter((queue) => queue.name.startsWith(stack.env.AMQP_PREFIX ?? "?"))
}

/** The connection name of each service process (its session's, not the short ones that check the topology). */
const serviceConnections = () =>
  ["gateway", "status-store", ...stack.workers.map(() => "polarity-worker")].toSorted()

/** The AMQP port (so the node) each service's session is connected to, as the cluster reports it. */
function servicePorts(): { name: string; port: number }[] {
  const connections = second.ctlJson<{ port: number; client_properties: [string, string, unknown][] }[]>([
    "list_connections",
    "port",
    "client_properties",
  ])
  return connections
    .map(({ port, client_properties }) => ({
      name: String(client_properties.find(([key]) => key === "connection_name")?.[2]),
      port,
    }))
    .filter((connection) => serviceConnections().includes(connection.name))
}
const portOf = (node: PrivateBroker) => Number(new URL(node.url).port)

/** Wait until `service` answers /healthz with 200 (bounded: a service that never comes back fails the test). */
async function healthy(service: ServiceProcess, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while ((await fetch(`${service.url}/healthz`).catch(() => null))?.status !== 200) {
    if (Date.now() > deadline) throw new Error(`${service.name} not healthy within ${timeoutMs} ms`)
    await Bun.sleep(100)
  }
}

/** Wait until `check` holds, polling; its last failure is the test's. */
async function until(check: () => void, timeoutMs = 120_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; ; await Bun.sleep(500)) {
    try {
      return check()
    } catch (err) {
      if (Date.now() > deadline) throw err
    }
  }
}

describe("a three-node RabbitMQ cluster with QUEUE_TYPE=quorum", () => {
  test("every queue of the topology is a quorum queue with a member on each node", () => {
    const expected = allNames(topologyOptions(loadConfig(BrokerEnv, stack.env))).queues
    const queues = stackQueues()
    expect(queues.map((q) => q.name).toSorted()).toEqual(expected.toSorted())
    const nodes = brokers.nodes.map((node) => node.node).toSorted()
    for (const queue of queues) {
      expect({ name: queue.name, type: queue.type, members: queue.members.toSorted() }).toEqual({
        name: queue.name,
        type: "quorum",
        members: nodes,
      })
    }
  })

  test(`kill -9 of the node the services use, mid-run: ${TASKS} tasks, none lost or doubled, the services move to the survivors`, async () => {
    // Every service takes the first address; leaders are spread (queue_leader_locator = balanced), so the first
    // node leads some of the queues and the others the rest.
    expect(servicePorts().map((c) => c.port)).toEqual(serviceConnections().map(() => portOf(first)))
    const ledByFirst = stackQueues().filter((q) => q.leader === first.node).length
    expect(ledByFirst).toBeGreaterThan(0)

    await using finals = await watchFinalEvents(stack.env, { url: second.url, queueType: "quorum" })
    const redeliveriesBefore = redeliveries()
    const halfway = Promise.withResolvers<void>()
    let acceptedCount = 0
    let killedAt = 0
    let firstAcceptedAfterKill = 0
    const load = submitReviews(gatewayUrl, {
      count: TASKS,
      retryWithKey: `${stack.env.AMQP_PREFIX}review`,
      onAccepted: (_, sentAt) => {
        if (++acceptedCount >= TASKS / 3) halfway.resolve()
        if (killedAt && sentAt > killedAt && !firstAcceptedAfterKill) firstAcceptedAfterKill = Date.now()
      },
    })
    await halfway.promise
    killedAt = Date.now()
    await first.kill()

    for (const service of services()) await healthy(service)
    const reconnectedMs = Date.now() - killedAt
    await until(() => {
      const ports = servicePorts()
      expect(ports.map((c) => c.name).toSorted()).toEqual(serviceConnections())
      expect(ports.filter((c) => c.port === portOf(first))).toEqual([])
    })
    const { accepted, refused, failed } = await load
    const final = await awaitFinal(gatewayUrl, accepted, 300_000)

    // Every queue has a new leader among the survivors and keeps its two live members.
    await until(() => {
      for (const queue of stackQueues()) expect(queue.leader).not.toBe(first.node)
    })
    expect(brokers.runningNodes(second).toSorted()).toEqual(
      brokers.nodes
        .slice(1)
        .map((node) => node.node)
        .toSorted(),
    )
    const overview = (await (
      await fetch(`${gatewayUrl()}/dashboard/api/overview`)
    ).json()) as DashboardOverview
    const figures = {
      queues: stackQueues().length,
      queuesLedByKilledNode: ledByFirst,
      accepted: accepted.length,
      final: final.size,
      lost: accepted.length - final.size,
      doubled: finals.doubled(),
      redeliveries: redeliveries() - redeliveriesBefore,
      deadLettered: [...final.values()].filter((t) => t.status !== "SUCCESS").length,
      tasksInStore: Object.values(overview.stats.counts).reduce((sum, n) => sum + n, 0),
      refused503: refused.filter((status) => status === 503).length,
      refusedOther: refused.filter((status) => status !== 503).length,
      failedRequests: failed,
      /** From the kill until every service answered /healthz 200 again, connected to a survivor. */
      reconnectedMs,
      /** From the kill to the first 202 of a request sent after it. */
      firstAcceptedAfterKillMs: firstAcceptedAfterKill - killedAt,
      reconnects: services().reduce((sum, s) => sum + s.count("broker reconnected, topology declared"), 0),
      redeclareFailures: services().reduce((sum, s) => sum + s.count("topology redeclare failed"), 0),
    }
    report("rabbitmq cluster, node killed", figures)
    expect(figures).toMatchObject({
      accepted: TASKS,
      final: TASKS,
      lost: 0,
      doubled: 0,
      deadLettered: 0,
      tasksInStore: TASKS,
      refusedOther: 0,
    })
    expect(new Set(accepted).size).toBe(TASKS)
  }, 600_000)
})

// The services as real child processes, so that a fault test can kill -9 one and start it again,
// plus the bookkeeping every fault test reports: accepted, final, lost, doubled, redeliveries, dead-lettered.
import { readFileSync, readlinkSync, rmSync } from "node:fs"
import { AMQPClient } from "@cloudamqp/amqp-client"
import {
  eventId,
  FINAL_STATUSES,
  type TaskEvent,
  type TaskRecord,
  type TaskStatus,
} from "../../shared/contracts.ts"
import { createTestDatabase } from "../postgres.ts"
import { ROOT, type Runtime, type Runtimes, type ServiceName, serviceCommand } from "../runtimes.ts"
import { AMQP_URL, deleteTopology, testEnv } from "../support.ts"

export class ServiceProcess {
  url = ""
  /** How often each log `msg` appeared, over every life of this service. */
  readonly logCounts = new Map<string, number>()
  /** Restarts after an exit nobody asked for (a crash), like a supervisor would. */
  restarts = 0
  private proc: ReturnType<typeof Bun.spawn> | undefined
  private supervised = false

  constructor(
    readonly name: ServiceName,
    private readonly env: Record<string, string>,
    readonly runtime: Runtime = "bun",
  ) {}

  /** Spawn and resolve once the service logs "started" (with its URL). */
  async start(): Promise<this> {
    const started = Promise.withResolvers<void>()
    const proc = Bun.spawn(serviceCommand(this.name, this.runtime, this.env), {
      cwd: ROOT,
      env: { ...process.env, ...this.env },
      stdout: "pipe",
      stderr: "inherit",
    })
    this.proc = proc
    void this.readLogs(proc.stdout as ReadableStream<Uint8Array>, started)
    const exited = proc.exited.then((code) => {
      throw new Error(`${this.name} exited with ${code} before it started`)
    })
    await Promise.race([started.promise, exited])
    return this
  }

  private async readLogs(stdout: ReadableStream<Uint8Array>, started: PromiseWithResolvers<void>) {
    const decoder = new TextDecoder()
    let buffered = ""
    for await (const chunk of stdout) {
      buffered += decoder.decode(chunk, { stream: true })
      const lines = buffered.split("\n")
      buffered = lines.pop() ?? ""
      for (const line of lines) {
        const entry = JSON.parse(line) as { msg: string; url?: string; level: string }
        this.logCounts.set(entry.msg, (this.logCounts.get(entry.msg) ?? 0) + 1)
        if (entry.msg === "started" && entry.url) {
          this.url = entry.url
          started.resolve()
        }
        if (
          process.env.FAULT_TEST_VERBOSE &&
          (entry.level !== "info" || process.env.FAULT_TEST_VERBOSE === "all")
        ) {
          console.error(this.name, line)
        }
      }
    }
  }

  /** Start again whenever the process dies on its own, until `stop()` or `kill()`. */
  supervise(): this {
    this.supervised = true
    const watch = async (proc: ReturnType<typeof Bun.spawn> | undefined) => {
      await proc?.exited
      if (!this.supervised || proc !== this.proc) return
      this.restarts++
      // It may die again before it logs "started" (a crasher waiting in its queue): keep watching.
      await this.start().catch(() => {})
      void watch(this.proc)
    }
    void watch(this.proc)
    return this
  }

  /** The executable the process runs (`…/bun`, `…/deno`): what a test of a deployment checks. */
  executable(): string {
    return this.proc ? readlinkSync(`/proc/${this.proc.pid}/exe`) : ""
  }

  /** The process's arguments after the executable (a Deno service's permissions among them). */
  arguments(): string[] {
    return this.proc ? readFileSync(`/proc/${this.proc.pid}/cmdline`, "utf8").split("\0").slice(1, -1) : []
  }

  count(msg: string): number {
    return this.logCounts.get(msg) ?? 0
  }

  /** SIGKILL: no clean-up at all, as in a crash. */
  async kill(): Promise<void> {
    this.supervised = false
    this.proc?.kill("SIGKILL")
    await this.proc?.exited
  }

  /** SIGTERM: the graceful stop. */
  async stop(): Promise<number | undefined> {
    this.supervised = false
    this.proc?.kill("SIGTERM")
    return this.proc?.exited
  }
}

export interface Cluster extends AsyncDisposable {
  env: Record<string, string>
  gateway: ServiceProcess
  workers: ServiceProcess[]
  /** The first status-store replica. */
  store: ServiceProcess
  /** Every status-store replica: one, unless started with more on PostgreSQL. */
  stores: ServiceProcess[]
  /** The SQLite file (when the store runs on SQLite). */
  databasePath: string
  /** The cluster's own PostgreSQL database (when the store runs on PostgreSQL), dropped with the cluster. */
  databaseUrl: string | undefined
}

export async function startCluster(
  topic: string,
  overrides: Record<string, string> = {},
  {
    workers = 1,
    startWorkers = true,
    runtimes = {} as Runtimes,
    /** False when the broker is the test's own and goes away with its queues (deleting quorum queues while a
     * node is down takes seconds each). */
    deleteTopologyAfter = true,
    /** Settings of one service only, e.g. its own broker user in AMQP_URL. */
    serviceEnv = {} as Partial<Record<ServiceName, Record<string, string>>>,
    /** Where the status store keeps its state: a SQLite file, or a PostgreSQL database of the cluster's own. */
    backend = "sqlite" as "sqlite" | "postgres",
    /** Status-store replicas, all on the one database (more than one needs PostgreSQL). */
    storeReplicas = 1,
  } = {},
): Promise<Cluster> {
  if (storeReplicas > 1 && backend !== "postgres")
    throw new Error("store replicas share a PostgreSQL database")
  const database = backend === "postgres" ? await createTestDatabase(topic) : undefined
  // Info logs: the bookkeeping counts log lines such as "task redelivered".
  const { env, dataDir } = testEnv(topic, {
    LOG_LEVEL: process.env.FAULT_LOG_LEVEL ?? "info",
    ENABLE_TEST_TASKS: "true",
    ...(database && { DATABASE_URL: database.url }),
    ...overrides,
  })
  const databasePath = env.DATABASE_PATH ?? ""
  const envOf = (name: ServiceName) => ({ ...env, ...serviceEnv[name] })
  const stores: ServiceProcess[] = []
  for (let n = 0; n < storeReplicas; n++)
    stores.push(await new ServiceProcess("store", envOf("store"), runtimes.store).start())
  const gateway = await new ServiceProcess("gateway", envOf("gateway"), runtimes.gateway).start()
  const workerProcesses = Array.from(
    { length: workers },
    () => new ServiceProcess("worker", envOf("worker"), runtimes.worker),
  )
  if (startWorkers) await Promise.all(workerProcesses.map((w) => w.start()))
  return {
    env,
    gateway,
    workers: workerProcesses,
    store: stores[0] as ServiceProcess,
    stores,
    databasePath,
    databaseUrl: database?.url,
    async [Symbol.asyncDispose]() {
      await Promise.all([gateway, ...stores, ...workerProcesses].map((s) => s.stop()))
      if (deleteTopologyAfter) await deleteTopology(env)
      rmSync(dataDir, { recursive: true, force: true })
      await database?.[Symbol.asyncDispose]()
    },
  }
}

interface Load {
  count: number
  concurrency?: number
  path?: string
  body?: (i: number) => unknown
  /** Called as each 202 arrives (with when its request was sent), so that a sampler can follow the tasks. */
  onAccepted?: (taskId: string, sentAt: number) => void
  /**
   * Send each request with an Idempotency-Key (this prefix + its index) and send it again, after the
   * Retry-After of a 503 or a moment after a failed connection, until it is accepted: a client that must get
   * every task in. Without it, a refused or failed request is counted and given up.
   */
  retryWithKey?: string
}

/** POST from `concurrency` clients; a refused or failed request is counted, not thrown. */
export async function submitReviews(gatewayUrl: () => string, load: Load) {
  const { count, concurrency = 16, path = "/polarities", onAccepted, retryWithKey } = load
  const body = load.body ?? ((i: number) => ({ review: `review ${i}: good but a bit sad` }))
  const accepted: string[] = []
  const refused: number[] = []
  let failed = 0
  let next = 0
  const submit = async (i: number): Promise<"accepted" | "refused" | "failed"> => {
    const sentAt = Date.now()
    try {
      const res = await fetch(`${gatewayUrl()}${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(retryWithKey && { "idempotency-key": `${retryWithKey}-${i}` }),
        },
        body: JSON.stringify(body(i)),
      })
      if (res.status === 202) {
        const { task_id } = (await res.json()) as { task_id: string }
        accepted.push(task_id)
        onAccepted?.(task_id, sentAt)
        return "accepted"
      }
      refused.push(res.status)
      await res.body?.cancel()
      if (retryWithKey) await Bun.sleep(Number(res.headers.get("retry-after") ?? 1) * 1000)
      return "refused"
    } catch {
      // The gateway is down or was killed mid-request: a real client would back off, so do that.
      failed++
      await Bun.sleep(20)
      return "failed"
    }
  }
  const client = async () => {
    while (next < count) {
      const i = next++
      let outcome = await submit(i)
      while (outcome !== "accepted" && retryWithKey) outcome = await submit(i)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, client))
  return { accepted, refused, failed }
}

/** Poll every task through the API until all are final; returns the final records (missing = lost). */
export async function awaitFinal(gatewayUrl: () => string, taskIds: string[], timeoutMs = 60_000) {
  const finals = new Map<string, TaskRecord>()
  const deadline = Date.now() + timeoutMs
  while (finals.size < taskIds.length && Date.now() < deadline) {
    const pending = taskIds.filter((id) => !finals.has(id))
    for (let i = 0; i < pending.length; i += 64) {
      await Promise.all(
        pending.slice(i, i + 64).map(async (id) => {
          const res = await fetch(`${gatewayUrl()}/polarities/tasks/${id}`).catch(() => null)
          if (res?.status !== 200) return res?.body?.cancel()
          const record = (await res.json()) as TaskRecord
          if (FINAL_STATUSES.has(record.status)) finals.set(id, record)
        }),
      )
    }
    if (finals.size < taskIds.length) await Bun.sleep(100)
  }
  return finals
}

/** Clients reading task statuses at once while a fault test runs. */
const READERS = 16

/** The order a task's status may only move forward in, as a reader sees it. */
const STATUS_RANK: Record<TaskStatus, number> = {
  SCHEDULED: 0,
  PENDING: 0,
  STARTED: 1,
  RETRY: 1,
  SUCCESS: 2,
  FAILURE: 2,
  EXPIRED: 2,
  REVOKED: 2,
}

/**
 * Reads the statuses of a sample of tasks over and over, as a client would: counts any that went backwards (a
 * read older than one whose answer had come before it was sent: reads in flight at once have no order), and
 * how long status queries kept failing (anything but 200, for a task the gateway accepted) at the worst, from the
 * sending of the first failed query to the answer of the next query sent after it that succeeded.
 */
export function sampleStatuses(gatewayUrl: () => string, taskIds: () => string[]) {
  /** Per task, the answers so far: when each came, and the rank it read. */
  const answers = new Map<string, { at: number; rank: number }[]>()
  let regressions = 0
  let samples = 0
  let failures = 0
  /** Failed reads by what they got: an HTTP status, or "network" when no answer came. */
  const failed: Record<string, number> = {}
  let failingSince: number | undefined
  let longestFailureMs = 0
  /** Each span of failed reads, [from, to] in epoch ms. */
  const failureSpans: [number, number][] = []
  let running = true
  const read = async (id: string) => {
    const sentAt = Date.now()
    const res = await fetch(`${gatewayUrl()}/polarities/tasks/${id}`).catch(() => null)
    if (res?.status !== 200) {
      failures++
      const got = String(res?.status ?? "network")
      failed[got] = (failed[got] ?? 0) + 1
      failingSince = Math.min(failingSince ?? sentAt, sentAt)
      return res?.body?.cancel()
    }
    const { status } = (await res.json()) as TaskRecord
    if (failingSince !== undefined && sentAt > failingSince) {
      failureSpans.push([failingSince, Date.now()])
      longestFailureMs = Math.max(longestFailureMs, Date.now() - failingSince)
      failingSince = undefined
    }
    const rank = STATUS_RANK[status]
    const before = answers.get(id) ?? []
    if (before.some((answer) => answer.at <= sentAt && answer.rank > rank)) regressions++
    answers.set(id, [...before, { at: Date.now(), rank }])
    samples++
  }
  // Readers of their own, so that a read the killed service held for seconds stops one reader, not all of them.
  const readers = Array.from({ length: READERS }, async () => {
    while (running) {
      const ids = taskIds()
      if (ids.length > 0) await read(ids[Math.floor(Math.random() * ids.length)] ?? "")
      await Bun.sleep(10)
    }
  })
  return {
    async stop() {
      running = false
      await Promise.all(readers)
      // Still failing at the end counts to the end.
      if (failingSince !== undefined) {
        failureSpans.push([failingSince, Date.now()])
        longestFailureMs = Math.max(longestFailureMs, Date.now() - failingSince)
      }
      return { regressions, samples, failures, failed, longestFailureMs, failureSpans }
    },
  }
}

/**
 * Counts every final event on the events exchange by task, to find tasks that ended twice differently.
 * Its queue is durable, so after a broker restart `reconnect()` picks up where it left off. In a cluster, give
 * the `url` of a node that stays up and `queueType: "quorum"`, so that the queue outlives any other node.
 */
export async function watchFinalEvents(
  env: Record<string, string>,
  { url = env.AMQP_URL ?? AMQP_URL, queueType = "classic" } = {},
) {
  const queue = `${env.AMQP_PREFIX}test.final-events.${Math.random().toString(36).slice(2, 8)}`
  const finalIds = new Map<string, Set<string>>()
  const received = new Map<string, number>()
  let arrived = Promise.withResolvers<void>()
  let client: AMQPClient | undefined
  const connect = async () => {
    client = new AMQPClient(url, undefined, null)
    await client.connect()
    const channel = await client.channel()
    await channel.queueDeclare(queue, { durable: true, autoDelete: false }, { "x-queue-type": queueType })
    for (const key of ["task.success", "task.failure"])
      await channel.queueBind(queue, `${env.AMQP_PREFIX}events`, key)
    await channel.basicConsume(queue, { noAck: true }, (msg) => {
      const { events } = JSON.parse(msg.bodyString() ?? "{}") as { events: TaskEvent[] }
      for (const event of events) {
        const ids = finalIds.get(event.task_id) ?? new Set()
        ids.add(eventId(event))
        finalIds.set(event.task_id, ids)
        received.set(event.task_id, (received.get(event.task_id) ?? 0) + 1)
      }
      arrived.resolve()
      arrived = Promise.withResolvers()
    })
  }
  await connect()
  return {
    /** Tasks with more than one distinct final event (a redelivered duplicate has the same id). */
    doubled: () => [...finalIds.values()].filter((ids) => ids.size > 1).length,
    /** Wait until `count` final events (duplicates included) were published for the task. */
    async received(taskId: string, count: number, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs
      while ((received.get(taskId) ?? 0) < count) {
        if (Date.now() > deadline) throw new Error(`${received.get(taskId) ?? 0} of ${count} final events`)
        await Promise.race([arrived.promise, Bun.sleep(100)])
      }
    },
    /** After the broker came back: consume the same queue on a new connection. */
    async reconnect() {
      await client?.close().catch(() => {})
      await connect()
    },
    async [Symbol.asyncDispose]() {
      try {
        const channel = await client?.channel()
        await channel?.queueDelete(queue)
      } finally {
        await client?.close().catch(() => {})
      }
    },
  }
}

export async function queueDepth(env: Record<string, string>, queue: string): Promise<number> {
  const client = new AMQPClient(env.AMQP_URL ?? AMQP_URL, undefined, null)
  await client.connect()
  try {
    const channel = await client.channel()
    return (await channel.queueDeclare(queue, { passive: true })).messageCount
  } finally {
    await client.close().catch(() => {})
  }
}

/** Messages in the two dead-letter queues. */
async function deadLettered(env: Record<string, string>): Promise<number> {
  const prefix = env.AMQP_PREFIX ?? ""
  return (
    (await queueDepth(env, `${prefix}dead-letter.failed`)) +
    (await queueDepth(env, `${prefix}dead-letter.poison`))
  )
}

/**
 * Submit `count` reviews while the cluster's workers are killed with -9 in turn, one every 150 ms, and each
 * started again at once; then follow every accepted task to its final state, and count.
 */
export async function killWorkersUnderLoad(cluster: Cluster, count: number) {
  const gatewayUrl = () => cluster.gateway.url
  await using finals = await watchFinalEvents(cluster.env)
  const deadBefore = await deadLettered(cluster.env)
  const redeliveries = () => cluster.workers.reduce((sum, w) => sum + w.count("task redelivered"), 0)
  const redeliveriesBefore = redeliveries()
  let submitting = true
  const load = submitReviews(gatewayUrl, { count, concurrency: 16 }).finally(() => {
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
  const final = await awaitFinal(gatewayUrl, accepted)
  const figures = {
    accepted: accepted.length,
    final: final.size,
    lost: accepted.length - final.size,
    doubled: finals.doubled(),
    redeliveries: redeliveries() - redeliveriesBefore,
    deadLettered: (await deadLettered(cluster.env)) - deadBefore,
    kills,
    refused: refused.length,
    failed,
  }
  return { figures, final }
}

export interface FaultFigures {
  accepted: number
  final: number
  lost: number
  doubled: number
  redeliveries: number
  deadLettered: number
}

export function report(label: string, figures: FaultFigures & Record<string, number>): void {
  console.log(`[fault] ${label}: ${JSON.stringify(figures)}`)
}

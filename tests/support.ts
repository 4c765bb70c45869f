// Starts the three services in process against the real broker, under a name prefix of their own,
// and removes every queue and exchange of that prefix afterwards.
import { expect } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { AMQPMessage } from "@cloudamqp/amqp-client"
import * as v from "valibot"
import { loadGatewayConfig, start as startGateway } from "../services/gateway.ts"
import { loadWorkerConfig, start as startWorker } from "../services/polarity-worker.ts"
import { loadStoreConfig, start as startStore } from "../services/status-store.ts"
import {
  FINAL_STATUSES,
  type PolarityResult,
  type TaskEvent,
  TaskEventBatch,
  type TaskRecord,
} from "../shared/contracts.ts"
import { type Service, type StatusStoreCaller, statusRpcKey, topologyNames } from "../shared/topology.ts"
import { AMQP_URL, deleteTopology, rawChannel } from "./broker.ts"
import { createTestDatabase, type TestDatabase } from "./postgres.ts"
import { type StoreBackend, storeBackend } from "./store-backends.ts"

export { AMQP_URL, deleteTopology, rawChannel }

type Env = Record<string, string>
interface Running {
  url: string
  stop(): Promise<void>
}

export interface Stack extends AsyncDisposable {
  env: Env
  names: ReturnType<typeof topologyNames>
  gateway: Awaited<ReturnType<typeof startGateway>>
  worker: Awaited<ReturnType<typeof startWorker>>
  /** The first status-store replica. */
  store: Running
  /** Every status-store replica (one, unless the stack was started with more on PostgreSQL). */
  stores: Running[]
  /** The stack's own PostgreSQL database (`backend: "postgres"`), dropped with the stack. */
  database: TestDatabase | undefined
  /** Stop the (first) status store, run `whileDown`, and start it again on the same database. */
  restartStore<T>(whileDown?: () => Promise<T>): Promise<T | undefined>
  /** Stop the worker, run `whileDown` (tasks then wait in their queues), and start a new worker. */
  restartWorker<T>(whileDown?: () => Promise<T>): Promise<T | undefined>
  /** The gateway's URL + path. */
  url(path: string): string
  /**
   * One more gateway on the stack's broker prefix with other settings (the gateway scales freely), stopped with
   * the stack: its URL + path.
   */
  gatewayWith(overrides: Env): Promise<(path: string) => string>
}

export function uniquePrefix(topic: string): string {
  return `test-${topic}-${process.pid}-${Math.random().toString(36).slice(2, 8)}.`
}

/**
 * The environment of a test's services: its own name prefix and SQLite file (in `dataDir`, which the test
 * removes), every port chosen by the OS, quiet logs.
 */
export function testEnv(topic: string, overrides: Env = {}): { env: Env; dataDir: string } {
  const dataDir = mkdtempSync(join(tmpdir(), `polarity-${topic}-`))
  const env: Env = {
    AMQP_URL,
    AMQP_PREFIX: uniquePrefix(topic),
    LOG_LEVEL: "error",
    HOST: "127.0.0.1",
    PORT: "0",
    WORKER_HOST: "127.0.0.1",
    WORKER_PORT: "0",
    STATUS_STORE_HOST: "127.0.0.1",
    STATUS_STORE_PORT: "0",
    DATABASE_PATH: join(dataDir, "status-store.sqlite"),
    ...overrides,
  }
  return { env, dataDir }
}

/** TEST_STORE_BACKEND=postgres runs every stack's store on PostgreSQL: the whole suite, on the other backend. */
const DEFAULT_BACKEND = storeBackend(process.env.TEST_STORE_BACKEND ?? "sqlite")

export interface StackShape {
  /** Where the status store keeps its state: a SQLite file (the default), or a PostgreSQL database of its own. */
  backend?: StoreBackend
  /** Status-store replicas, all on the one database (more than one needs PostgreSQL). */
  storeReplicas?: number
}

/**
 * `perService` adds to the environment of one service, e.g. the AMQP_URL of its own broker user; `shape` says
 * which backend the status store runs on, and how many replicas of it.
 */
export async function startStack(
  topic: string,
  overrides: Env = {},
  perService: Partial<Record<Service, Env>> = {},
  { backend = DEFAULT_BACKEND, storeReplicas = 1 }: StackShape = {},
): Promise<Stack> {
  if (storeReplicas > 1 && backend !== "postgres")
    throw new Error("store replicas share a PostgreSQL database")
  const database = backend === "postgres" ? await createTestDatabase(topic) : undefined
  const { env, dataDir } = testEnv(topic, { ...(database && { DATABASE_URL: database.url }), ...overrides })
  const envOf = (service: Service) => ({ ...env, ...perService[service] })
  const startOneStore = () => startStore(loadStoreConfig(envOf("status-store")))
  const stores: Running[] = []
  for (let n = 0; n < storeReplicas; n++) stores.push(await startOneStore())
  let worker = await startWorker(loadWorkerConfig(envOf("polarity-worker")))
  const gateway = await startGateway(loadGatewayConfig(envOf("gateway")))
  const names = topologyNames(env.AMQP_PREFIX ?? "")
  const moreGateways: Running[] = []
  return {
    env,
    names,
    gateway,
    database,
    get worker() {
      return worker
    },
    get store() {
      return stores[0] as Running
    },
    stores,
    async restartWorker<T>(whileDown?: () => Promise<T>) {
      await worker.stop()
      const result = await whileDown?.()
      worker = await startWorker(loadWorkerConfig(envOf("polarity-worker")))
      return result
    },
    async restartStore<T>(whileDown?: () => Promise<T>) {
      await stores[0]?.stop()
      const result = await whileDown?.()
      stores[0] = await startOneStore()
      return result
    },
    url: (path) => `${gateway.url}${path}`,
    async gatewayWith(overrides) {
      const another = await startGateway(loadGatewayConfig({ ...env, ...overrides }))
      moreGateways.push(another)
      return (path) => `${another.url}${path}`
    },
    async [Symbol.asyncDispose]() {
      await Promise.allSettled([...moreGateways, gateway, worker, ...stores].map((service) => service.stop()))
      await deleteTopology(env)
      rmSync(dataDir, { recursive: true, force: true })
      await database?.[Symbol.asyncDispose]()
    },
  }
}

/** A queue's depth and consumers, as the broker reports them now. */
export async function queueState(queue: string): Promise<{ messages: number; consumers: number }> {
  await using amqp = await rawChannel()
  const { messageCount, consumerCount } = await amqp.channel.queueDeclare(queue, { passive: true })
  return { messages: messageCount, consumers: consumerCount }
}

/** Consume `count` messages from a queue the test owns alone, or fail after `timeoutMs`. */
export async function takeMessages(queue: string, count: number, timeoutMs = 10_000): Promise<AMQPMessage[]> {
  await using amqp = await rawChannel()
  const taken: AMQPMessage[] = []
  const done = Promise.withResolvers<void>()
  const timer = setTimeout(
    () => done.reject(new Error(`${taken.length} of ${count} messages on ${queue}`)),
    timeoutMs,
  )
  await amqp.channel.basicConsume(queue, { noAck: true }, (msg) => {
    taken.push(msg)
    if (taken.length === count) done.resolve()
  })
  try {
    await done.promise
  } finally {
    clearTimeout(timer)
  }
  return taken
}

export async function postReview(stack: Stack, review: unknown, query = ""): Promise<Response> {
  return postBody(stack, { review }, query)
}

/** POST /polarities with any JSON body, for the fields beside `review`. */
export async function postBody(stack: Stack, body: unknown, query = ""): Promise<Response> {
  return fetch(stack.url(`/polarities${query}`), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  })
}

/** Matches the API's times: ISO 8601 UTC with milliseconds. */
export const isoTime = expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)

/** An RFC 9457 problem: its content type, status and a `detail` equal to or matching `detail`. */
export async function expectProblem(res: Response, status: number, detail: string | RegExp): Promise<void> {
  expect(res.headers.get("content-type")).toBe("application/problem+json")
  expect(await res.json()).toEqual({
    type: "about:blank",
    title: expect.any(String),
    status,
    detail: typeof detail === "string" ? detail : expect.stringMatching(detail),
  })
  expect(res.status).toBe(status)
}

/** Submit the test-only flaky task (the stack needs ENABLE_TEST_TASKS) and return its id. */
export async function submitFlaky(
  stack: Pick<Stack, "url">,
  body: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<string> {
  const res = await fetch(stack.url("/test/flaky"), {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  })
  expect(res.status).toBe(202)
  return (await taskBody(res)).task_id
}

/** The body of a task response, typed as the API documents it. */
export async function taskBody(res: Response): Promise<TaskRecord> {
  return (await res.json()) as TaskRecord
}

/** The result of a review task (the result union also holds other kinds' results). */
export function reviewResult(record: TaskRecord): PolarityResult {
  if (!record.result || !("positive" in record.result))
    throw new Error(`no review result in ${JSON.stringify(record)}`)
  return record.result
}

/** Poll the task until it is final (the API is the thing under test, so poll it, not the store). */
export async function waitForFinal(stack: Pick<Stack, "url">, taskId: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const res = await fetch(stack.url(`/polarities/tasks/${taskId}`))
    const body = await taskBody(res)
    if (FINAL_STATUSES.has(body.status)) return body
    await Bun.sleep(10)
  }
  throw new Error(`task ${taskId} not final within ${timeoutMs} ms`)
}

/** Every task event published on the stack's events exchange from now on, as the status store sees them. */
export async function watchEvents(stack: Pick<Stack, "names">) {
  const amqp = await rawChannel()
  const { name } = await amqp.channel.queueDeclare("", { exclusive: true, autoDelete: true })
  await amqp.channel.queueBind(name, stack.names.eventsExchange, "task.#")
  const events: TaskEvent[] = []
  let changed = Promise.withResolvers<void>()
  await amqp.channel.basicConsume(name, { noAck: true }, (msg) => {
    events.push(...v.parse(TaskEventBatch, JSON.parse(msg.bodyString() ?? "")).events)
    changed.resolve()
    changed = Promise.withResolvers<void>()
  })
  return {
    events,
    /** Resolve with the events once `done(events)` holds, or fail after `timeoutMs`. */
    async until(done: (events: TaskEvent[]) => boolean, timeoutMs = 15_000): Promise<TaskEvent[]> {
      const deadline = Date.now() + timeoutMs
      while (!done(events)) {
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`events did not arrive in time; have ${JSON.stringify(events)}`)
        await Promise.race([changed.promise, Bun.sleep(left)])
      }
      return events
    },
    [Symbol.asyncDispose]: () => amqp[Symbol.asyncDispose](),
  }
}

/** One request to the stack's status store, straight over the broker as `caller`, and its whole reply. */
export async function requestStore(
  stack: Pick<Stack, "names" | "env">,
  body: unknown,
  caller: StatusStoreCaller = "gateway",
): Promise<unknown> {
  await using amqp = await rawChannel(stack.env.AMQP_URL)
  const reply = Promise.withResolvers<unknown>()
  await amqp.channel.basicConsume("amq.rabbitmq.reply-to", { noAck: true }, (msg) => {
    reply.resolve(JSON.parse(msg.bodyString() ?? ""))
  })
  await amqp.channel.basicPublish(stack.names.rpcExchange, statusRpcKey(caller), JSON.stringify(body), {
    replyTo: "amq.rabbitmq.reply-to",
    correlationId: "1",
    type: "status-query",
  })
  return await reply.promise
}

/** One query to the stack's status store, straight over the broker, and its answer. */
export async function askStore(stack: Stack, query: unknown): Promise<unknown> {
  const { replies } = (await requestStore(stack, { queries: [query] })) as { replies: unknown[] }
  return replies[0]
}

/** Retry `check` until it passes or `timeoutMs` is up, for what settles a moment after the API answers. */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 5000): Promise<T> {
  for (const deadline = Date.now() + timeoutMs; ; await Bun.sleep(20)) {
    try {
      return await check()
    } catch (err) {
      if (Date.now() > deadline) throw err
    }
  }
}

/** Events of an SSE response as they come: `next()` resolves with the next one (comments skipped). */
export function sseReader(res: Response) {
  const reader = (res.body ?? new ReadableStream()).getReader()
  const decoder = new TextDecoder()
  let buffered = ""
  return {
    async next(): Promise<{ event: string; data: unknown }> {
      for (;;) {
        const end = buffered.indexOf("\n\n")
        if (end >= 0) {
          const block = buffered.slice(0, end)
          buffered = buffered.slice(end + 2)
          if (block.startsWith(":")) continue
          const field = (name: string) =>
            block
              .split("\n")
              .find((line) => line.startsWith(`${name}:`))
              ?.slice(name.length + 1)
              .trim()
          return { event: field("event") ?? "message", data: JSON.parse(field("data") ?? "null") }
        }
        const { value, done } = await reader.read()
        if (done) throw new Error("the stream ended")
        buffered += decoder.decode(value, { stream: true })
      }
    },
    cancel: () => reader.cancel(),
  }
}

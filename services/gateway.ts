// gateway: the REST API. Turns a review into a task on a work queue (confirmed before it answers 202),
// answers status queries by asking the status store over reply-to RPC, and lets an operator inspect
// and replay the dead-letter queues.
import { type Context, Hono } from "hono"
import { bodyLimit } from "hono/body-limit"
import * as v from "valibot"
import { Broker, brokerOptions, decodeMessage, PoisonMessage } from "../shared/amqp.ts"
import { BrokerEnv, booleanVar, integerVar, loadConfig, stringVar } from "../shared/config.ts"
import {
  explainIssues,
  FINAL_STATUSES,
  FlakyTaskInput,
  MAX_WAIT_MS,
  MessageType,
  StatusReply,
  SubmitReview,
  Task,
  TaskId,
  type TaskRecord,
  type TaskStatus,
} from "../shared/contracts.ts"
import { EventPublisher } from "../shared/events.ts"
import { healthRoute, installErrorBoundary, Problem, runAsProgram, serveApp } from "../shared/http.ts"
import { createLogger } from "../shared/log.ts"
import { routeTask } from "../shared/topology.ts"

const SERVICE = "gateway"

export const GatewayEnv = {
  ...BrokerEnv,
  HOST: stringVar("0.0.0.0"),
  PORT: integerVar(9000, 0, 65535),
  MAX_BODY_BYTES: integerVar(64 * 1024, 1024, 16 * 1024 * 1024),
  /** How long a status query may wait for the status store before the API answers 503. */
  RPC_TIMEOUT_MS: integerVar(5000, 100, 60_000),
  /** How long a submission may wait for the broker's confirm before the API answers 503. */
  PUBLISH_TIMEOUT_MS: integerVar(5000, 100, 60_000),
  /** When set, /admin/* needs `Authorization: Bearer <ADMIN_TOKEN>`. */
  ADMIN_TOKEN: v.optional(v.string()),
  /** Serve POST /test/flaky, the test-only task kind. Never in production. */
  ENABLE_TEST_TASKS: booleanVar(false),
}
export type GatewayConfig = ReturnType<typeof loadGatewayConfig>
export const loadGatewayConfig = (env: Record<string, string | undefined> = process.env) =>
  loadConfig(GatewayEnv, env)

const JSON_CONTENT_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i

async function readJson<TSchema extends v.GenericSchema>(
  c: Context,
  schema: TSchema,
): Promise<v.InferOutput<TSchema>> {
  const contentType = c.req.header("content-type") ?? ""
  if (!JSON_CONTENT_TYPE.test(contentType)) {
    throw new Problem(
      415,
      `send the body as application/json, not ${contentType || "without a content type"}`,
    )
  }
  let json: unknown
  try {
    json = JSON.parse(await c.req.text())
  } catch (err) {
    throw new Problem(400, `the body is not valid JSON: ${(err as Error).message}`)
  }
  const result = v.safeParse(schema, json)
  if (!result.success) throw new Problem(422, explainIssues(result.issues))
  return result.output
}

/** `?wait=<seconds>` in milliseconds; absent means do not wait. */
function parseWait(raw: string | undefined): number {
  if (raw === undefined) return 0
  const seconds = Number(raw)
  if (raw.trim() === "" || !Number.isFinite(seconds) || seconds < 0 || seconds * 1000 > MAX_WAIT_MS) {
    throw new Problem(422, `wait must be a number of seconds from 0 to ${MAX_WAIT_MS / 1000}, not "${raw}"`)
  }
  return Math.round(seconds * 1000)
}

/** `?limit=` for admin listings: 1–1000, default 100. */
function parseLimit(raw: string | undefined): number {
  const limit = raw === undefined ? 100 : Number(raw)
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw new Problem(422, `limit must be a whole number from 1 to 1000, not "${raw}"`)
  }
  return limit
}

function parseTaskId(raw: string): string {
  if (!v.is(TaskId, raw)) throw new Problem(404, `no task "${raw}": task ids are UUIDs`)
  return raw
}

/** A task as submitted: its kind and its own fields, before the gateway gives it an id and a time. */
type TaskDraft = DistributiveOmit<Task, "task_id" | "submitted_at" | "attempt" | "run">
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

/** What the task was asked to do, as the status store keeps it for display. */
function inputOf(task: Task): Record<string, unknown> {
  const { task_id: _id, kind: _kind, submitted_at: _at, attempt: _attempt, run: _run, ...input } = task
  return input
}

export async function start(config: GatewayConfig) {
  const log = createLogger(SERVICE, config.LOG_LEVEL)
  const broker = await Broker.connect({
    ...brokerOptions(SERVICE, config, log),
    publishTimeoutMs: config.PUBLISH_TIMEOUT_MS,
  })
  const events = new EventPublisher(broker)
  const { names } = broker
  if (!config.ADMIN_TOKEN) log.warn("production risk", { risk: "admin endpoints without ADMIN_TOKEN" })

  async function queryTask(taskId: string, waitMs = 0): Promise<TaskRecord | null> {
    const query = JSON.stringify({ op: "get", task_id: taskId, ...(waitMs > 0 && { wait_ms: waitMs }) })
    const msg = await broker.call(
      names.statusRpcQueue,
      query,
      MessageType.statusQuery,
      waitMs + config.RPC_TIMEOUT_MS,
    )
    const reply = decodeMessage(msg, StatusReply, "StatusReply")
    if ("error" in reply) throw new Error(`status store: ${reply.error}`)
    return reply.task
  }

  /**
   * Publish the task, then its PENDING event (attempt = run - 1), both confirmed: once this resolves
   * the task can't be lost, and the status store knows it. The task goes first so that a work queue
   * refusing it leaves no PENDING record of a task that will never run.
   */
  async function publishTask(task: Task): Promise<void> {
    await broker.publish(names.tasksExchange, routeTask(task.kind), JSON.stringify(task), {
      type: MessageType.task,
      messageId: task.task_id,
    })
    await events.emit({
      state: "PENDING",
      task_id: task.task_id,
      attempt: task.run - 1,
      run: task.run,
      at: Date.now(),
      kind: task.kind,
      input: inputOf(task),
    })
  }

  async function submit(c: Context, draft: TaskDraft): Promise<Response> {
    const waitMs = parseWait(c.req.query("wait"))
    const task = {
      ...draft,
      task_id: Bun.randomUUIDv7(),
      submitted_at: Date.now(),
      attempt: 1,
      run: 1,
    } as Task
    await publishTask(task)
    const location = `/polarities/tasks/${task.task_id}`
    let status: TaskStatus = "PENDING"
    if (waitMs > 0) {
      // The task is accepted whatever happens here: a status store that does not answer still means 202.
      const record = await queryTask(task.task_id, waitMs).catch((err: Error) => {
        log.warn("wait for task failed", { taskId: task.task_id, err: err.message })
        return null
      })
      if (record && FINAL_STATUSES.has(record.status)) return c.json(record, 200, { location })
      status = record?.status ?? status
    }
    return c.json({ task_id: task.task_id, status }, 202, { location })
  }

  /** Move up to `limit` tasks out of the failed dead-letter queue into a new run each. */
  async function replayFailed(limit: number): Promise<string[]> {
    const replayed: string[] = []
    while (replayed.length < limit) {
      const msg = await broker.get(names.failedQueue)
      if (!msg) break
      let task: Task
      try {
        task = decodeMessage(msg, Task, "Task")
      } catch (err) {
        if (!(err instanceof PoisonMessage)) throw err
        await broker.deadLetter(msg, names.failedQueue, err.message)
        continue
      }
      if (replayed.includes(task.task_id)) {
        // A second copy: a worker killed before its ack reached the broker dead-letters a task twice.
        await msg.ack()
        continue
      }
      const run = task.attempt + 1
      try {
        await publishTask({ ...task, attempt: run, run })
        await msg.ack()
      } catch (err) {
        await msg.nack(true).catch(() => {})
        throw err
      }
      log.info("task replayed", { taskId: task.task_id, run })
      replayed.push(task.task_id)
    }
    return replayed
  }

  /** Up to `limit` dead letters from the head of a queue, put back in their order. */
  async function peekDeadLetters(queue: string, limit: number) {
    const taken = []
    try {
      for (
        let msg = await broker.get(queue);
        msg;
        msg = taken.length < limit ? await broker.get(queue) : null
      ) {
        taken.push(msg)
      }
      return taken.map((msg) => ({
        message_id: msg.properties.messageId ?? null,
        reason: msg.properties.headers?.["x-dead-letter-reason"] ?? null,
        original_queue: msg.properties.headers?.["x-original-queue"] ?? null,
        dead_lettered_at: msg.properties.headers?.["x-dead-lettered-at"] ?? null,
        body: (msg.bodyString() ?? "").slice(0, 2048),
      }))
    } finally {
      // Nacking the newest first puts every message back at the head in its old order.
      for (const msg of taken.reverse()) await msg.nack(true).catch(() => {})
    }
  }

  const app = new Hono()
  installErrorBoundary(app, log)
  healthRoute(app, () => broker.connected)

  const limitBody = bodyLimit({
    maxSize: config.MAX_BODY_BYTES,
    onError: () => {
      throw new Problem(413, `the body is larger than ${config.MAX_BODY_BYTES} bytes`)
    },
  })

  app.post("/polarities", limitBody, async (c) => {
    return submit(c, { kind: "polarity:review", ...(await readJson(c, SubmitReview)) })
  })

  const getTask = async (c: Context) => {
    const taskId = parseTaskId(c.req.param("taskId") ?? "")
    const record = await queryTask(taskId)
    if (!record) throw new Problem(404, `no task with id ${taskId}`)
    return c.json(record)
  }
  app.get("/polarities/tasks/:taskId", getTask)
  // The seed app's path, kept for its clients.
  app.get("/polarities/task/:taskId", getTask)

  const admin = new Hono()
  admin.use(async (c, next) => {
    if (config.ADMIN_TOKEN && c.req.header("authorization") !== `Bearer ${config.ADMIN_TOKEN}`) {
      throw new Problem(401, "admin endpoints need the header Authorization: Bearer <ADMIN_TOKEN>", {
        "www-authenticate": "Bearer",
      })
    }
    await next()
  })
  const deadLetterQueues = { failed: names.failedQueue, poison: names.poisonQueue }
  admin.get("/dead-letters/:queue", async (c) => {
    const queue = deadLetterQueues[c.req.param("queue") as keyof typeof deadLetterQueues]
    if (!queue) throw new Problem(404, "dead-letter queues are failed and poison")
    return c.json({ queue, messages: await peekDeadLetters(queue, parseLimit(c.req.query("limit"))) })
  })
  admin.post("/dead-letters/failed/replay", async (c) => {
    const replayed = await replayFailed(parseLimit(c.req.query("limit")))
    return c.json({ replayed: replayed.length, task_ids: replayed })
  })
  app.route("/admin", admin)

  if (config.ENABLE_TEST_TASKS) {
    app.post("/test/flaky", limitBody, async (c) =>
      submit(c, { kind: "test:flaky", ...(await readJson(c, FlakyTaskInput)) }),
    )
  }

  const server = serveApp(app, config.PORT, config.HOST, config.MAX_BODY_BYTES * 2)
  log.info("started", { url: server.url })

  async function stop(): Promise<void> {
    await server.stop()
    await broker.close()
    log.info("stopped")
  }
  return { url: server.url, stop }
}

if (import.meta.main) runAsProgram(SERVICE, () => start(loadGatewayConfig()))

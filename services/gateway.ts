// gateway: the REST API. Turns a review into a task on the work queue (confirmed before it answers 202)
// and answers status queries by asking the status store over reply-to RPC.
import { type Context, Hono } from "hono"
import { bodyLimit } from "hono/body-limit"
import * as v from "valibot"
import { Broker, brokerOptions, decodeMessage } from "../shared/amqp.ts"
import { BrokerEnv, integerVar, loadConfig, stringVar } from "../shared/config.ts"
import {
  explainIssues,
  FINAL_STATUSES,
  MAX_WAIT_MS,
  MessageType,
  type ReviewTask,
  StatusReply,
  SubmitReview,
  TaskId,
  type TaskRecord,
} from "../shared/contracts.ts"
import { EventPublisher } from "../shared/events.ts"
import { healthRoute, installErrorBoundary, Problem, runAsProgram, serveApp } from "../shared/http.ts"
import { createLogger } from "../shared/log.ts"
import { routeTask } from "../shared/topology.ts"

const SERVICE = "gateway"

const GatewayEnv = {
  ...BrokerEnv,
  HOST: stringVar("0.0.0.0"),
  PORT: integerVar(9000, 0, 65535),
  MAX_BODY_BYTES: integerVar(64 * 1024, 1024, 16 * 1024 * 1024),
  /** How long a status query may wait for the status store before the API answers 503. */
  RPC_TIMEOUT_MS: integerVar(5000, 100, 60_000),
  /** How long a submission may wait for the broker's confirm before the API answers 503. */
  PUBLISH_TIMEOUT_MS: integerVar(5000, 100, 60_000),
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

function parseTaskId(raw: string): string {
  if (!v.is(TaskId, raw)) throw new Problem(404, `no task "${raw}": task ids are UUIDs`)
  return raw
}

export async function start(config: GatewayConfig) {
  const log = createLogger(SERVICE, config.LOG_LEVEL)
  const broker = await Broker.connect({
    ...brokerOptions(SERVICE, config, log),
    publishTimeoutMs: config.PUBLISH_TIMEOUT_MS,
  })
  const events = new EventPublisher(broker)

  async function queryTask(taskId: string, waitMs = 0): Promise<TaskRecord | null> {
    const query = JSON.stringify({ op: "get", task_id: taskId, ...(waitMs > 0 && { wait_ms: waitMs }) })
    const msg = await broker.call(
      broker.names.statusRpcQueue,
      query,
      MessageType.statusQuery,
      waitMs + config.RPC_TIMEOUT_MS,
    )
    const reply = decodeMessage(msg, StatusReply, "StatusReply")
    if ("error" in reply) throw new Error(`status store: ${reply.error}`)
    return reply.task
  }

  /** Resolves once both the task and its PENDING event are confirmed: from then on the task can't be lost. */
  async function submit({ review, language }: SubmitReview): Promise<ReviewTask> {
    const task: ReviewTask = {
      task_id: Bun.randomUUIDv7(),
      kind: "polarity:review",
      review,
      language,
      submitted_at: Date.now(),
      attempt: 1,
    }
    // The task first: if the work queue refuses it, no PENDING record exists for a task that will never run.
    await broker.publish(broker.names.tasksExchange, routeTask(task.kind), JSON.stringify(task), {
      type: MessageType.task,
      messageId: task.task_id,
    })
    await events.emit({
      state: "PENDING",
      task_id: task.task_id,
      attempt: 0,
      at: task.submitted_at,
      kind: task.kind,
      input: { review, language },
    })
    return task
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
    const waitMs = parseWait(c.req.query("wait"))
    const task = await submit(await readJson(c, SubmitReview))
    const location = `/polarities/tasks/${task.task_id}`
    let status = "PENDING"
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

// gateway: the REST API. Turns a review into a task on a work queue (confirmed before it answers 202),
// answers status queries by asking the status store over reply-to RPC, and lets an operator inspect
// and replay the dead-letter queues.
import { setTimeout as sleep } from "node:timers/promises"
import { type Context, Hono, type MiddlewareHandler } from "hono"
import { bodyLimit } from "hono/body-limit"
import { trimTrailingSlash } from "hono/trailing-slash"
import { getPath, getPathNoStrict } from "hono/utils/url"
import { v7 as uuidv7 } from "uuid"
import * as v from "valibot"
import { Broker, BrokerUnavailable, brokerOptions, topologyOptions } from "../shared/amqp.ts"
import { BrokerEnv, booleanVar, ConfigError, integerVar, loadConfig, stringVar } from "../shared/config.ts"
import {
  BatchAccepted,
  DeadLetterListing,
  type Delay,
  explainIssues,
  FINAL_STATUSES,
  FlakyTaskInput,
  GroupRecord,
  Health,
  IdempotencyKey,
  LookupTasks,
  MAX_BATCH_SIZE,
  MAX_DELAY_MS,
  ProblemDetails,
  ReplayResult,
  ScheduleInput,
  ScheduleList,
  SchedulePatch,
  ScheduleRecord,
  SubmitBatch,
  SubmitDocument,
  SubmitReport,
  SubmitReview,
  type Task,
  TaskAccepted,
  TaskId,
  TaskLookup,
  TaskPage,
  TaskRecord,
  type TaskStatus,
} from "../shared/contracts.ts"
import { EventPublisher, TaskPublisher } from "../shared/events.ts"
import {
  healthHandler,
  installErrorBoundary,
  Problem,
  RETRY_AFTER_SECONDS,
  runAsProgram,
  serveApp,
} from "../shared/http.ts"
import { createLogger } from "../shared/log.ts"
import { ServiceMetrics } from "../shared/metrics.ts"
import { buildTask, type PendingGroup, pendingEvent, type TaskFields } from "../shared/tasks.ts"
import type { Service } from "../shared/topology.ts"
import { AllowedHosts, callbackUrlProblem } from "../shared/webhooks.ts"
import { WorkerControl } from "../shared/worker-control.ts"
import { callerOf, guard, ownerFilter } from "./gateway/access.ts"
import { ApiKeys } from "./gateway/api-keys.ts"
import { checkDashboardConfig, DASHBOARD_SCHEMAS, DashboardEnv, mountDashboard } from "./gateway/dashboard.ts"
import { dashboardAuth } from "./gateway/dashboard-auth.ts"
import { DeadLetters } from "./gateway/dead-letters.ts"
import {
  allowedMethods,
  CorsOrigins,
  corsPolicy,
  refuseCrossSite,
  securityHeaders,
} from "./gateway/hygiene.ts"
import { heldGauge, holdBodyBytes, InFlightQuota, RateLimiter, rateLimit, Slots } from "./gateway/limits.ts"
import { ApiDocs, DOCS_ASSETS, docsAsset, docsPage } from "./gateway/openapi.ts"
import { mountQueueAdmin, QUEUE_ADMIN_SCHEMAS } from "./gateway/queue-admin.ts"
import { latestReportRoute, reportFields } from "./gateway/reports.ts"
import {
  AdminLimitQuery,
  checkPriority,
  decodeCursor,
  encodeCursor,
  ListQuery,
  parseTaskId,
  RevokeQuery,
  readJson,
  readQuery,
  requestFingerprint,
  TaskIdParam,
  WaitQuery,
} from "./gateway/requests.ts"
import { scheduleRoutes } from "./gateway/schedules.ts"
import { StatusStoreClient } from "./gateway/status-store-client.ts"
import { TaskMetrics } from "./gateway/task-metrics.ts"
import { publishNewRun, retryRoute, retryTask } from "./gateway/task-retry.ts"
import { listenForTaskEvents, streamTaskEvents } from "./gateway/task-streams.ts"
import { mountWorkerAdmin, WORKER_ADMIN_SCHEMAS } from "./gateway/worker-admin.ts"

const SERVICE = "gateway" satisfies Service

/** A secret of at least `min` characters, or unset; empty is unset (compose files pass `${ADMIN_TOKEN:-}`). */
const optionalSecret = (min: number) =>
  v.pipe(
    v.optional(v.string()),
    v.transform((secret) => (secret?.trim() ? secret : undefined)),
    v.union([v.undefined(), v.pipe(v.string(), v.minLength(min, `must be at least ${min} characters`))]),
  )

export const GatewayEnv = {
  ...BrokerEnv,
  HOST: stringVar("0.0.0.0"),
  PORT: integerVar(9000, 0, 65535),
  MAX_BODY_BYTES: integerVar(64 * 1024, 1024, 16 * 1024 * 1024),
  /** Largest body of POST /polarities/batch; it also bounds the size of a group's results. */
  MAX_BATCH_BODY_BYTES: integerVar(1024 * 1024, 1024, 16 * 1024 * 1024),
  /** Bytes of batch bodies held at once in all (each costs 15–19× its size until answered); past it, a 503. */
  MAX_BATCH_BYTES_IN_FLIGHT: integerVar(8 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
  /** How long a status query may wait for the status store before the API answers 503. */
  RPC_TIMEOUT_MS: integerVar(5000, 100, 60_000),
  /** How long a submission may wait for the broker's confirm before the API answers 503. */
  PUBLISH_TIMEOUT_MS: integerVar(5000, 100, 60_000),
  /** When set, /admin/* takes `Authorization: Bearer <ADMIN_TOKEN>` (an admin API key too). */
  ADMIN_TOKEN: optionalSecret(32),
  /** API keys, one `<name> <user|admin> sha256:<hex>` a line (`npm run api-key` mints one); read again on change. */
  API_KEYS_FILE: v.optional(v.pipe(v.string(), v.nonEmpty("must not be empty"))),
  /** API keys in the environment, the same lines separated by `;`. */
  API_KEYS: v.optional(v.string()),
  API_KEYS_RELOAD_MS: integerVar(2000, 100, 3_600_000),
  /** Origins whose pages may call the API (CORS), comma-separated; none by default. */
  CORS_ORIGINS: CorsOrigins,
  /** Behind a proxy: the client's address is the last X-Forwarded-For entry, and X-Forwarded-Proto says TLS. */
  TRUST_PROXY: booleanVar(false),
  /** Requests a second per caller (an API key; a client address with LIMIT_BY_ADDRESS); 0 turns the limit off. */
  RATE_LIMIT_PER_SECOND: integerVar(50, 0, 1_000_000),
  /** Requests a caller may send at once before the rate applies. */
  RATE_LIMIT_BURST: integerVar(100, 1, 1_000_000),
  /** Without API keys, apply the per-caller limits to each client address. Off: an open API is not throttled. */
  LIMIT_BY_ADDRESS: booleanVar(false),
  /** Event streams (task events, the dashboard's feed) open at once per caller, and in all. */
  MAX_STREAMS_PER_CALLER: integerVar(20, 1, 1_000_000),
  MAX_STREAMS: integerVar(1000, 1, 1_000_000),
  /** Requests held by `?wait=` at once per caller, and in all. */
  MAX_WAITS_PER_CALLER: integerVar(20, 1, 1_000_000),
  MAX_WAITS: integerVar(1000, 1, 1_000_000),
  /** Tasks an API key may have submitted and not yet final; past it, submissions are a 429. */
  MAX_TASKS_IN_FLIGHT_PER_KEY: integerVar(10_000, 1, 100_000_000),
  /** The largest answer a lookup may have; a lookup that would be larger is a 422 saying how many fit. */
  MAX_LOOKUP_ANSWER_BYTES: integerVar(1024 * 1024, 64 * 1024, 64 * 1024 * 1024),
  /** A comment line this often keeps an idle event stream open through proxies. */
  SSE_HEARTBEAT_MS: integerVar(15_000, 10, 600_000),
  /** How long a worker has to answer a remote-control command (a ping waits this long for the silent ones). */
  CONTROL_TIMEOUT_MS: integerVar(2000, 100, 60_000),
  /** Serve POST /test/flaky, the test-only task kind. Never in production. */
  ENABLE_TEST_TASKS: booleanVar(false),
  /** Private and loopback hosts a callback_url may name all the same (the workers read the same list). */
  WEBHOOK_ALLOW_HOSTS: v.optional(v.string(), ""),
  ...DashboardEnv,
}
export type GatewayConfig = ReturnType<typeof loadGatewayConfig>
export const loadGatewayConfig = (env: Record<string, string | undefined> = process.env) =>
  checkBatchBudget(checkDashboardConfig(loadConfig(GatewayEnv, env)))

/** A budget smaller than the largest batch would refuse that batch forever, with a 503 that says to retry. */
function checkBatchBudget<
  TConfig extends { MAX_BATCH_BODY_BYTES: number; MAX_BATCH_BYTES_IN_FLIGHT: number },
>(config: TConfig): TConfig {
  if (config.MAX_BATCH_BYTES_IN_FLIGHT < config.MAX_BATCH_BODY_BYTES) {
    throw new ConfigError(
      `invalid configuration: MAX_BATCH_BYTES_IN_FLIGHT (${config.MAX_BATCH_BYTES_IN_FLIGHT}) must be at least MAX_BATCH_BODY_BYTES (${config.MAX_BATCH_BODY_BYTES})`,
    )
  }
  return config
}

const REPLAYED = { "idempotent-replayed": "true" }

const isLoopback = (host: string) => host === "localhost" || host === "::1" || /^127\./.test(host)

/** A task as submitted: its kind, its own fields, its deadlines and its delay, before it has an id. */
type Submission = TaskFields & Delay

const isRefusal = (err: unknown): err is BrokerUnavailable => err instanceof BrokerUnavailable && err.refused

/**
 * Whether the broker may hold a message: confirmed, or lost sight of after it was sent (a node that dies may have
 * stored it and not sent the confirm), not refused or never sent.
 */
const mayBeHeld = (publish: PromiseSettledResult<void>) =>
  publish.status === "fulfilled" ||
  !(publish.reason instanceof BrokerUnavailable && (publish.reason.refused || publish.reason.unsent))

/** How soon the gateway asks the store again to close a record whose task the broker did not take. */
const CLOSE_RETRY_MS = 250

/** When a delayed submission is due, in milliseconds since the epoch; undefined when it is due now. */
export function dueTime({ countdown, eta }: Delay, now: number): number | undefined {
  if (countdown !== undefined && eta !== undefined) {
    throw new Problem(422, "give countdown or eta, not both")
  }
  if (countdown !== undefined) return now + Math.round(countdown * 1000)
  if (eta === undefined) return undefined
  const due = Date.parse(eta)
  if (Number.isNaN(due)) throw new Problem(422, `eta: "${eta}" is not a time`)
  if (due <= now) {
    throw new Problem(422, `eta: ${eta} is in the past (it is ${new Date(now).toISOString()} now)`)
  }
  if (due - now > MAX_DELAY_MS) {
    throw new Problem(422, `eta: ${eta} is more than ${MAX_DELAY_MS / 86_400_000} days ahead`)
  }
  return due
}

/** The task of a submission, with a new id. */
function newTask({ countdown, eta, ...fields }: Submission, now = Date.now()): Task {
  return buildTask(fields, { taskId: uuidv7(), now, eta: dueTime({ countdown, eta }, now) })
}

/** Server-Timing: the time the request spent in the gateway, errors included. */
const serverTiming: MiddlewareHandler = async (c, next) => {
  const startedAt = performance.now()
  await next()
  c.res.headers.append("server-timing", `gateway;dur=${(performance.now() - startedAt).toFixed(1)}`)
}

/**
 * A trailing slash names the same resource: the seed app's clients post to `/polarities/`. Other methods are
 * routed without it; a GET or HEAD is redirected to the address without it (trimTrailingSlash), so that a page's
 * relative links resolve from one address.
 */
const routedPath = (request: Request) =>
  request.method === "GET" || request.method === "HEAD" ? getPath(request) : getPathNoStrict(request)

const API_INFO = {
  title: "Sentiment polarity API",
  version: "1.0.0",
  description:
    "Submit reviews and documents for sentiment scoring as tasks on RabbitMQ, follow them, and read their results. Every error is application/problem+json (RFC 9457).",
}
const REQUEST_SCHEMAS = {
  SubmitReview,
  SubmitDocument,
  SubmitBatch,
  LookupTasks,
  FlakyTaskInput,
  ScheduleInput,
  SchedulePatch,
  SubmitReport,
}
const RESPONSE_SCHEMAS = {
  TaskRecord,
  GroupRecord,
  BatchAccepted,
  TaskAccepted,
  TaskPage,
  TaskLookup,
  ProblemDetails,
  Health,
  DeadLetterListing,
  ReplayResult,
  ScheduleRecord,
  ScheduleList,
  ...DASHBOARD_SCHEMAS,
  ...WORKER_ADMIN_SCHEMAS,
  ...QUEUE_ADMIN_SCHEMAS,
}
const REPLAYED_HEADER = "`true` when an Idempotency-Key repeated an earlier request"
const LOCATION = {
  location: "The task's URL: `/polarities/tasks/{task_id}`",
  "idempotent-replayed": REPLAYED_HEADER,
}
const GROUP_LOCATION = {
  location: "The group's URL: `/polarities/groups/{group_id}`",
  "idempotent-replayed": REPLAYED_HEADER,
}
/** What a single-task submission answers: the same for every kind. */
const SUBMITTED_TASK = {
  responses: {
    200: { description: "The task finished within `?wait=`", schema: "TaskRecord", headers: LOCATION },
    202: { description: "Accepted", schema: "TaskAccepted", headers: LOCATION },
  },
  problems: [400, 410, 413, 415, 422, 503],
} as const

const IDEMPOTENCY_HEADER = { "idempotency-key": v.optional(IdempotencyKey) }

/**
 * The gateway without a server: its Hono app, whose `app.fetch` is a plain Web-standard fetch handler that any
 * server can serve (`start` below, Bun.serve, Deno.serve, `deno serve` of a module whose default export is the
 * app), connected to the broker. `close` ends the live streams, lets `stopServing` finish the requests in
 * flight, then closes the broker connection: in that order, so that no request loses its broker halfway.
 */
export async function createGateway(config: GatewayConfig, log = createLogger(SERVICE, config.LOG_LEVEL)) {
  const metrics = new ServiceMetrics(SERVICE)
  const broker = await Broker.connect({
    ...brokerOptions(SERVICE, config, log),
    publishTimeoutMs: config.PUBLISH_TIMEOUT_MS,
    onReconnected: () => metrics.brokerReconnects.inc(),
  })
  const events = new EventPublisher(broker)
  const taskMetrics = new TaskMetrics(metrics)
  const { names } = broker
  const keys = ApiKeys.load(config, log)
  if (keys) log.info("api keys required", { keys: keys.size, file: config.API_KEYS_FILE ?? null })
  else
    log.warn("production risk", {
      risk: "open API: no API_KEYS_FILE or API_KEYS, anyone who reaches it may use it",
    })
  const loopbackOnly = isLoopback(config.HOST)
  if (!config.ADMIN_TOKEN && !keys && !loopbackOnly) {
    log.warn("admin endpoints off", {
      reason: "HOST is not loopback and neither ADMIN_TOKEN nor API keys is set",
    })
  }
  const limiter =
    config.RATE_LIMIT_PER_SECOND > 0
      ? new RateLimiter(config.RATE_LIMIT_PER_SECOND, config.RATE_LIMIT_BURST)
      : undefined
  const streams = new Slots("event streams", {
    max: config.MAX_STREAMS,
    maxSetting: "MAX_STREAMS",
    perCaller: { max: config.MAX_STREAMS_PER_CALLER, setting: "MAX_STREAMS_PER_CALLER" },
  })
  const waits = new Slots("?wait= requests", {
    max: config.MAX_WAITS,
    maxSetting: "MAX_WAITS",
    perCaller: { max: config.MAX_WAITS_PER_CALLER, setting: "MAX_WAITS_PER_CALLER" },
  })
  const batchBytes = new Slots("bytes of batches in flight", {
    max: config.MAX_BATCH_BYTES_IN_FLIGHT,
    maxSetting: "MAX_BATCH_BYTES_IN_FLIGHT",
  })
  heldGauge(metrics, { streams, waits, batch_bytes: batchBytes })

  const store = new StatusStoreClient(broker, config.RPC_TIMEOUT_MS)
  const control = new WorkerControl({
    amqpUrl: () => broker.url,
    controlExchange: names.controlExchange,
    name: `${SERVICE}-control`,
  })
  // Long enough for a request that claimed a key to publish its task and its PENDING event.
  const claimLeaseMs = 2 * config.PUBLISH_TIMEOUT_MS + 1000
  const watchers = await listenForTaskEvents(broker, log)

  const tasks = new TaskPublisher(broker)

  /** The task's PENDING event, confirmed; a new submission's names its key as owner. */
  function emitPending(task: Task, owner: string | null, group?: PendingGroup): Promise<void> {
    return events.emit(pendingEvent(task, owner, group))
  }

  /**
   * Publish the task and its PENDING event at once, and resolve once both are confirmed: from then on the
   * task can't be lost, and the status store knows it. Waiting for one confirm instead of two in a row is a
   * millisecond off every submission. If the task is not confirmed while its PENDING is (or may be stored, its
   * confirm lost with a node), the store has a record of a task the client is answered 503 for: it is closed
   * (`closeUnaccepted`), so that no accepted-looking task waits for ever.
   *
   * With an Idempotency-Key (`keyed`) the task goes first, and its PENDING only once the broker has the task. A
   * replay is answered from the store, so the store must never know a keyed task that the broker may not have:
   * a node that died between the two confirms would leave it PENDING for good, and every replay would answer
   * 202 for it. Unknown to the store, the replay takes the key over after its lease and publishes the same ids
   * again. A keyed submission pays one more round trip for it.
   */
  async function publishTask(
    task: Task,
    owner: string | null = null,
    group?: PendingGroup,
    keyed = false,
  ): Promise<void> {
    if (keyed) {
      await tasks.publish(task)
      await emitPending(task, owner, group)
      taskMetrics.published(task)
      return
    }
    const [queued, recorded] = await Promise.allSettled([
      tasks.publish(task),
      emitPending(task, owner, group),
    ])
    if (queued.status === "rejected") {
      if (mayBeHeld(recorded)) await closeUnaccepted(task, queued.reason)
      throw queued.reason
    }
    if (recorded.status === "rejected") throw recorded.reason
    taskMetrics.published(task)
  }

  /**
   * End FAILURE the record of a task the broker did not take, as the store holds it at that run's PENDING (a
   * worker that started it after all keeps it). Refused (a full queue), it never ran. Not confirmed (the node
   * died with the task in flight, or did not answer in time), the client was answered 503 and submits again
   * under a new id, while the broker may or may not hold this one: the record says so rather than wait for ever.
   * After a node's death the gateway is reconnecting, so it asks again until RPC_TIMEOUT_MS has passed.
   */
  async function closeUnaccepted(task: Task, cause: unknown): Promise<void> {
    const reason = cause instanceof Error ? cause.message : String(cause)
    const error = isRefusal(cause)
      ? `the broker refused the task (${reason}); it never ran`
      : `the broker did not confirm the task (${reason}), and its submission was answered 503: it was not accepted and may never run; should it run after all, this record stays FAILURE`
    const deadline = Date.now() + config.RPC_TIMEOUT_MS
    for (;;) {
      try {
        await store.refused(task.task_id, task.run, error)
        return
      } catch (err) {
        if (Date.now() >= deadline) {
          log.error("unaccepted task left PENDING: the status store did not close it", {
            taskId: task.task_id,
            err,
          })
          return
        }
        await sleep(CLOSE_RETRY_MS)
      }
    }
  }

  /**
   * A batch the same way, each task with its place in the group; the tasks of one turn still go out in as few
   * messages as their number and size allow. A batch travels in several messages, so a nearly full queue may
   * take some and refuse the rest: the group then records every task, the refused ones closed as FAILURE, and
   * the answer is a 503 that says how many of the group's tasks run. With an Idempotency-Key the refused ones
   * are not recorded: repeating the request with its key publishes them under the same ids.
   */
  async function publishBatch(
    batch: Task[],
    groupId: string,
    owner: string | null,
    keyed = false,
  ): Promise<void> {
    const size = batch.length
    const outcomes = await Promise.allSettled(
      batch.map((task, index) => publishTask(task, owner, { group_id: groupId, index, size }, keyed)),
    )
    const failures = outcomes.flatMap((outcome) => (outcome.status === "rejected" ? [outcome.reason] : []))
    const [failure] = failures
    if (failure === undefined) return
    if (!failures.every(isRefusal)) throw failure
    const refusedOnes = keyed
      ? "they are not recorded; repeat the request with its Idempotency-Key shortly to publish them"
      : `they ended FAILURE without running, and the other ${size - failures.length} run; GET /polarities/groups/${groupId} shows each task. Retry the refused reviews shortly`
    throw new Problem(
      503,
      `the broker refused ${failures.length} of the ${size} tasks of group ${groupId} (${failure.message}): ${refusedOnes}`,
      { "retry-after": String(RETRY_AFTER_SECONDS) },
    )
  }

  /**
   * With an Idempotency-Key, claim it for these ids before anything is published. Undefined without a key;
   * otherwise the store's answer: publish its ids (ours, or a takeover's), or they were published already.
   */
  async function claimKey(c: Context, body: unknown, taskIds: string[], groupId?: string) {
    const key = c.req.header("idempotency-key")
    if (key === undefined) return undefined
    const checked = v.safeParse(IdempotencyKey, key)
    if (!checked.success) throw new Problem(422, explainIssues(checked.issues))
    const { owner } = callerOf(c)
    const claim = await store.claim({
      op: "claim",
      key,
      ...(owner !== null && { owner }),
      fingerprint: requestFingerprint(c.req.routePath, body),
      task_ids: taskIds,
      ...(groupId && { group_id: groupId }),
      lease_ms: claimLeaseMs,
    })
    if (claim.claim === "mismatch") {
      throw new Problem(
        422,
        `Idempotency-Key "${key}" was used with another request; use a new key for a new request`,
      )
    }
    return claim
  }

  const inFlight = new InFlightQuota(config.MAX_TASKS_IN_FLIGHT_PER_KEY, (owner) => store.inFlight(owner))

  /** 429 past the key's MAX_TASKS_IN_FLIGHT_PER_KEY. An open API has no owners, and no quota. */
  async function checkInFlight(c: Context, adding: number): Promise<void> {
    const { owner } = callerOf(c)
    if (owner !== null) await inFlight.take(owner, adding)
  }

  const allowedHosts = new AllowedHosts(config.WEBHOOK_ALLOW_HOSTS)

  /** A callback URL whose host is internal by its name alone (and not allowed) is refused at once. */
  function checkCallback(url: string | undefined): void {
    const problem = url === undefined ? null : callbackUrlProblem(url, allowedHosts)
    if (problem) throw new Problem(422, problem)
  }

  async function submit(c: Context, submission: Submission): Promise<Response> {
    const { wait: waitMs } = readQuery(c, WaitQuery)
    checkPriority(submission.priority, config.QUEUE_TYPE)
    await checkInFlight(c, 1)
    checkCallback(submission.callback_url)
    return waits.around(c, waitMs > 0, async () => {
      const task = newTask(submission)
      const claim = await claimKey(c, submission, [task.task_id])
      const taskId = claim?.task_ids[0] ?? task.task_id
      const accepted = task.eta === undefined ? "PENDING" : "SCHEDULED"
      if (claim?.claim === "existing") return answerTask(c, taskId, waitMs, true, accepted)
      await publishTask({ ...task, task_id: taskId }, callerOf(c).owner, undefined, claim !== undefined)
      return answerTask(c, taskId, waitMs, false, accepted)
    })
  }

  /** 200 with the task if it is final within the wait, else 202 with its status. */
  async function answerTask(
    c: Context,
    taskId: string,
    waitMs: number,
    replayed: boolean,
    accepted: TaskStatus,
  ) {
    const headers = { location: `/polarities/tasks/${taskId}`, ...(replayed && REPLAYED) }
    let status = accepted
    if (waitMs > 0 || replayed) {
      // The task is accepted whatever happens here: a status store that does not answer still means 202.
      const owner = ownerFilter(callerOf(c))
      const record = await store.getTask(taskId, { waitMs, owner }).catch((err: Error) => {
        // A replay whose task expired meanwhile says so, rather than that it is PENDING.
        if (err instanceof Problem && err.status === 410) throw err
        log.warn("wait for task failed", { taskId, err: err.message })
        return null
      })
      if (waitMs > 0 && record && FINAL_STATUSES.has(record.status)) return c.json(record, 200, headers)
      status = record?.status ?? status
    }
    return c.json({ task_id: taskId, status }, 202, headers)
  }

  async function submitBatch(c: Context, batch: SubmitBatch): Promise<Response> {
    const { wait: waitMs } = readQuery(c, WaitQuery)
    checkPriority(batch.priority, config.QUEUE_TYPE)
    await checkInFlight(c, batch.reviews.length)
    return waits.around(c, waitMs > 0, () => publishGroup(c, batch, waitMs))
  }

  async function publishGroup(c: Context, batch: SubmitBatch, waitMs: number): Promise<Response> {
    const { reviews, language, ...options } = batch
    checkCallback(options.callback_url)
    let groupId = uuidv7()
    const now = Date.now()
    let tasks = reviews.map((review) =>
      newTask({ kind: "polarity:review", review, ...(language && { language }), ...options }, now),
    )
    const claim = await claimKey(
      c,
      batch,
      tasks.map((task) => task.task_id),
      groupId,
    )
    if (claim) {
      groupId = claim.group_id ?? groupId
      tasks = tasks.map((task, i) => ({ ...task, task_id: claim.task_ids[i] ?? task.task_id }))
    }
    if (claim?.claim !== "existing")
      await publishBatch(tasks, groupId, callerOf(c).owner, claim !== undefined)
    const headers = {
      location: `/polarities/groups/${groupId}`,
      ...(claim?.claim === "existing" && REPLAYED),
    }
    const owner = ownerFilter(callerOf(c))
    const group =
      waitMs > 0 || claim
        ? await store.group(groupId, waitMs, owner).catch((err: Error) => {
            if (err instanceof Problem && err.status === 410) throw err
            return null
          })
        : null
    if (waitMs > 0 && group?.results) return c.json(group, 200, headers)
    const accepted = {
      group_id: groupId,
      status: group?.status ?? (tasks[0]?.eta === undefined ? "PENDING" : "SCHEDULED"),
      task_ids: tasks.map((t) => t.task_id),
    }
    return c.json(accepted, 202, headers)
  }

  const publishRun = publishNewRun(store, publishTask)
  const deadLetters = new DeadLetters(broker, publishRun, log)

  const app = new Hono({ getPath: routedPath })
  app.use(serverTiming)
  app.use(trimTrailingSlash())
  app.use(metrics.httpMiddleware)
  app.use(securityHeaders)
  const cors = corsPolicy(config.CORS_ORIGINS)
  if (cors) app.use(cors)
  app.use(allowedMethods(app))
  app.use(refuseCrossSite(config.CORS_ORIGINS))
  const dashboardCredentials = {
    token: config.DASHBOARD_TOKEN,
    user: config.DASHBOARD_USER,
    password: config.DASHBOARD_PASSWORD,
  }
  app.use(
    guard({
      keys,
      adminToken: config.ADMIN_TOKEN,
      loopbackOnly,
      limitByAddress: config.LIMIT_BY_ADDRESS,
      trustProxy: config.TRUST_PROXY,
      dashboard: dashboardAuth({ credentials: dashboardCredentials, keys, trustProxy: config.TRUST_PROXY }),
    }),
  )
  app.use(rateLimit(limiter))
  installErrorBoundary(app, log)
  const docs = new ApiDocs(API_INFO, REQUEST_SCHEMAS, RESPONSE_SCHEMAS)
  const route = docs.route.bind(docs, app)

  const limitBody = bodyLimit({
    maxSize: config.MAX_BODY_BYTES,
    onError: () => {
      throw new Problem(413, `the body is larger than ${config.MAX_BODY_BYTES} bytes`)
    },
  })

  const limitBatchBody = bodyLimit({
    maxSize: config.MAX_BATCH_BODY_BYTES,
    onError: () => {
      throw new Problem(413, `the body is larger than ${config.MAX_BATCH_BODY_BYTES} bytes`)
    },
  })
  const holdBatchBytes = holdBodyBytes(batchBytes, config.MAX_BATCH_BODY_BYTES)

  route(
    "get",
    "/healthz",
    {
      summary: "Health: is the gateway connected to the broker?",
      tag: "operations",
      responses: {
        200: { description: "Connected", schema: "Health" },
        503: { description: "Not connected to the broker", schema: "Health" },
      },
    },
    healthHandler(() => broker.connected),
  )
  route(
    "get",
    "/metrics",
    {
      summary: "Prometheus metrics of this gateway",
      tag: "operations",
      responses: { 200: { description: "The Prometheus text format", mediaType: "text/plain" } },
    },
    metrics.handler,
  )

  route(
    "post",
    "/polarities",
    {
      summary: "Score a review's polarity",
      description:
        "Publishes a `polarity:review` task (routed to the `polarity` queue) and its PENDING event, both confirmed by the broker, before it answers.",
      tag: "tasks",
      query: WaitQuery,
      headers: IDEMPOTENCY_HEADER,
      body: "SubmitReview",
      ...SUBMITTED_TASK,
    },
    limitBody,
    async (c) => submit(c, { kind: "polarity:review", ...(await readJson(c, SubmitReview)) }),
  )

  route(
    "post",
    "/polarities/batch",
    {
      summary: "Score a batch of reviews as one group",
      description: `Validates every review first (a bad one is a 422 naming its index, and nothing is published), then publishes one \`polarity:review\` task per review and answers the group's id. Up to ${MAX_BATCH_SIZE} reviews and \`MAX_BATCH_BODY_BYTES\` of body. With \`?wait=\` it answers 200 with every result, in input order, if the group finishes in time.`,
      tag: "groups",
      query: WaitQuery,
      headers: IDEMPOTENCY_HEADER,
      body: "SubmitBatch",
      responses: {
        200: {
          description: "The group finished within `?wait=`",
          schema: "GroupRecord",
          headers: GROUP_LOCATION,
        },
        202: { description: "Accepted", schema: "BatchAccepted", headers: GROUP_LOCATION },
      },
      problems: [400, 410, 413, 415, 422, 503],
    },
    holdBatchBytes,
    limitBatchBody,
    async (c) => submitBatch(c, await readJson(c, SubmitBatch)),
  )

  route(
    "get",
    "/polarities/groups/:groupId",
    {
      summary: "A batch's progress and, once it is final, its results in input order",
      description:
        "`status` is PENDING while every task is PENDING, STARTED once any has moved on and until all are final, then SUCCESS if every task succeeded, else FAILURE. `counts` has every task status. `?wait=` holds the answer until the group is final.",
      tag: "groups",
      path: { groupId: v.pipe(TaskId, v.description("The group id the batch answered.")) },
      query: WaitQuery,
      responses: { 200: { description: "The group", schema: "GroupRecord" } },
      problems: [404, 410, 422, 503],
    },
    async (c) => {
      const { wait: waitMs } = readQuery(c, WaitQuery)
      const groupId = c.req.param("groupId") ?? ""
      if (!v.is(TaskId, groupId)) throw new Problem(404, `no group "${groupId}": group ids are UUIDs`)
      const owner = ownerFilter(callerOf(c))
      const group = await waits.around(c, waitMs > 0, () => store.group(groupId, waitMs, owner))
      if (!group) throw new Problem(404, `no group with id ${groupId}`)
      return c.json(group)
    },
  )

  route(
    "post",
    "/polarities/documents",
    {
      summary: "Score a document sentence by sentence",
      description:
        "Publishes a `document:sentences` task (routed to the `default` queue). The result has each sentence's score and polarity, and their totals. A `time_limit` is checked between sentences.",
      tag: "tasks",
      query: WaitQuery,
      headers: IDEMPOTENCY_HEADER,
      body: "SubmitDocument",
      ...SUBMITTED_TASK,
    },
    limitBody,
    async (c) => submit(c, { kind: "document:sentences", ...(await readJson(c, SubmitDocument)) }),
  )

  route(
    "post",
    "/polarities/reports",
    {
      summary: "Report on the polarity of the tasks scored in a window",
      description:
        'Publishes a `report:polarity` task (routed to the `default` queue). Its result counts the reviews and documents that succeeded among the tasks submitted in the window, per polarity and per language, with their mean score and the ten most frequent positive and negative words. `window` is `"hour"` or `"day"` before the submission; or give `from` and `to` (at most 31 days apart). With API keys on, a report covers the tasks of its key. Schedule it: `POST /schedules` with `{"kind": "report:polarity", "window": "hour"}` as its task.',
      tag: "reports",
      query: WaitQuery,
      headers: IDEMPOTENCY_HEADER,
      body: "SubmitReport",
      ...SUBMITTED_TASK,
    },
    limitBody,
    async (c) => {
      const owner = callerOf(c).owner
      const fields = reportFields(await readJson(c, SubmitReport))
      return submit(c, { kind: "report:polarity", ...fields, ...(owner !== null && { owner }) })
    },
  )
  latestReportRoute(route, store)

  route(
    "get",
    "/polarities/tasks",
    {
      summary: "List tasks, newest first",
      description: `Pages through every task (or those of one status), newest first. Follow \`next_cursor\` for the next page; it is null on the last. Lists what was accepted up to the request.`,
      tag: "tasks",
      query: ListQuery,
      responses: { 200: { description: "A page of tasks", schema: "TaskPage" } },
      problems: [422, 503],
    },
    async (c) => {
      const { status, limit, cursor } = readQuery(c, ListQuery)
      const page = await store.listTasks(status, limit, decodeCursor(cursor), {
        owner: ownerFilter(callerOf(c)),
      })
      return c.json({
        tasks: page.tasks,
        next_cursor: page.next_after === null ? null : encodeCursor(page.next_after),
      })
    },
  )

  route(
    "post",
    "/polarities/tasks/lookup",
    {
      summary: "Many tasks' status and results in one request",
      description: `Answers the record of each of 1–${MAX_BATCH_SIZE} task ids, in the order asked, and \`null\` for an id that was never submitted or whose result expired (listed in \`expired\`): one request instead of a GET per task, for a client following many tasks (Celery's \`ResultSet\`). Ids accepted before the request are always found. \`?wait=\` holds the answer until every task found is final, or the time is up (Celery's \`ResultSet.join\`); it is 200 either way.`,
      tag: "tasks",
      query: WaitQuery,
      body: "LookupTasks",
      responses: { 200: { description: "The tasks, in the order asked", schema: "TaskLookup" } },
      problems: [400, 413, 415, 422, 503],
    },
    limitBody,
    async (c) => {
      const { wait: waitMs } = readQuery(c, WaitQuery)
      const { task_ids } = await readJson(c, LookupTasks)
      const answer = await waits.around(c, waitMs > 0, () =>
        store.lookupTasks(task_ids, {
          waitMs,
          maxBytes: config.MAX_LOOKUP_ANSWER_BYTES,
          owner: ownerFilter(callerOf(c)),
        }),
      )
      if ("too_large" in answer) {
        const { fit } = answer.too_large
        throw new Problem(
          422,
          `the answer would be larger than ${config.MAX_LOOKUP_ANSWER_BYTES} bytes (MAX_LOOKUP_ANSWER_BYTES): the first ${fit} of these ${task_ids.length} tasks fit; ask for fewer at a time`,
        )
      }
      return c.json(answer)
    },
  )

  const getTask = async (c: Context) => {
    const taskId = parseTaskId(c.req.param("taskId") ?? "")
    const record = await store.getTask(taskId, { owner: ownerFilter(callerOf(c)) })
    if (!record) throw new Problem(404, `no task with id ${taskId}`)
    return c.json(record)
  }
  const getTaskDoc = {
    summary: "A task's status and result",
    tag: "tasks",
    path: { taskId: TaskIdParam },
    responses: { 200: { description: "The task", schema: "TaskRecord" } },
    problems: [404, 410, 503],
  } as const
  route("get", "/polarities/tasks/:taskId", getTaskDoc, getTask)
  route(
    "get",
    "/polarities/tasks/:taskId/events",
    {
      summary: "Follow a task live: a Server-Sent Events stream of its states",
      description:
        "Each state change is one event: `event:` the status, `data:` the task record (as GET answers it), `id:` attempts and status. The current state comes first; the stream ends after a final state (SUCCESS, FAILURE, EXPIRED, REVOKED), at once for a task that has already finished. While an attempt runs, each progress report it makes (at most one per PROGRESS_INTERVAL_MS) is an `event: progress` whose `data:` is `{done, total, message?, at}`, without an `id:`. A comment line every 15 s keeps the connection alive. A client that reconnects with `Last-Event-ID` set to the final state's id gets 204 (EventSource then stops reconnecting).",
      tag: "tasks",
      path: { taskId: TaskIdParam },
      headers: {
        "last-event-id": v.optional(
          v.pipe(v.string(), v.description("The `id` of the last event received, when reconnecting.")),
        ),
      },
      responses: {
        200: { description: "The event stream", mediaType: "text/event-stream" },
        204: { description: "The task is final and the client has its final state already" },
      },
      problems: [404, 410, 503],
    },
    followTask,
  )
  const retry = retryTask(store, publishRun)
  route(
    "delete",
    "/polarities/tasks/:taskId",
    {
      summary: "Revoke a task that has not started, or with terminate=true one that runs",
      description:
        "A PENDING task, or one waiting for its next attempt (RETRY), becomes REVOKED at once and workers skip it. A worker that took the task just before it heard of the revoke may still run it; the task stays REVOKED whatever that run reports. With `terminate=true` a running (STARTED) task becomes REVOKED too, with the error `terminated while running attempt N`: the worker running it aborts the attempt (its AbortSignal) and neither retries nor dead-letters it. Without it, a running task is a 409.",
      tag: "tasks",
      path: { taskId: TaskIdParam },
      query: RevokeQuery,
      responses: { 200: { description: "The task, now REVOKED", schema: "TaskRecord" } },
      problems: [404, 409, 410, 422, 503],
    },
    revokeTask,
  )
  retryRoute(route, retry)
  scheduleRoutes(route, store, config.QUEUE_TYPE)

  /** A task's event stream: `/polarities/tasks/{id}/events`, and the dashboard's open detail. */
  async function followTask(c: Context) {
    const taskId = parseTaskId(c.req.param("taskId") ?? "")
    const caller = callerOf(c)
    return streamTaskEvents(c, taskId, {
      store,
      watchers,
      heartbeatMs: config.SSE_HEARTBEAT_MS,
      log,
      release: streams.take(caller),
      owner: ownerFilter(caller),
    })
  }

  /** DELETE of a task: `/polarities/tasks/{id}`, and the dashboard's Cancel button. */
  async function revokeTask(c: Context) {
    const taskId = parseTaskId(c.req.param("taskId") ?? "")
    const { terminate } = readQuery(c, RevokeQuery)
    const { revoke, task } = await store.revokeTask(taskId, ownerFilter(callerOf(c)), terminate)
    switch (revoke) {
      case "revoked":
        return c.json(task)
      case "not_found":
        throw new Problem(404, `no task with id ${taskId}`)
      case "started":
        throw new Problem(
          409,
          `task ${taskId} is already running; only a task that has not started can be revoked, unless with ?terminate=true`,
        )
      case "final":
        throw new Problem(
          409,
          `task ${taskId} has already finished (${task?.status}); there is nothing to revoke`,
        )
    }
  }
  // The seed app's path, kept for its clients.
  route("get", "/polarities/task/:taskId", { ...getTaskDoc, deprecated: true }, getTask)

  // A Map, never a plain object: a name from the URL such as __proto__ must find nothing.
  const deadLetterQueues = new Map([
    ["failed", names.failedQueue],
    ["poison", names.poisonQueue],
  ])
  route(
    "get",
    "/admin/dead-letters/:queue",
    {
      summary: "Peek at a dead-letter queue (the messages stay in it)",
      tag: "admin",
      path: { queue: v.picklist(["failed", "poison"]) },
      query: AdminLimitQuery,
      responses: {
        200: { description: "The messages at the head of the queue", schema: "DeadLetterListing" },
      },
      problems: [401, 403, 404, 422, 503],
    },
    async (c) => {
      const queue = deadLetterQueues.get(c.req.param("queue") ?? "")
      if (!queue) throw new Problem(404, "dead-letter queues are failed and poison")
      const { limit } = readQuery(c, AdminLimitQuery)
      return c.json({ queue, messages: await deadLetters.peek(queue, limit) })
    },
  )
  route(
    "post",
    "/admin/dead-letters/failed/replay",
    {
      summary: "Replay failed tasks: each starts a new run",
      tag: "admin",
      query: AdminLimitQuery,
      responses: { 200: { description: "The tasks replayed", schema: "ReplayResult" } },
      problems: [401, 403, 422, 503],
    },
    async (c) => {
      const replayed = await deadLetters.replayFailed(readQuery(c, AdminLimitQuery).limit)
      return c.json({ replayed: replayed.length, task_ids: replayed })
    },
  )

  if (config.ENABLE_TEST_TASKS) {
    route(
      "post",
      "/test/flaky",
      {
        summary: "Test only: a task that fails, crashes or sleeps as asked",
        description: "Served only where ENABLE_TEST_TASKS=true. Never in production.",
        tag: "test",
        query: WaitQuery,
        body: "FlakyTaskInput",
        ...SUBMITTED_TASK,
      },
      limitBody,
      async (c) => submit(c, { kind: "test:flaky", ...(await readJson(c, FlakyTaskInput)) }),
    )
  }

  const dashboard = mountDashboard(route, {
    config,
    streams,
    actions: { revoke: revokeTask, retry, follow: followTask },
    topology: topologyOptions(config),
    broker,
    store,
    watchers,
    metrics,
    log,
  })

  const openApi = docs.document()
  route(
    "get",
    "/openapi.json",
    {
      summary: "This API's OpenAPI 3.1 document",
      tag: "docs",
      responses: { 200: { description: "The document" } },
    },
    (c) => c.json(openApi),
  )
  route(
    "get",
    "/docs",
    {
      summary: "Interactive API docs (Swagger UI)",
      tag: "docs",
      responses: { 200: { description: "An HTML page", mediaType: "text/html" } },
    },
    docsPage,
  )
  route(
    "get",
    "/docs/:asset",
    {
      summary: "The docs page's scripts, styles and icons",
      tag: "docs",
      path: { asset: v.picklist(DOCS_ASSETS) },
      responses: { 200: { description: "The file" } },
      problems: [404],
    },
    (c) => {
      const asset = c.req.param("asset") ?? ""
      if (!v.is(v.picklist(DOCS_ASSETS), asset)) throw new Problem(404, `no docs asset "${asset}"`)
      return docsAsset(asset)
    },
  )

  const workerAdmin = { control, store, timeoutMs: config.CONTROL_TIMEOUT_MS }
  mountWorkerAdmin(route, "/admin", "admin", workerAdmin)
  mountWorkerAdmin(route, "/dashboard/api", "dashboard", workerAdmin)
  const queueAdmin = { broker, store, queues: dashboard.queues }
  mountQueueAdmin(route, "/admin", "admin", queueAdmin)
  mountQueueAdmin(route, "/dashboard/api", "dashboard", queueAdmin)

  async function close(stopServing: () => Promise<void> = async () => {}): Promise<void> {
    keys?.close()
    limiter?.close()
    watchers.close()
    await dashboard.close()
    await stopServing()
    await control.close()
    await broker.close()
  }
  return { app, close, openStreams: () => watchers.size, dashboardStreams: dashboard.streams }
}

export async function start(config: GatewayConfig) {
  const log = createLogger(SERVICE, config.LOG_LEVEL)
  const gateway = await createGateway(config, log)
  const server = serveApp(gateway.app, config.PORT, config.HOST)
  log.info("started", { url: server.url })

  async function stop(): Promise<void> {
    await gateway.close(server.stop)
    log.info("stopped")
  }
  return { ...gateway, url: server.url, stop }
}

if (import.meta.main) runAsProgram(SERVICE, () => start(loadGatewayConfig()))

// polarity-worker: consumes tasks from the work queues, runs each (`polarity-worker/execution.ts`: scoring
// with `sentiment` in English or Russian), and reports STARTED and the outcome as events. A failed attempt is
// retried after an exponential delay held by the broker; a task is acked only after its outcome (and any
// retry copy) is confirmed.
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import type { AMQPMessage } from "@cloudamqp/amqp-client"
import * as v from "valibot"
import {
  Broker,
  brokerOptions,
  checkTask,
  decodeMessage,
  PoisonMessage,
  topologyOptions,
} from "../shared/amqp.ts"
import { BrokerEnv, booleanVar, ConfigError, integerVar, loadConfig, stringVar } from "../shared/config.ts"
import {
  DetailReply,
  MAX_HEARTBEAT_INTERVAL_MS,
  MessageType,
  PolarityReportReply,
  RevokedReply,
  Task,
  TaskBatch,
  type TaskEvent,
  TaskEventBatch,
  TaskLookup,
  type WebhookAttempt,
  WebhookDelivery,
  WorkerId,
} from "../shared/contracts.ts"
import { EventPublisher } from "../shared/events.ts"
import { runAsProgram, serveHealthAndMetrics } from "../shared/http.ts"
import { createLogger } from "../shared/log.ts"
import { ServiceMetrics } from "../shared/metrics.ts"
import { askStatusStore, checkStatusReply } from "../shared/status-rpc.ts"
import {
  delayEntryExchange,
  delayRoutingKey,
  delayTicks,
  eventRoutingKey,
  quarantineRoutingKey,
  retryDelayMs,
  retryRoutingKey,
  routeTask,
  type Service,
  TASK_ROUTES,
  type TaskRoute,
  WEBHOOK_ATTEMPT_KEY,
} from "../shared/topology.ts"
import { AllowedHosts } from "../shared/webhooks.ts"
import { serveControl } from "./polarity-worker/control.ts"
import {
  AttemptContext,
  crash,
  crashesBeforeAck,
  execute,
  outcomeOf,
  TaskTerminated,
} from "./polarity-worker/execution.ts"
import { Heartbeats, workerHost } from "./polarity-worker/heartbeat.ts"
import { type Held, InHand } from "./polarity-worker/in-hand.ts"
import { WorkerMetrics } from "./polarity-worker/metrics.ts"
import { ProgressReports } from "./polarity-worker/progress.ts"
import { followQueuePauses, QueuePauses } from "./polarity-worker/queue-pauses.ts"
import { RateLimitList, RateLimits } from "./polarity-worker/rate-limits.ts"
import { startSupervisor } from "./polarity-worker/supervisor.ts"
import { deliver } from "./polarity-worker/webhooks.ts"

const SERVICE = "polarity-worker" satisfies Service
/** How a process of a pool exits when a terminated task will not stop: its supervisor replaces it. */
const EXIT_TERMINATED = 70
/** How long a starting worker waits for the store's list of revokes before it starts without it. */
const REVOKES_TIMEOUT_MS = 3000

/** A comma-separated list of queues (routes), each known, none twice; all of them when unset. */
const QueueList = v.pipe(
  v.optional(v.string(), TASK_ROUTES.join(",")),
  v.transform((raw) => raw.split(",").map((queue) => queue.trim())),
  v.array(
    v.picklist(
      TASK_ROUTES,
      (issue) => `each queue must be one of ${TASK_ROUTES.join(", ")}, not ${issue.received}`,
    ),
  ),
  v.minLength(1, "must name at least one queue"),
  v.check((queues) => new Set(queues).size === queues.length, "must not name a queue twice"),
  v.transform((queues): TaskRoute[] => queues),
)

/** `max,min` (Celery's order), or `max` alone (min 0): the bounds of an autoscaled pool. */
const Autoscale = v.optional(
  v.pipe(
    v.string(),
    v.regex(/^\d{1,3}(,\d{1,3})?$/, "must be max,min (Celery's order), such as 8,2"),
    v.transform((raw) => {
      const [max = 0, min = 0] = raw.split(",").map(Number)
      return { max, min }
    }),
    v.check(({ max }) => max >= 1 && max <= 100, "the maximum must be 1 to 100 processes"),
    v.check(({ max, min }) => min <= max, "the minimum must not be above the maximum"),
  ),
)

export const WorkerEnv = {
  ...BrokerEnv,
  WORKER_HOST: stringVar("0.0.0.0"),
  WORKER_PORT: integerVar(9001, 0, 65535),
  /** The work queues this worker consumes, by route (Celery's `-Q`); a task of another queue never comes here. */
  WORKER_QUEUES: QueueList,
  /** Tasks delivered to this process before it acks any: bounds memory and how much a crash hands back. */
  WORKER_PREFETCH: integerVar(64, 1, 65535),
  /** Publish a STARTED event per task (Celery's task_track_started). */
  TRACK_STARTED: booleanVar(true),
  /** A task redelivered this many times without finishing (it crashes or stalls its worker) is dead-lettered. */
  REDELIVERY_LIMIT: integerVar(3, 1, 100),
  /** Revoked task ids kept in memory to skip them (Celery keeps 50,000 too). */
  REVOKED_IDS_KEPT: integerVar(50_000, 1, 10_000_000),
  /** How often the worker publishes its heartbeat (the dashboard's worker list). */
  WORKER_HEARTBEAT_MS: integerVar(2000, 50, MAX_HEARTBEAT_INTERVAL_MS),
  /** A running task's progress reports go out at most this often, the latest one each time. */
  PROGRESS_INTERVAL_MS: integerVar(250, 50, 60_000),
  /**
   * Per task kind, the most attempts this process starts (Celery's `rate_limit`, per worker as there):
   * `polarity:review=200/s,document:sentences=10/m`. A task over it waits in hand until its turn.
   */
  RATE_LIMITS: RateLimitList,
  /** Accept the test-only task kind `test:flaky`. Never in production. */
  ENABLE_TEST_TASKS: booleanVar(false),
  /** The worker's id in heartbeats, STARTED events and remote control (Celery's `-n`); `host:pid` when unset. */
  WORKER_NAME: v.optional(WorkerId),
  /**
   * `max,min`: this program is the supervisor of a pool of worker processes that grows with its queues' backlog
   * and shrinks when idle (Celery's `--autoscale`); unset, it is one worker process.
   */
  WORKER_AUTOSCALE: Autoscale,
  /** Tasks waiting per process in the pool's queues above which the pool grows. */
  AUTOSCALE_BACKLOG: integerVar(10, 1, 1_000_000),
  /** How often the pool's supervisor reads its queues' depth. */
  AUTOSCALE_INTERVAL_MS: integerVar(1000, 50, 60_000),
  /** How long a process of a pool holds no task, with nothing waiting, before it is stopped. */
  AUTOSCALE_IDLE_MS: integerVar(30_000, 100, 86_400_000),
  /** A process of a pool whose terminated attempt still runs after this long exits, and the pool replaces it. */
  POOL_TERMINATE_GRACE_MS: integerVar(5000, 0, 600_000),
  /** Set by a pool's supervisor on the processes it starts: its own worker id. */
  WORKER_SUPERVISOR: v.optional(v.pipe(v.string(), v.nonEmpty())),
  /** Test only (needs ENABLE_TEST_TASKS): a wait before each sentence of a document, to make a slow one. */
  TEST_SENTENCE_DELAY_MS: integerVar(0, 0, 60_000),
  /** The key completion webhooks are signed with; without it, this worker gives every delivery up, saying why. */
  WEBHOOK_SECRET: v.optional(v.pipe(v.string(), v.minLength(16, "must be at least 16 characters"))),
  /** Host names, addresses and networks (a.b.c.d/n) a callback may reach though they are private or loopback. */
  WEBHOOK_ALLOW_HOSTS: v.optional(v.string(), ""),
  /** Attempts at one delivery, the first included, before it is given up. */
  WEBHOOK_MAX_ATTEMPTS: integerVar(10, 1, 100),
  /** The wait before the second attempt; each later one waits twice as long (equal jitter), up to an hour. */
  WEBHOOK_RETRY_BASE_MS: integerVar(5000, 100, 3_600_000),
  /** How long an attempt waits for the receiver's answer. */
  WEBHOOK_TIMEOUT_MS: integerVar(10_000, 100, 120_000),
  /** Deliveries in hand at once (0: this worker delivers none). */
  WEBHOOK_PREFETCH: integerVar(16, 0, 1000),
}
export type WorkerConfig = ReturnType<typeof loadWorkerConfig>
export function loadWorkerConfig(env: Record<string, string | undefined> = process.env) {
  const config = loadConfig(WorkerEnv, env)
  if (config.TEST_SENTENCE_DELAY_MS > 0 && !config.ENABLE_TEST_TASKS) {
    throw new ConfigError("invalid configuration: TEST_SENTENCE_DELAY_MS needs ENABLE_TEST_TASKS=true")
  }
  return config
}

/** The supervisor of an autoscaled pool: it consumes no task, its processes do (`polarity-worker/supervisor.ts`). */
export async function startPool(
  config: WorkerConfig & { WORKER_AUTOSCALE: { max: number; min: number } },
  script: string,
  env: Record<string, string | undefined> = process.env,
) {
  const log = createLogger(SERVICE, config.LOG_LEVEL)
  const metrics = new ServiceMetrics(SERVICE)
  const broker = await Broker.connect({
    ...brokerOptions(SERVICE, config, log),
    onReconnected: () => metrics.brokerReconnects.inc(),
  })
  // A paused queue's backlog waits for its resume: more processes would not take it.
  const pauses = new QueuePauses(config.WORKER_QUEUES, log)
  await followQueuePauses(broker, pauses, REVOKES_TIMEOUT_MS, log)
  const settings = {
    ...config.WORKER_AUTOSCALE,
    name: config.WORKER_NAME ?? `${workerHost()}:${process.pid}`,
    backlogPerProcess: config.AUTOSCALE_BACKLOG,
    idleMs: config.AUTOSCALE_IDLE_MS,
    intervalMs: config.AUTOSCALE_INTERVAL_MS,
    queues: config.WORKER_QUEUES,
    queueNames: () => pauses.running().map((route) => broker.names.taskQueues[route]),
    prefetch: config.WORKER_PREFETCH,
    heartbeatMs: config.WORKER_HEARTBEAT_MS,
    host: config.WORKER_HOST,
    port: config.WORKER_PORT,
    script,
    env,
  }
  return startSupervisor(settings, broker, metrics, log)
}

/** The most recent `capacity` ids added, oldest forgotten first: a bounded memory of revoked tasks. */
class RecentIds {
  private readonly ids = new Set<string>()

  constructor(private readonly capacity: number) {}

  add(id: string): void {
    this.ids.delete(id)
    this.ids.add(id)
    if (this.ids.size > this.capacity) this.ids.delete(this.ids.values().next().value ?? "")
  }

  has(id: string): boolean {
    return this.ids.has(id)
  }
}

export async function start(config: WorkerConfig) {
  const log = createLogger(SERVICE, config.LOG_LEVEL)
  const metrics = new ServiceMetrics(SERVICE)
  const broker = await Broker.connect({
    ...brokerOptions(SERVICE, config, log),
    onReconnected: () => metrics.brokerReconnects.inc(),
  })
  const policy = topologyOptions(config).retry
  const events = new EventPublisher(broker)
  const executionOptions = {
    testTasks: config.ENABLE_TEST_TASKS,
    sentenceDelayMs: config.TEST_SENTENCE_DELAY_MS,
    async report(from: number, to: number, owner: string | undefined, timeoutMs: number) {
      const query = { op: "polarity_report", from, to, ...(owner && { owner }) } as const
      const [reply] = await askStatusStore(broker, SERVICE, [query], timeoutMs)
      return checkStatusReply(PolarityReportReply, reply).report
    },
  }
  const workerName = config.WORKER_NAME ?? `${workerHost()}:${process.pid}`
  const { names } = broker
  const inHand = new InHand()
  const rateLimits = new RateLimits(config.RATE_LIMITS)
  const taskMetrics = new WorkerMetrics(metrics, () => inHand.size)
  const progress = new ProgressReports(broker, config.PROGRESS_INTERVAL_MS, log, () =>
    taskMetrics.progressReported(),
  )

  // Revokes are heard on the events exchange while the worker is connected; those made while it was away are
  // asked of the status store before it takes any task, and again after a reconnect (Celery's "mingle").
  // A revoke ends one run: a retry of the task is a new run, and runs. A terminate (a revoke of a running task)
  // also aborts the attempt, where this process runs it.
  const revoked = new RecentIds(config.REVOKED_IDS_KEPT)
  await broker.listen(
    names.eventsExchange,
    [eventRoutingKey("REVOKED")],
    (msg) => {
      try {
        for (const event of decodeMessage(msg, TaskEventBatch, "TaskEventBatch").events) {
          revoked.add(`${event.task_id}:${event.run}`)
          if (event.state === "REVOKED" && event.terminate) terminate(event.task_id, event.run, event.reason)
        }
      } catch (err) {
        log.warn("revoke notice not understood", { err })
      }
    },
    () => void learnRevokes(),
  )

  async function learnRevokes(): Promise<void> {
    try {
      const query = { op: "revoked", limit: config.REVOKED_IDS_KEPT } as const
      const [reply] = await askStatusStore(broker, SERVICE, [query], REVOKES_TIMEOUT_MS)
      const newestFirst = checkStatusReply(RevokedReply, reply).revoked
      for (const { task_id, run } of newestFirst.toReversed()) revoked.add(`${task_id}:${run}`)
      log.info("revokes learned from the status store", { tasks: newestFirst.length })
    } catch (err) {
      log.warn("revokes made while this worker was away are unknown: the status store did not tell them", {
        err: (err as Error).message,
      })
    }
  }
  await learnRevokes()

  function terminate(taskId: string, run: number, reason = "terminated"): void {
    if (!inHand.abort(taskId, run, new TaskTerminated(reason))) return
    log.info("running task terminated", { taskId, run })
    // Task code that does not heed its signal runs on. A process of a pool exits, and its supervisor replaces
    // it; what else it held goes back to the queue unacked, as after any crash. Alone, a worker has nobody to
    // replace it: it lets the attempt run, and drops its outcome.
    if (!config.WORKER_SUPERVISOR) return
    setTimeout(() => {
      if (!inHand.running(taskId, run)) return
      log.warn("a terminated task runs on: this process of the pool exits, to be replaced", {
        taskId,
        graceMs: config.POOL_TERMINATE_GRACE_MS,
      })
      process.exit(EXIT_TERMINATED)
    }, config.POOL_TERMINATE_GRACE_MS).unref()
  }

  /**
   * Whether the store holds this run REVOKED. A notice alone is not enough to drop a task: a forged or stray one
   * would leave the task PENDING for good, whereas running a task that was revoked after all changes nothing,
   * since REVOKED outranks what the run reports. So when the store does not answer, the task runs.
   */
  async function revokeConfirmed(task: Task): Promise<boolean> {
    try {
      const [reply] = await askStatusStore(
        broker,
        SERVICE,
        [{ op: "detail", task_id: task.task_id }],
        REVOKES_TIMEOUT_MS,
      )
      const { detail } = checkStatusReply(DetailReply, reply)
      return detail?.task.status === "REVOKED" && detail.run === task.run
    } catch (err) {
      log.warn("revoke not confirmed by the status store: the task runs", { taskId: task.task_id, err })
      return false
    }
  }

  /** One task as a work-queue message of its own (retries, quarantine and dead letters travel one by one). */
  const alone = (task: unknown) => JSON.stringify({ tasks: [task] } satisfies TaskBatch)

  /** The retry copy waits in the wait queue of its delay tier, then comes back to the work queue. */
  async function publishRetry(task: Task, retry: Extract<TaskEvent, { state: "RETRY" }>): Promise<void> {
    const tierMs = retryDelayMs(policy, task.attempt - task.run + 1)
    const routingKey = retryRoutingKey(tierMs, routeTask(task.kind))
    await broker.publish(names.retryExchange, routingKey, alone({ ...task, attempt: task.attempt + 1 }), {
      type: MessageType.task,
      messageId: task.task_id,
      expiration: String(Math.max(0, retry.retry_at - retry.at)),
      ...(task.priority !== undefined && { priority: task.priority }),
    })
  }

  /** Out of attempts, or a crasher: FAILURE, and the task goes to the failed dead-letter queue for a replay. */
  async function fail(task: Task, error: string, queue: string, msg: AMQPMessage): Promise<void> {
    await broker.publishDeadLetter(alone(task), queue, error, "failed", msg)
  }

  /**
   * A redelivered message was in hand when a consumer died or lost its channel. Its tasks go to the quarantine
   * queue one by one, consumed one at a time, so a task that crashes its worker every time is caught alone and
   * dead-lettered after REDELIVERY_LIMIT deliveries instead of taking innocent tasks with it or looping forever.
   */
  async function quarantine(msg: AMQPMessage, task: Task, queue: string): Promise<void> {
    // The header is ours, but anyone who can publish to the quarantine could set it: a count, or none.
    const before = Number(msg.properties.headers?.["x-redeliveries"] ?? 0)
    const redeliveries = (Number.isSafeInteger(before) && before > 0 ? before : 0) + 1
    log.warn("task redelivered", { taskId: task.task_id, queue, redeliveries })
    if (redeliveries >= config.REDELIVERY_LIMIT) {
      const error = `redelivered ${redeliveries} times without finishing: it crashes or stalls its worker`
      const base = { task_id: task.task_id, attempt: task.attempt, run: task.run, at: Date.now() }
      const failure = { ...base, state: "FAILURE", started_at: null, error } as const
      await events.emit(failure)
      taskMetrics.taskEnded(task.kind, failure)
      return fail(task, error, queue, msg)
    }
    const headers = { ...msg.properties.headers, "x-redeliveries": redeliveries }
    await broker.publish(names.tasksExchange, quarantineRoutingKey(routeTask(task.kind)), alone(task), {
      type: MessageType.task,
      headers,
      ...(task.priority !== undefined && { priority: task.priority }),
    })
  }

  /** A task taken after its deadline ends EXPIRED without running: final, not retried, not dead-lettered. */
  async function expire(task: Task, expiresAt: number): Promise<void> {
    const base = { task_id: task.task_id, attempt: task.attempt - 1, run: task.run, at: Date.now() }
    const expired = { ...base, state: "EXPIRED", expires_at: expiresAt } as const
    await events.emit(expired)
    taskMetrics.taskEnded(task.kind, expired)
  }

  /** Whether the run is revoked, so that the copy in hand is dropped: the store holds REVOKED, the final state. */
  async function skipRevoked(task: Task): Promise<boolean> {
    if (!revoked.has(`${task.task_id}:${task.run}`) || !(await revokeConfirmed(task))) return false
    log.info("revoked task skipped", { taskId: task.task_id, attempt: task.attempt })
    taskMetrics.taskSkipped(task.kind)
    return true
  }

  /** Resolves once everything the task's outcome needs (events, retry copy, dead letter) is confirmed. */
  async function run(msg: AMQPMessage, held: Held): Promise<void> {
    const { task, queue } = held
    if (await skipRevoked(task)) return
    const waitMs = rateLimits.reserve(task.kind, Date.now())
    if (waitMs > 0) {
      // Unstarted and in hand meanwhile, so a revoke made during the wait still applies.
      taskMetrics.rateLimited(task.kind, waitMs)
      await sleep(waitMs)
      if (await skipRevoked(task)) return
    }
    const startedAt = Date.now()
    if (task.expires_at !== undefined && startedAt >= task.expires_at) return expire(task, task.expires_at)
    if (config.TRACK_STARTED) {
      const started = { task_id: task.task_id, attempt: task.attempt, run: task.run, at: startedAt }
      // Not awaited: the outcome goes out after it on the same channel, and its confirm is what gates the ack.
      events.emit({ ...started, state: "STARTED", worker: workerName }).catch(() => {})
    }
    taskMetrics.taskStarted(task.kind)
    if (task.eta !== undefined && task.attempt === task.run) {
      taskMetrics.delayedTaskStarted(task.kind, startedAt - task.eta)
    }
    const reports = progress.forAttempt(task, startedAt)
    const signal = inHand.started(held, startedAt)
    const context = new AttemptContext(task.time_limit_ms, startedAt, signal, reports.report)
    const outcome = await outcomeOf(task, startedAt, () => execute(task, executionOptions, context), policy)
    inHand.attemptEnded(held)
    reports.close()
    if (signal.reason instanceof TaskTerminated) {
      // The store holds the run REVOKED already: no retry, no dead letter, and the outcome would change nothing.
      taskMetrics.taskTerminated(task.kind)
      return
    }
    if (outcome.state === "RETRY") await publishRetry(task, outcome)
    await events.emit(outcome)
    taskMetrics.taskEnded(task.kind, outcome)
    if (outcome.state === "FAILURE") await fail(task, outcome.error, queue, msg)
  }

  /**
   * Delayed tasks may have waited for days, longer than the revokes this worker remembers: the store is asked
   * whether they were revoked, all of a message's in one query. Without an answer the worker goes by what it heard.
   */
  async function learnRevokesOfDelayed(tasks: unknown[]): Promise<void> {
    const delayed = tasks.filter(
      (task): task is Task => (task as Partial<Task>)?.eta !== undefined && v.is(Task, task),
    )
    if (delayed.length === 0) return
    try {
      const query = { op: "lookup", task_ids: delayed.map((task) => task.task_id) } as const
      const [reply] = await askStatusStore(broker, SERVICE, [query], REVOKES_TIMEOUT_MS)
      const records = checkStatusReply(TaskLookup, reply).tasks
      delayed.forEach((task, i) => {
        if (records[i]?.status === "REVOKED") revoked.add(`${task.task_id}:${task.run}`)
      })
    } catch (err) {
      log.warn("revokes of delayed tasks unknown: the status store did not tell them", {
        tasks: delayed.length,
        err: (err as Error).message,
      })
    }
  }

  /** Each task of the message on its own, held until the message is settled; a malformed one is dead-lettered. */
  async function handleTask(msg: AMQPMessage, raw: unknown, queue: string, held: Held[]): Promise<void> {
    let task: Task
    try {
      task = checkTask(raw)
    } catch (err) {
      if (!(err instanceof PoisonMessage)) throw err
      return broker.publishDeadLetter(alone(raw), queue, err.message, "poison", msg)
    }
    const holding = inHand.hold(task, queue)
    held.push(holding)
    return msg.redelivered ? quarantine(msg, task, queue) : run(msg, holding)
  }

  /** The message is acked once every one of its tasks has its outcome confirmed. */
  const handleMessage = (queue: string) => async (msg: AMQPMessage) => {
    let tasks: unknown[]
    try {
      tasks = decodeMessage(msg, TaskBatch, "TaskBatch").tasks
    } catch (err) {
      if (!(err instanceof PoisonMessage)) throw err
      return broker.deadLetter(msg, queue, err.message)
    }
    inHand.messageReceived()
    const held: Held[] = []
    try {
      await learnRevokesOfDelayed(tasks)
      await Promise.all(tasks.map((task) => handleTask(msg, task, queue, held)))
      const firstDelivery = !msg.redelivered && !msg.properties.headers?.["x-redeliveries"]
      if (config.ENABLE_TEST_TASKS && firstDelivery && tasks.some(crashesBeforeAck)) crash()
      await msg.ack()
    } catch (err) {
      // What an outcome needed was not confirmed, so the tasks must run again: hand the message back.
      log.error("task outcome not confirmed, requeueing", { tasks: tasks.length, err })
      await msg.nack(true).catch(() => {})
    } finally {
      for (const holding of held) inHand.release(holding)
      inHand.messageSettled()
    }
  }

  // Each route's quarantine beside its work queue: a redelivered task goes back to its own route's workers.
  // --- completion webhooks: one attempt per delivery message; a failed one waits in the ladder for the next
  const webhookSettings = {
    secret: config.WEBHOOK_SECRET ?? "",
    allowed: new AllowedHosts(config.WEBHOOK_ALLOW_HOSTS),
    timeoutMs: config.WEBHOOK_TIMEOUT_MS,
  }
  if (!config.WEBHOOK_SECRET && config.WEBHOOK_PREFETCH > 0) {
    log.warn("completion webhooks off: WEBHOOK_SECRET is not set, deliveries are given up")
  }

  /** The wait before attempt `attempt + 1`: exponential from WEBHOOK_RETRY_BASE_MS, an hour at most, equal jitter. */
  const webhookBackoffMs = (attempt: number) => {
    const full = Math.min(config.WEBHOOK_RETRY_BASE_MS * 2 ** (attempt - 1), 3_600_000)
    return Math.round(full / 2 + (Math.random() * full) / 2)
  }

  async function handleWebhook(msg: AMQPMessage): Promise<void> {
    let delivery: WebhookDelivery
    try {
      delivery = decodeMessage(msg, WebhookDelivery, "WebhookDelivery")
    } catch (err) {
      if (!(err instanceof PoisonMessage)) throw err
      return broker.deadLetter(msg, names.webhookQueue, err.message)
    }
    try {
      const result = config.WEBHOOK_SECRET
        ? await deliver(delivery, webhookSettings)
        : { outcome: "refused" as const, status: null, error: "WEBHOOK_SECRET is not set on the worker" }
      const at = Date.now()
      const again = result.outcome === "failed" && delivery.attempt < config.WEBHOOK_MAX_ATTEMPTS
      const waitMs = again ? webhookBackoffMs(delivery.attempt) : 0
      if (again) {
        const next = JSON.stringify({ ...delivery, attempt: delivery.attempt + 1 } satisfies WebhookDelivery)
        await broker.publish(
          delayEntryExchange(names),
          delayRoutingKey(delayTicks(waitMs), "webhook"),
          next,
          {
            type: MessageType.webhookDelivery,
            messageId: delivery.delivery_id,
          },
        )
      }
      const outcome = result.outcome === "delivered" ? "delivered" : again ? "failed" : "gave_up"
      if (outcome === "gave_up") {
        log.warn("webhook given up", {
          taskId: delivery.task_id,
          attempt: delivery.attempt,
          err: result.error,
        })
      }
      const attempt = {
        delivery_id: delivery.delivery_id,
        task_id: delivery.task_id,
        attempt: delivery.attempt,
        at,
        outcome,
        status_code: result.status,
        error: result.error?.slice(0, 2000) ?? null,
        next_attempt_at: again ? at + waitMs : null,
      } satisfies WebhookAttempt
      await broker.publish(names.eventsExchange, WEBHOOK_ATTEMPT_KEY, JSON.stringify(attempt), {
        type: MessageType.webhookAttempt,
      })
      await msg.ack()
    } catch (err) {
      log.error("webhook attempt not recorded, requeueing", { taskId: delivery.task_id, err })
      await msg.nack(true).catch(() => {})
    }
  }

  // A paused queue is not consumed (polarity-worker/queue-pauses.ts): the paused set is asked of the status store
  // before any task is taken, again after a reconnect, and followed on the events exchange meanwhile.
  const pauses = new QueuePauses(config.WORKER_QUEUES, log, (route) =>
    Promise.all([
      broker.consume(names.taskQueues[route], config.WORKER_PREFETCH, handleMessage(names.taskQueues[route])),
      broker.consume(names.quarantineQueues[route], 1, handleMessage(names.quarantineQueues[route])),
    ]),
  )
  await followQueuePauses(broker, pauses, REVOKES_TIMEOUT_MS, log)
  const consumers =
    config.WEBHOOK_PREFETCH > 0
      ? [await broker.consume(names.webhookQueue, config.WEBHOOK_PREFETCH, handleWebhook)]
      : []

  const heartbeats = new Heartbeats(broker, {
    worker: workerName,
    intervalMs: config.WORKER_HEARTBEAT_MS,
    describe: () => ({
      queues: config.WORKER_QUEUES,
      ...(config.WORKER_SUPERVISOR && { supervisor: config.WORKER_SUPERVISOR }),
      prefetch: config.WORKER_PREFETCH,
      in_hand: inHand.size,
      ...taskMetrics.totals,
    }),
    log,
  })
  heartbeats.start()

  await serveControl(
    broker,
    workerName,
    (command) => {
      switch (command.command) {
        case "ping":
          return { reply: "pong", heartbeat: heartbeats.now() }
        case "active":
          return { reply: "active", worker: workerName, tasks: inHand.list(Date.now()) }
        case "shutdown":
          log.info("shutdown asked by remote control")
          // After this reply has gone out.
          setImmediate(() => void stop())
          return { reply: "shutting_down", worker: workerName }
        case "pool_grow":
        case "pool_shrink":
          return {
            reply: "refused",
            worker: workerName,
            error: `worker ${workerName} is not the supervisor of an autoscaled pool (WORKER_AUTOSCALE)`,
          }
      }
    },
    log,
  )

  const server = serveHealthAndMetrics({
    port: config.WORKER_PORT,
    host: config.WORKER_HOST,
    log,
    metrics,
    brokerConnected: () => broker.connected,
  })
  log.info("started", {
    url: server.url,
    prefetch: config.WORKER_PREFETCH,
    queues: config.WORKER_QUEUES,
    worker: workerName,
  })

  // A process of a pool whose supervisor is gone (killed, so it could not stop its processes) stops too.
  const supervisorPid = process.ppid
  const orphanCheck = config.WORKER_SUPERVISOR
    ? setInterval(() => {
        if (process.ppid === supervisorPid) return
        log.warn("the pool's supervisor is gone: stopping")
        void stop()
      }, 1000)
    : undefined
  orphanCheck?.unref()

  const stopped = Promise.withResolvers<void>()
  async function shutDown(): Promise<void> {
    clearInterval(orphanCheck)
    await Promise.all([pauses.stop(), ...consumers.map((consumer) => consumer.stopDeliveries())])
    await inHand.drain()
    await heartbeats.stop()
    await server.stop()
    await broker.close()
    log.info("stopped")
    stopped.resolve()
  }
  // Once, whether a signal, the caller or remote control asks first.
  let stopping: Promise<void> | undefined
  function stop(): Promise<void> {
    stopping ??= shutDown()
    return stopping
  }
  /** `stopped` resolves once the worker has stopped, whoever asked. */
  return { url: server.url, worker: workerName, stop, stopped: stopped.promise }
}

if (import.meta.main) {
  runAsProgram(SERVICE, () => {
    const config = loadWorkerConfig()
    const { WORKER_AUTOSCALE: autoscale } = config
    // A process of a pool gets the pool's settings too, and is a worker all the same.
    if (!autoscale || config.WORKER_SUPERVISOR) return start(config)
    return startPool({ ...config, WORKER_AUTOSCALE: autoscale }, fileURLToPath(import.meta.url))
  })
}

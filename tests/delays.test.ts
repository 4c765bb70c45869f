import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { GroupRecord, TaskDetail, TaskPage, TaskRecord } from "../shared/contracts.ts"
import { DELAY_LEVELS, DELAY_TICK_MS, delayRoutingKey, delayTicks } from "../shared/topology.ts"
import {
  expectProblem,
  isoTime,
  postBody,
  rawChannel,
  type Stack,
  startStack,
  taskBody,
  waitForFinal,
  watchEvents,
} from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("delays", { ENABLE_TEST_TASKS: "true", REVOKED_IDS_KEPT: "1" })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const getTask = (taskId: string) => fetch(stack.url(`/polarities/tasks/${taskId}`)).then(taskBody)

async function submitDelayed(
  body: Record<string, unknown>,
): Promise<{ taskId: string; submittedAt: number }> {
  const submittedAt = Date.now()
  const res = await postBody(stack, body)
  expect(res.status).toBe(202)
  expect(await res.json()).toEqual({ task_id: expect.any(String), status: "SCHEDULED" })
  return { taskId: res.headers.get("location")?.split("/").at(-1) ?? "", submittedAt }
}

/** How many messages wait in a queue now (a passive declare). */
async function depth(queue: string): Promise<number> {
  await using amqp = await rawChannel()
  return (await amqp.channel.queueDeclare(queue, { passive: true })).messageCount
}

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await Bun.sleep(20)) {
    const value = await check()
    if (value !== undefined) return value
  }
  throw new Error(`${what} did not happen within ${timeoutMs} ms`)
}

/** How late the task started after its eta, in milliseconds; a delayed task never starts before it. */
function latenessOf(record: TaskRecord): number {
  const lateness = Date.parse(record.started_at ?? "") - Date.parse(record.eta ?? "")
  expect(lateness).toBeGreaterThanOrEqual(0)
  return lateness
}

describe("the delay ladder's routing keys", () => {
  test("a delay is rounded up to whole ticks, and its bits pick the wait queues, longest first", () => {
    expect(delayTicks(1)).toBe(1)
    expect(delayTicks(DELAY_TICK_MS)).toBe(1)
    expect(delayTicks(DELAY_TICK_MS + 1)).toBe(2)
    expect(delayTicks(3000)).toBe(30)
    const key = delayRoutingKey(30, "polarity").split(".")
    expect(key).toHaveLength(DELAY_LEVELS + 1)
    // 30 = 16 + 8 + 4 + 2: levels 4, 3, 2 and 1.
    expect(key.slice(DELAY_LEVELS - 5)).toEqual(["1", "1", "1", "1", "0", "polarity"])
    expect(key.slice(0, DELAY_LEVELS - 5).every((bit) => bit === "0")).toBe(true)
  })
})

describe("countdown and eta: the task waits in the broker, SCHEDULED, then runs", () => {
  test("a review with a 3 s countdown shows SCHEDULED with its eta, then runs once it is due", async () => {
    const { taskId, submittedAt } = await submitDelayed({ review: "What a lovely day", countdown: 3 })
    const scheduled = await getTask(taskId)
    expect([scheduled.status, scheduled.started_at]).toEqual(["SCHEDULED", null])
    expect(scheduled.eta).toEqual(isoTime)
    const eta = Date.parse(scheduled.eta ?? "")
    expect(eta - submittedAt).toBeGreaterThanOrEqual(3000)
    expect(eta - submittedAt).toBeLessThan(3000 + 1000)

    const done = await waitForFinal(stack, taskId, 15_000)
    expect([done.status, done.eta]).toEqual(["SUCCESS", scheduled.eta])
    const lateness = latenessOf(done)
    console.log(`a 3 s countdown started ${lateness} ms after its eta`)
    expect(lateness).toBeLessThan(5000)
  })

  test("the delay survives a worker restart: the task runs on the next worker, not before its eta", async () => {
    let taskId = ""
    await stack.restartWorker(async () => {
      ;({ taskId } = await submitDelayed({ review: "Terrible and sad", countdown: 3 }))
      // No worker: once due, the task leaves the ladder for the work queue and waits there.
      await until("the task reaching the work queue", async () =>
        (await depth(stack.names.taskQueues.polarity)) === 1 ? true : undefined,
      )
      expect((await getTask(taskId)).status).toBe("PENDING")
    })
    const done = await waitForFinal(stack, taskId, 15_000)
    expect(done.status).toBe("SUCCESS")
    console.log(`a 3 s countdown across a worker restart started ${latenessOf(done)} ms after its eta`)
  })

  test("an eta runs at that time; the timeline shows SCHEDULED, then PENDING at the eta", async () => {
    const eta = new Date(Date.now() + 1500).toISOString()
    const { taskId } = await submitDelayed({ review: "Fine", eta })
    expect((await getTask(taskId)).eta).toBe(eta)
    const done = await waitForFinal(stack, taskId)
    expect(done.eta).toBe(eta)
    latenessOf(done)
    const detail = (await fetch(stack.url(`/dashboard/api/tasks/${taskId}`)).then((r) =>
      r.json(),
    )) as TaskDetail
    // STARTED is left out when the outcome goes out in the same turn.
    const states = detail.timeline.filter((entry) => entry.state !== "STARTED")
    expect(states.map((entry) => [entry.state, entry.attempt])).toEqual([
      ["SCHEDULED", 0],
      ["PENDING", 0],
      ["SUCCESS", 1],
    ])
    expect(detail.timeline[1]?.at).toBe(eta)
  })

  test("expires_in counts from the eta, not from the submission", async () => {
    const { taskId } = await submitDelayed({ review: "Good", countdown: 1.5, expires_in: 1 })
    expect((await waitForFinal(stack, taskId)).status).toBe("SUCCESS")
  })

  test("a delayed batch is a SCHEDULED group, then runs", async () => {
    const res = await fetch(stack.url("/polarities/batch"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ reviews: ["good", "bad"], countdown: 1 }),
    })
    expect(res.status).toBe(202)
    const accepted = (await res.json()) as { group_id: string; status: string }
    expect(accepted.status).toBe("SCHEDULED")
    const group = (await fetch(stack.url(`/polarities/groups/${accepted.group_id}`)).then((r) =>
      r.json(),
    )) as GroupRecord
    expect(group.counts.SCHEDULED).toBe(2)
    const done = (await fetch(stack.url(`/polarities/groups/${accepted.group_id}?wait=15`)).then((r) =>
      r.json(),
    )) as GroupRecord
    expect(done.status).toBe("SUCCESS")
  })

  test("a document can be delayed too, and is listed as SCHEDULED until due", async () => {
    const res = await fetch(stack.url("/polarities/documents"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ document: "I love it. It broke.", countdown: 60 }),
    })
    expect(res.status).toBe(202)
    const { task_id: taskId } = (await res.json()) as { task_id: string }
    const page = (await fetch(stack.url("/polarities/tasks?status=SCHEDULED")).then((r) =>
      r.json(),
    )) as TaskPage
    expect(page.tasks.map((task) => task.task_id)).toContain(taskId)
    expect((await fetch(stack.url(`/polarities/tasks/${taskId}`), { method: "DELETE" })).status).toBe(200)
  })
})

describe("cancelling a scheduled task", () => {
  const skipped = async () => {
    const text = await fetch(`${stack.worker.url}/metrics`).then((r) => r.text())
    return Number(/^polarity_tasks_revoked_skipped_total\{[^}]*\} (\d+)/m.exec(text)?.[1] ?? 0)
  }

  test("DELETE revokes it at once, and no worker runs it when it comes due, though it forgot the revoke", async () => {
    await using watch = await watchEvents(stack)
    const before = await skipped()
    const { taskId } = await submitDelayed({ review: "Never to be scored", countdown: 1 })
    const res = await fetch(stack.url(`/polarities/tasks/${taskId}`), { method: "DELETE" })
    expect(res.status).toBe(200)
    const revoked = await taskBody(res)
    expect([revoked.status, revoked.error]).toEqual(["REVOKED", "revoked before it started"])
    // The worker keeps one revoke (REVOKED_IDS_KEPT=1): another one pushes this one out of its memory, so only
    // the status store can tell it, when the task comes out of the ladder.
    const { taskId: other } = await submitDelayed({ review: "Neither", countdown: 600 })
    expect((await fetch(stack.url(`/polarities/tasks/${other}`), { method: "DELETE" })).status).toBe(200)

    await until("the worker skipping the task", async () => ((await skipped()) > before ? true : undefined))
    expect(watch.events.filter((e) => e.task_id === taskId).map((e) => e.state)).toEqual([
      "PENDING",
      "REVOKED",
    ])
    expect((await getTask(taskId)).status).toBe("REVOKED")
  })
})

describe("bad delays are refused with 422 problem+json", () => {
  const now = Date.now()
  const cases: [string, Record<string, unknown>, string | RegExp][] = [
    [
      "both countdown and eta",
      { countdown: 5, eta: new Date(now + 60_000).toISOString() },
      "give countdown or eta, not both",
    ],
    [
      "an eta in the past",
      { eta: "2020-01-01T00:00:00Z" },
      /^eta: 2020-01-01T00:00:00Z is in the past \(it is .+ now\)$/,
    ],
    [
      "an eta beyond 30 days",
      { eta: new Date(now + 31 * 86_400_000).toISOString() },
      /^eta: .+ is more than 30 days ahead$/,
    ],
    [
      "an eta without a time zone",
      { eta: "2030-01-01T09:00:00" },
      'eta: eta must be an RFC 3339 time with a time zone, such as "2030-01-01T09:00:00Z"',
    ],
    [
      "an eta that is not a time",
      { eta: "tomorrow" },
      'eta: eta must be an RFC 3339 time with a time zone, such as "2030-01-01T09:00:00Z"',
    ],
    [
      "a countdown beyond 30 days",
      { countdown: 2_592_001 },
      "countdown: countdown must be a number of seconds above 0 and at most 2592000 (30 days)",
    ],
    [
      "a countdown of 0",
      { countdown: 0 },
      "countdown: countdown must be a number of seconds above 0 and at most 2592000 (30 days)",
    ],
    [
      "a countdown that is a string",
      { countdown: "5" },
      "countdown: countdown must be a number of seconds above 0 and at most 2592000 (30 days)",
    ],
  ]
  for (const [what, delay, detail] of cases) {
    test(`${what}`, async () => {
      await expectProblem(await postBody(stack, { review: "ok", ...delay }), 422, detail)
    })
  }
})

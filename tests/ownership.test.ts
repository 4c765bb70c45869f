import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { keyLine, mintKey } from "../services/gateway/api-keys.ts"
import { inFlightDeltas, mergeEvent, type TaskRow } from "../services/status-store/task-state.ts"
import type { TaskEvent } from "../shared/contracts.ts"
import { openTestDatabase, STORE_BACKENDS } from "./store-backends.ts"
import { eventually, expectProblem, type Stack, startStack } from "./support.ts"

const alice = mintKey()
const bob = mintKey()
const ops = mintKey()

let stack: Stack
beforeAll(async () => {
  stack = await startStack("ownership", {
    API_KEYS: [keyLine("alice", false, alice), keyLine("bob", false, bob), keyLine("ops", true, ops)].join(
      ";",
    ),
    MAX_TASKS_IN_FLIGHT_PER_KEY: "3",
  })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const as = (key: string, headers: Record<string, string> = {}) => ({
  authorization: `Bearer ${key}`,
  "content-type": "application/json",
  ...headers,
})
const call = (key: string, method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
  fetch(stack.url(path), {
    method,
    headers: as(key, headers),
    ...(body !== undefined && { body: JSON.stringify(body) }),
  })
const json = async <T>(res: Response): Promise<T> => {
  expect(res.status).toBeLessThan(300)
  return (await res.json()) as T
}

describe("a task and a group belong to the key that submitted them", () => {
  let taskId = ""
  let groupId = ""
  let groupTasks: string[] = []
  beforeAll(async () => {
    taskId = (
      await json<{ task_id: string }>(await call(alice, "POST", "/polarities?wait=10", { review: "Mine." }))
    ).task_id
    const group = await json<{ group_id: string; results: { task_id: string }[] }>(
      await call(alice, "POST", "/polarities/batch?wait=10", { reviews: ["One.", "Two."] }),
    )
    groupId = group.group_id
    groupTasks = group.results.map((task) => task.task_id)
  })

  test("another key gets 404 for them everywhere, as for a task never submitted", async () => {
    const notFound = `no task with id ${taskId}`
    await expectProblem(await call(bob, "GET", `/polarities/tasks/${taskId}`), 404, notFound)
    await expectProblem(await call(bob, "GET", `/polarities/task/${taskId}`), 404, notFound)
    await expectProblem(await call(bob, "GET", `/polarities/tasks/${taskId}/events`), 404, notFound)
    await expectProblem(await call(bob, "DELETE", `/polarities/tasks/${taskId}`), 404, notFound)
    await expectProblem(await call(bob, "POST", `/polarities/tasks/${taskId}/retry`), 404, notFound)
    await expectProblem(
      await call(bob, "GET", `/polarities/groups/${groupId}`),
      404,
      `no group with id ${groupId}`,
    )
    const lookup = await call(bob, "POST", "/polarities/tasks/lookup", { task_ids: [taskId, ...groupTasks] })
    expect(await json(lookup)).toEqual({ tasks: [null, null, null] })
    expect(await json(await call(bob, "GET", "/polarities/tasks?limit=100"))).toEqual({
      tasks: [],
      next_cursor: null,
    })
  })

  test("the owner sees them, in listings too", async () => {
    expect(await json(await call(alice, "GET", `/polarities/tasks/${taskId}`))).toMatchObject({
      task_id: taskId,
      status: "SUCCESS",
    })
    const listed = await json<{ tasks: { task_id: string }[] }>(
      await call(alice, "GET", "/polarities/tasks?limit=100"),
    )
    expect(listed.tasks.map((task) => task.task_id).sort()).toEqual([taskId, ...groupTasks].sort())
    const bySuccess = await json<{ tasks: unknown[] }>(
      await call(alice, "GET", "/polarities/tasks?status=SUCCESS&limit=100"),
    )
    expect(bySuccess.tasks).toHaveLength(3)
    expect(await json(await call(alice, "GET", `/polarities/groups/${groupId}`))).toMatchObject({
      status: "SUCCESS",
      task_ids: groupTasks,
    })
  })

  test("an admin key sees every key's", async () => {
    expect(await json(await call(ops, "GET", `/polarities/tasks/${taskId}`))).toMatchObject({
      task_id: taskId,
    })
    const lookup = await call(ops, "POST", "/polarities/tasks/lookup", { task_ids: [taskId] })
    expect(await json(lookup)).toMatchObject({ tasks: [{ task_id: taskId }] })
    expect(await json(await call(ops, "GET", `/polarities/groups/${groupId}`))).toMatchObject({
      group_id: groupId,
    })
    const listed = await json<{ tasks: { task_id: string }[] }>(
      await call(ops, "GET", "/polarities/tasks?limit=100"),
    )
    expect(listed.tasks.map((task) => task.task_id)).toEqual(expect.arrayContaining([taskId, ...groupTasks]))
    // The dashboard is an admin's view: every task, whoever submitted it.
    const detail = await call(ops, "GET", `/dashboard/api/tasks/${taskId}`)
    expect(await json(detail)).toMatchObject({ task: { task_id: taskId } })
  })

  test("Idempotency-Keys are each key's own", async () => {
    const key = { "idempotency-key": `shared-${crypto.randomUUID()}` }
    const first = await json<{ task_id: string }>(
      await call(alice, "POST", "/polarities", { review: "A" }, key),
    )
    const other = await json<{ task_id: string }>(
      await call(bob, "POST", "/polarities", { review: "B" }, key),
    )
    expect(other.task_id).not.toBe(first.task_id)
    const again = await call(alice, "POST", "/polarities", { review: "A" }, key)
    expect(again.headers.get("idempotent-replayed")).toBe("true")
    expect((await json<{ task_id: string }>(again)).task_id).toBe(first.task_id)
  })
})

describe("tasks in flight", () => {
  test("a key may have MAX_TASKS_IN_FLIGHT_PER_KEY tasks not final at once; past it a 429", async () => {
    await stack.restartWorker(async () => {
      for (let i = 0; i < 3; i++) {
        expect((await call(bob, "POST", "/polarities", { review: `queued ${i}` })).status).toBe(202)
      }
      await expectProblem(
        await call(bob, "POST", "/polarities", { review: "one more" }),
        429,
        'the key "bob" has 3 tasks in flight and asks for 1 more; at most 3 may be submitted and not final at once (MAX_TASKS_IN_FLIGHT_PER_KEY)',
      )
      await expectProblem(
        await call(bob, "POST", "/polarities/batch", { reviews: ["a", "b"] }),
        429,
        /asks for 2 more/,
      )
      // Another key's quota is its own.
      expect((await call(ops, "POST", "/polarities", { review: "ops" })).status).toBe(202)
    })
    // Once its tasks end, the key may submit again.
    await eventually(async () => {
      expect((await call(bob, "POST", "/polarities", { review: "later" })).status).toBe(202)
    }, 15_000)
  })
})

describe.each(STORE_BACKENDS)("the owner in the store (%s)", (backend) => {
  const TASK = "0199a4b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
  const pending: TaskEvent = {
    task_id: TASK,
    state: "PENDING",
    attempt: 0,
    run: 1,
    at: 1000,
    kind: "polarity:review",
    input: { review: "x" },
    owner: "alice",
  }
  const started: TaskEvent = { task_id: TASK, state: "STARTED", attempt: 1, run: 1, at: 1010, worker: "w" }
  const success: TaskEvent = {
    task_id: TASK,
    state: "SUCCESS",
    attempt: 1,
    run: 1,
    at: 1020,
    started_at: 1010,
    result: { score: 1, comparative: 1, polarity: "positive", positive: [], negative: [], language: "en" },
  }

  test("a task counts in flight for its owner from PENDING to its final state, in any order", async () => {
    for (const order of [
      [pending, started, success],
      [success, pending, started],
      [started, success, pending],
    ]) {
      await using database = await openTestDatabase(backend)
      const counts: number[] = []
      for (const event of order) {
        await database.store.applyEvents([event])
        counts.push(await database.store.inFlight("alice"))
      }
      expect(counts.at(-1)).toBe(0)
      expect(counts.every((count) => count === 0 || count === 1)).toBe(true)
      expect((await database.store.find(TASK))?.owner).toBe("alice")
    }
  })

  test("a replay's PENDING, which names no owner, keeps the first one", () => {
    const replay: TaskEvent = { ...pending, run: 2, attempt: 1, owner: undefined }
    const row = mergeEvent(mergeEvent(mergeEvent(null, pending), success), replay)
    expect(row).toMatchObject({ owner: "alice", status: "PENDING" })
    const forged: TaskEvent = { ...pending, run: 3, attempt: 2, owner: "mallory" }
    expect(mergeEvent(row, forged).owner).toBe("alice")
  })

  test("in-flight deltas add up per owner", () => {
    const before = mergeEvent(null, pending)
    const after = mergeEvent(before, success)
    const other: TaskRow = { ...before, task_id: "other", owner: "bob" }
    expect(
      inFlightDeltas([
        { event: pending, before: null, after: before },
        { event: success, before, after },
        { event: pending, before: null, after: other },
      ]),
    ).toEqual(new Map([["bob", 1]]))
  })
})

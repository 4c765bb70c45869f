import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { keyLine, mintKey } from "../services/gateway/api-keys.ts"
import { InFlightQuota, RateLimiter } from "../services/gateway/limits.ts"
import { expectProblem, type Stack, startStack } from "./support.ts"

const alice = mintKey()
const bob = mintKey()
const API_KEYS = [keyLine("alice", false, alice), keyLine("bob", false, bob)].join(";")
const MAX_LOOKUP_ANSWER_BYTES = 64 * 1024

let stack: Stack

beforeAll(async () => {
  stack = await startStack("limits", {
    API_KEYS,
    MAX_STREAMS_PER_CALLER: "2",
    MAX_WAITS_PER_CALLER: "2",
    MAX_LOOKUP_ANSWER_BYTES: String(MAX_LOOKUP_ANSWER_BYTES),
    RATE_LIMIT_PER_SECOND: "1000",
    RATE_LIMIT_BURST: "1000",
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

describe("request rate", () => {
  test("a bucket lets `burst` requests through at once, then one per 1/rate seconds", () => {
    const limiter = new RateLimiter(2, 3)
    try {
      const taken = [0, 0, 0, 0].map(() => limiter.take("k", 1000))
      expect(taken.map((t) => t.allowed)).toEqual([true, true, true, false])
      expect(taken[2]).toEqual({ allowed: true, remaining: 0, retryAfter: 1, reset: 2 })
      expect(taken[3]).toEqual({ allowed: false, remaining: 0, retryAfter: 1, reset: 2 })
      expect(limiter.take("k", 1499).allowed).toBe(false)
      expect(limiter.take("k", 1500).allowed).toBe(true)
      expect(limiter.take("other", 1500)).toEqual({ allowed: true, remaining: 2, retryAfter: 1, reset: 1 })
    } finally {
      limiter.close()
    }
  })

  test("past its burst a key gets 429 with Retry-After and RateLimit headers; another key is not affected", async () => {
    const url = await stack.gatewayWith({ RATE_LIMIT_PER_SECOND: "1", RATE_LIMIT_BURST: "3" })
    const list = (key: string) => fetch(url("/polarities/tasks?limit=1"), { headers: as(key) })
    const answers = await Promise.all([list(alice), list(alice), list(alice), list(alice), list(alice)])
    const ok = answers.filter((res) => res.status === 200)
    const refused = answers.filter((res) => res.status === 429)
    // Three at once; a fourth only if a second passed while they were answered (a busy machine).
    expect(ok.length).toBeGreaterThanOrEqual(3)
    expect(refused.length).toBeGreaterThanOrEqual(1)
    expect(ok.length + refused.length).toBe(5)
    expect(ok[0]?.headers.get("ratelimit-limit")).toBe("3")
    expect(ok[0]?.headers.get("ratelimit-policy")).toBe("3;w=3")
    const res = refused[0] as Response
    expect(res.headers.get("retry-after")).toBe("1")
    expect(res.headers.get("ratelimit-remaining")).toBe("0")
    await expectProblem(res, 429, "too many requests: 1 a second, 3 at once; retry after 1 s")
    expect((await list(bob)).status).toBe(200)
  })

  test("an open API is not limited unless LIMIT_BY_ADDRESS says so", async () => {
    const open = await stack.gatewayWith({ API_KEYS: "", RATE_LIMIT_PER_SECOND: "1", RATE_LIMIT_BURST: "2" })
    const answers = await Promise.all(
      Array.from({ length: 6 }, () => fetch(open("/polarities/tasks?limit=1"))),
    )
    expect(answers.map((res) => res.status)).toEqual([200, 200, 200, 200, 200, 200])
    expect(answers[0]?.headers.get("ratelimit-limit")).toBeNull()
    const byAddress = await stack.gatewayWith({
      API_KEYS: "",
      RATE_LIMIT_PER_SECOND: "1",
      RATE_LIMIT_BURST: "2",
      LIMIT_BY_ADDRESS: "true",
    })
    const limited = await Promise.all(
      Array.from({ length: 6 }, () => fetch(byAddress("/polarities/tasks?limit=1"))),
    )
    expect(limited.filter((res) => res.status === 429).length).toBeGreaterThanOrEqual(1)
    expect(limited[0]?.headers.get("ratelimit-limit")).toBe("2")
  })
})

describe("tasks in flight, as the gateway counts them", () => {
  test("asks the store once for concurrent requests, adds what it accepts, and asks again before it refuses", async () => {
    let inStore = 0
    let asks = 0
    const quota = new InFlightQuota(3, async (owner) => {
      expect(owner).toBe("alice")
      asks++
      return inStore
    })
    await Promise.all([quota.take("alice", 1), quota.take("alice", 1)])
    expect(asks).toBe(1)
    await quota.take("alice", 1)
    expect(asks).toBe(1)
    // At the bound by its own count, it asks before refusing: two of the three have ended since.
    inStore = 1
    await quota.take("alice", 2)
    expect(asks).toBe(2)
    inStore = 3
    await expect(quota.take("alice", 1)).rejects.toThrow(
      'the key "alice" has 3 tasks in flight and asks for 1 more; at most 3 may be submitted and not final at once (MAX_TASKS_IN_FLIGHT_PER_KEY)',
    )
    expect(asks).toBe(3)
  })
})

describe("streams and waits held open", () => {
  /** A task that stays PENDING: submitted while the worker is away. */
  const submitPending = async () => {
    const res = await fetch(stack.url("/polarities"), {
      method: "POST",
      headers: as(alice),
      body: '{"review": "held"}',
    })
    expect(res.status).toBe(202)
    return ((await res.json()) as { task_id: string }).task_id
  }

  test("a key holds at most MAX_STREAMS_PER_CALLER event streams; closing one frees its place", async () => {
    await stack.restartWorker(async () => {
      const taskId = await submitPending()
      const open = (key = alice) => {
        const aborter = new AbortController()
        const url = stack.url(`/polarities/tasks/${taskId}/events`)
        return { res: fetch(url, { headers: as(key), signal: aborter.signal }), aborter }
      }
      const first = open()
      const second = open()
      expect((await first.res).status).toBe(200)
      expect((await second.res).status).toBe(200)
      await expectProblem(
        await open().res,
        429,
        "at most 2 event streams open at once per caller (MAX_STREAMS_PER_CALLER); close one first",
      )
      // Another key's places are its own (and alice's task is not bob's to follow: a 404).
      const bobs = await open(bob).res
      await expectProblem(bobs, 404, `no task with id ${taskId}`)
      first.aborter.abort()
      await until(async () => {
        const again = open()
        const res = await again.res
        again.aborter.abort()
        return res.status === 200
      })
      second.aborter.abort()
    })
  })

  test("past MAX_STREAMS in all, whoever asks, a 503 with Retry-After", async () => {
    const url = await stack.gatewayWith({ MAX_STREAMS: "1" })
    await stack.restartWorker(async () => {
      const taskId = await submitPending()
      const aborter = new AbortController()
      const follow = (key: string, signal?: AbortSignal) =>
        fetch(url(`/polarities/tasks/${taskId}/events`), { headers: as(key), ...(signal && { signal }) })
      expect((await follow(alice, aborter.signal)).status).toBe(200)
      const refused = await follow(alice)
      expect(refused.headers.get("retry-after")).toBe("1")
      await expectProblem(
        refused,
        503,
        "this gateway holds its most event streams (1, MAX_STREAMS); retry shortly",
      )
      aborter.abort()
    })
  })

  test("a key holds at most MAX_WAITS_PER_CALLER ?wait= requests", async () => {
    await stack.restartWorker(async () => {
      const taskId = await submitPending()
      const lookup = (wait: number) =>
        fetch(stack.url(`/polarities/tasks/lookup?wait=${wait}`), {
          method: "POST",
          headers: as(alice),
          body: JSON.stringify({ task_ids: [taskId] }),
        })
      const held = [lookup(2), lookup(2)]
      await until(async () => (await metricValue('polarity_gateway_held{what="waits"')) === 2)
      await expectProblem(
        await lookup(2),
        429,
        "at most 2 ?wait= requests open at once per caller (MAX_WAITS_PER_CALLER); close one first",
      )
      // A lookup that does not wait holds nothing.
      expect((await lookup(0)).status).toBe(200)
      for (const res of await Promise.all(held)) expect(res.status).toBe(200)
      expect((await lookup(0.01)).status).toBe(200)
    })
  })
})

describe("lookups", () => {
  test("the same id twice is a 422 naming it", async () => {
    const taskId = "0199a4b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
    const res = await fetch(stack.url("/polarities/tasks/lookup"), {
      method: "POST",
      headers: as(alice),
      body: JSON.stringify({ task_ids: [taskId, "0199a4b2-7c3d-7e4f-8a9b-0c1d2e3f4a5c", taskId] }),
    })
    await expectProblem(
      res,
      422,
      `task_ids: task_ids.2: ${taskId} is asked for twice; ask for each task once`,
    )
  })

  test("no answer passes MAX_LOOKUP_ANSWER_BYTES: past it a 422 says how many fit, and those fit", async () => {
    const document = "What a lovely, wonderful day it was. ".repeat(200).trim()
    const taskIds: string[] = []
    for (let i = 0; i < 4; i++) {
      const res = await fetch(stack.url("/polarities/documents?wait=10"), {
        method: "POST",
        headers: as(alice),
        body: JSON.stringify({ document: `${document} ${i}` }),
      })
      expect(res.status).toBe(200)
      taskIds.push(((await res.json()) as { task_id: string }).task_id)
    }
    const lookup = (ids: string[]) =>
      fetch(stack.url("/polarities/tasks/lookup"), {
        method: "POST",
        headers: as(alice),
        body: JSON.stringify({ task_ids: ids }),
      })
    const refused = await lookup(taskIds)
    const detail = ((await refused.clone().json()) as { detail: string }).detail
    const fit = Number(/the first (\d+) of these 4 tasks fit/.exec(detail)?.[1])
    await expectProblem(
      refused,
      422,
      `the answer would be larger than ${MAX_LOOKUP_ANSWER_BYTES} bytes (MAX_LOOKUP_ANSWER_BYTES): the first ${fit} of these 4 tasks fit; ask for fewer at a time`,
    )
    expect(fit).toBeGreaterThanOrEqual(1)
    expect(fit).toBeLessThan(4)
    const fitting = await lookup(taskIds.slice(0, fit))
    expect(fitting.status).toBe(200)
    expect((await fitting.text()).length).toBeLessThanOrEqual(MAX_LOOKUP_ANSWER_BYTES)
    expect((await lookup(taskIds.slice(0, fit + 1))).status).toBe(422)
  })
})

async function metricValue(name: string): Promise<number> {
  const text = await (await fetch(stack.url("/metrics"))).text()
  const line = text.split("\n").find((l) => l.startsWith(name))
  return Number(line?.split(" ").at(-1) ?? 0)
}

async function until(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !(await condition()); ) {
    if (Date.now() > deadline) throw new Error("the condition did not hold in time")
    await Bun.sleep(20)
  }
}

// The dashboard's data over HTTP: the page and its assets, the overview, the task table, a task's detail, the live
// stream, and the optional protection. The browser tests (dashboard.test.ts) drive the same through the page.
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { rmSync } from "node:fs"
import * as v from "valibot"
import { loadGatewayConfig } from "../services/gateway.ts"
import { topologyOptions } from "../shared/amqp.ts"
import { BrokerEnv, loadConfig } from "../shared/config.ts"
import { DashboardOverview, type TaskDetail, type TaskPage, type TaskRecord } from "../shared/contracts.ts"
import { allNames } from "../shared/topology.ts"
import {
  eventually,
  postBody,
  postReview,
  type Stack,
  sseReader,
  startStack,
  taskBody,
  testEnv,
} from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("dashboard-api", {
    ENABLE_TEST_TASKS: "true",
    MAX_RETRIES: "0",
    DASHBOARD_REFRESH_MS: "100",
    WORKER_HEARTBEAT_MS: "100",
    SSE_HEARTBEAT_MS: "100",
  })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

async function getJson<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(stack.url(path), init)
  expect({ path, status: res.status }).toEqual({ path, status: 200 })
  expect(res.headers.get("content-type")).toStartWith("application/json")
  return (await res.json()) as T
}

async function flaky(body: Record<string, unknown>): Promise<TaskRecord> {
  const res = await fetch(stack.url("/test/flaky?wait=10"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  })
  return taskBody(res)
}

describe("the dashboard page", () => {
  test("is served with a strict content security policy, and every asset it loads is there", async () => {
    const res = await fetch(stack.url("/dashboard"))
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8")
    expect(res.headers.get("content-security-policy")).toContain("default-src 'self'")
    const html = await res.text()
    const assets = [...html.matchAll(/(?:src|href)="(dashboard\/assets\/[^"]+)"/g)].map((m) => m[1] ?? "")
    expect(assets.toSorted()).toEqual([
      "dashboard/assets/dashboard.css",
      "dashboard/assets/dashboard.js",
      "dashboard/assets/uPlot.iife.min.js",
      "dashboard/assets/uPlot.min.css",
    ])
    for (const asset of assets) {
      const file = await fetch(stack.url(`/${asset}`))
      expect({ asset, status: file.status }).toEqual({ asset, status: 200 })
      expect(file.headers.get("content-type")).toStartWith(
        asset.endsWith(".js") ? "text/javascript" : "text/css",
      )
    }
    expect((await fetch(stack.url("/dashboard/assets/secrets.json"))).status).toBe(404)
  })
})

describe("GET /dashboard/api/overview", () => {
  test("counts, rates, latency and throughput from the store, workers from heartbeats, queues from the broker", async () => {
    await Promise.all(["lovely", "awful", "a table"].map((review) => postReview(stack, review, "?wait=10")))
    const failed = await flaky({ fail_times: 1 })
    expect(failed.status).toBe("FAILURE")
    const overview = await eventually(async () => {
      const body = await getJson<DashboardOverview>("/dashboard/api/overview")
      expect(body.workers.map((w) => [w.status, w.succeeded, w.failed])).toEqual([["online", 3, 1]])
      return body
    })
    expect(v.safeParse(DashboardOverview, overview).issues).toBeUndefined()
    const { stats, queues } = overview
    expect(stats.counts).toEqual({
      SCHEDULED: 0,
      PENDING: 0,
      STARTED: 0,
      RETRY: 0,
      SUCCESS: 3,
      FAILURE: 1,
      EXPIRED: 0,
      REVOKED: 0,
    })
    const sum = (values: number[]) => values.reduce((a, b) => a + b, 0)
    expect([sum(stats.series.submitted), sum(stats.series.succeeded), sum(stats.series.failed)]).toEqual([
      4, 3, 1,
    ])
    expect(stats.latency.total?.count).toBe(4)
    const names = allNames(topologyOptions(loadConfig(BrokerEnv, stack.env)))
    expect(queues.source).toBe("depth")
    expect(queues.queues.map((q) => q.name).toSorted()).toEqual(names.queues.toSorted())
    const byName = new Map(queues.queues.map((q) => [q.name, q]))
    expect(byName.get(stack.names.taskQueues.polarity)).toMatchObject({
      messages: 0,
      consumers: 1,
      dead_letter: false,
    })
    expect(byName.get(stack.names.failedQueue)).toMatchObject({
      messages: 1,
      consumers: 0,
      dead_letter: true,
    })
  })
})

describe("GET /dashboard/api/tasks", () => {
  test("pages newest first and filters by status, kind and id prefix", async () => {
    const document = await taskBody(
      await fetch(stack.url("/polarities/documents?wait=10"), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ document: "Fine. Lovely." }),
      }),
    )
    const all = await getJson<TaskPage>("/dashboard/api/tasks?limit=100")
    expect(all.tasks[0]?.task_id).toBe(document.task_id)
    expect(all.tasks.length).toBe(5)

    const documents = await getJson<TaskPage>("/dashboard/api/tasks?kind=document:sentences")
    expect(documents).toEqual({ tasks: [document], next_cursor: null })
    const failures = await getJson<TaskPage>("/dashboard/api/tasks?status=FAILURE&kind=test:flaky")
    expect(failures.tasks.map((t) => t.status)).toEqual(["FAILURE"])
    const found = await getJson<TaskPage>(
      `/dashboard/api/tasks?q=${document.task_id.slice(0, 30).toUpperCase()}`,
    )
    expect(found.tasks.map((t) => t.task_id)).toEqual([document.task_id])

    const first = await getJson<TaskPage>("/dashboard/api/tasks?limit=4")
    const second = await getJson<TaskPage>(`/dashboard/api/tasks?limit=4&cursor=${first.next_cursor}`)
    expect([...first.tasks, ...second.tasks]).toEqual(all.tasks)
    expect(second.next_cursor).toBeNull()
  })

  test("rejects a bad filter with a 422 problem", async () => {
    for (const [query, detail] of [
      ["q=xyz", "q: an id prefix is 1 to 36 lower-case hex digits and dashes"],
      ["limit=0", "limit: limit must be a whole number from 1 to 100"],
      ["kind=nope", "kind: "],
      ["cursor=bm9wZQ", 'cursor: "bm9wZQ" is not a cursor this API gave out'],
    ] as const) {
      const res = await fetch(stack.url(`/dashboard/api/tasks?${query}`))
      expect(res.status).toBe(422)
      expect(res.headers.get("content-type")).toBe("application/problem+json")
      expect(((await res.json()) as { detail: string }).detail).toStartWith(detail)
    }
  })
})

describe("GET /dashboard/api/tasks/{id}", () => {
  test("a task's input, result and timeline", async () => {
    const done = await taskBody(
      await postBody(stack, { review: "What a lovely day", language: "en" }, "?wait=10"),
    )
    const detail = await getJson<TaskDetail>(`/dashboard/api/tasks/${done.task_id}`)
    expect(detail.task).toEqual(done)
    expect(detail.input).toEqual({ review: "What a lovely day", language: "en" })
    expect(detail.run).toBe(1)
    expect(detail.timeline.map((entry) => entry.state)).toEqual(
      detail.timeline.length === 3 ? ["PENDING", "STARTED", "SUCCESS"] : ["PENDING", "SUCCESS"],
    )
    expect(detail.timeline.at(-1)).toMatchObject({
      attempt: 1,
      run: 1,
      started_at: done.started_at,
      at: done.finished_at,
    })
  })

  test("an unknown task is a 404 problem", async () => {
    const unknown = crypto.randomUUID()
    const res = await fetch(stack.url(`/dashboard/api/tasks/${unknown}`))
    expect(res.status).toBe(404)
    expect(await res.json()).toMatchObject({ status: 404, detail: `no task with id ${unknown}` })
  })
})

describe("GET /dashboard/api/stream", () => {
  test("sends the overview at once and on every refresh, and says when tasks change", async () => {
    const res = await fetch(stack.url("/dashboard/api/stream"))
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toBe("text/event-stream")
    const stream = sseReader(res)
    try {
      const first = await stream.next()
      expect(first.event).toBe("overview")
      expect(v.safeParse(DashboardOverview, first.data).issues).toBeUndefined()
      expect(stack.gateway.dashboardStreams()).toBe(1)
      const before = (first.data as DashboardOverview).stats.counts.SUCCESS
      await postReview(stack, "lovely", "?wait=10")
      const seen: string[] = []
      for (;;) {
        const { event, data } = await stream.next()
        seen.push(event)
        if (
          event === "overview" &&
          (data as DashboardOverview).stats.counts.SUCCESS === before + 1 &&
          seen.includes("tasks")
        )
          break
      }
      expect(seen).toContain("tasks")
    } finally {
      await stream.cancel()
    }
    await eventually(async () => expect(stack.gateway.dashboardStreams()).toBe(0))
  })
})

describe("/metrics of the gateway", () => {
  test("has every queue's depth and consumers", async () => {
    const text = await (await fetch(stack.url("/metrics"))).text()
    expect(text).toContain(`polarity_queue_messages{queue="${stack.names.failedQueue}",service="gateway"} 1`)
    expect(text).toContain(
      `polarity_queue_consumers{queue="${stack.names.taskQueues.polarity}",service="gateway"} 1`,
    )
  })
})

describe("with DASHBOARD_TOKEN and DASHBOARD_USER/DASHBOARD_PASSWORD", () => {
  const token = "s3cret-dashboard-token"
  let guarded: Stack
  beforeAll(async () => {
    guarded = await startStack("dashboard-auth", {
      DASHBOARD_TOKEN: token,
      DASHBOARD_USER: "ops",
      DASHBOARD_PASSWORD: "pa:ss wörd",
    })
  })
  afterAll(async () => {
    await guarded?.[Symbol.asyncDispose]()
  })
  const paths = [
    "/dashboard",
    "/dashboard/assets/dashboard.js",
    "/dashboard/api/overview",
    "/dashboard/api/stream",
    "/dashboard/api/tasks",
  ]

  test("the page, its assets and its data are a 401 problem without them, or with wrong ones", async () => {
    const wrong: Record<string, string>[] = [
      {},
      { authorization: "Bearer nope" },
      { authorization: `Basic ${btoa("ops:nope")}` },
      { cookie: "dashboard_session=nope" },
    ]
    for (const path of paths) {
      for (const headers of wrong) {
        const res = await fetch(guarded.url(path), { headers })
        expect({ path, headers, status: res.status }).toEqual({ path, headers, status: 401 })
        expect(res.headers.get("content-type")).toBe("application/problem+json")
        expect(res.headers.get("www-authenticate")).toBe('Basic realm="dashboard", charset="UTF-8"')
      }
    }
  })

  test("a bearer token or basic auth lets them through", async () => {
    const basic = `Basic ${Buffer.from("ops:pa:ss wörd").toString("base64")}`
    for (const authorization of [`Bearer ${token}`, basic]) {
      for (const path of paths.filter((p) => !p.endsWith("stream"))) {
        const res = await fetch(guarded.url(path), { headers: { authorization } })
        expect({ path, status: res.status }).toEqual({ path, status: 200 })
        await res.body?.cancel()
      }
    }
  })

  test("?token= once sets a cookie and sends the browser on without the token; the cookie then does", async () => {
    const res = await fetch(guarded.url(`/dashboard?token=${token}`), { redirect: "manual" })
    expect(res.status).toBe(303)
    expect(res.headers.get("location")).toBe("/dashboard")
    const setCookie = res.headers.get("set-cookie") ?? ""
    expect(setCookie).toMatch(/^dashboard_session=[\w-]+; Path=\/dashboard; HttpOnly; SameSite=Strict$/)
    expect(setCookie).not.toContain(token)
    const cookie = setCookie.split(";")[0] ?? ""
    for (const path of ["/dashboard", "/dashboard/api/overview"]) {
      const page = await fetch(guarded.url(path), { headers: { cookie } })
      expect({ path, status: page.status }).toEqual({ path, status: 200 })
      await page.body?.cancel()
    }
    const wrong = await fetch(guarded.url("/dashboard?token=nope"), { redirect: "manual" })
    expect(wrong.status).toBe(401)
  })

  test("the task API and /metrics stay as open as before", async () => {
    expect((await fetch(guarded.url("/polarities/tasks"))).status).toBe(200)
    expect((await fetch(guarded.url("/metrics"))).status).toBe(200)
  })

  test("a user without a password stops the gateway at start-up, before it connects", () => {
    const { env, dataDir } = testEnv("dashboard-config", { DASHBOARD_USER: "ops" })
    rmSync(dataDir, { recursive: true, force: true })
    expect(() => loadGatewayConfig(env)).toThrow(
      "invalid configuration: set DASHBOARD_USER and DASHBOARD_PASSWORD together, or neither",
    )
  })
})

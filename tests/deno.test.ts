// The whole path with services under Deno, alone and mixed with Bun ones: the same files, contracts and
// topology, so a deployment may run each service under either runtime. Real processes, started as
// `npm run start:deno:<service>` starts them (with its permissions).
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { basename, join } from "node:path"
import postgres from "postgres"
import type { GroupRecord } from "../shared/contracts.ts"
import { type Cluster, type ServiceProcess, startCluster } from "./faults/cluster.ts"
import { createTestDatabase, type TestDatabase } from "./postgres.ts"
import { DENO, denoFlags, ROOT, type Runtimes } from "./runtimes.ts"
import { submitFlaky, taskBody, waitForFinal } from "./support.ts"

const ALL_DENO: Runtimes = { gateway: "deno", worker: "deno", store: "deno" }
/** Label, test topic, runtimes, and whether the store is on PostgreSQL (a database of the test's own). */
const DEPLOYMENTS: [string, string, Runtimes, boolean][] = [
  ["every service under Deno", "deno", ALL_DENO, false],
  ["every service under Deno, the store on PostgreSQL", "deno-pg", ALL_DENO, true],
  ["a Deno gateway with a Bun worker and store", "deno-gateway", { gateway: "deno" }, false],
  ["a Bun gateway with a Deno worker and store", "deno-backend", { worker: "deno", store: "deno" }, false],
]

const post = (url: string, body: unknown) =>
  fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })

/** The event names of a task's Server-Sent Events stream, read until the server ends it. */
async function streamedStates(url: string): Promise<{ type: string | null; states: string[] }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(20_000) })
  const text = await res.text()
  const states = text
    .split("\n")
    .filter((line) => line.startsWith("event:"))
    .map((line) => line.slice("event:".length).trim())
  return { type: res.headers.get("content-type"), states }
}

describe.each(DEPLOYMENTS)("%s", (_label, topic, runtimes, onPostgres) => {
  let cluster: Cluster
  let database: TestDatabase | undefined
  const stack = { url: (path: string) => `${cluster.gateway.url}${path}` }
  beforeAll(async () => {
    if (onPostgres) database = await createTestDatabase(topic)
    // One task at a time, so that a sleeping task holds the next one in its queue (to revoke it unstarted).
    const settings = { WORKER_PREFETCH: "1", MAX_RETRIES: "0" }
    cluster = await startCluster(
      topic,
      { ...settings, ...(database && { DATABASE_URL: database.url }) },
      { runtimes },
    )
  })
  afterAll(async () => {
    await cluster?.[Symbol.asyncDispose]()
    await database?.[Symbol.asyncDispose]()
  })

  test("each service runs under the runtime the deployment says", () => {
    const runtimeOf = (service: ServiceProcess) => basename(service.executable()).replace(/\.exe$/, "")
    expect({
      gateway: runtimeOf(cluster.gateway),
      worker: runtimeOf(cluster.workers[0] as ServiceProcess),
      store: runtimeOf(cluster.store),
    }).toEqual({ gateway: "bun", worker: "bun", store: "bun", ...runtimes })
  })

  test("POST /polarities?wait= answers the scored review", async () => {
    const res = await post(stack.url("/polarities?wait=10"), { review: "What a lovely, wonderful day" })
    expect(res.status).toBe(200)
    expect(await taskBody(res)).toMatchObject({
      status: "SUCCESS",
      result: { polarity: "positive", positive: ["wonderful", "lovely"], language: "en" },
      attempts: 1,
    })
  })

  if (onPostgres)
    test("the store keeps its tasks in PostgreSQL, and reads and writes no file", async () => {
      const res = await post(stack.url("/polarities"), { review: "This is terrible, awful and sad." })
      const { task_id } = (await res.json()) as { task_id: string }
      // Read through the store first: once it answers SUCCESS, the row is committed.
      expect((await waitForFinal(stack, task_id)).status).toBe("SUCCESS")
      const sql = postgres(database?.url ?? "", { max: 1 })
      try {
        const rows = await sql`SELECT status FROM tasks WHERE task_id = ${task_id}`
        expect(rows.map((row) => row.status)).toEqual(["SUCCESS"])
      } finally {
        await sql.end()
      }
      const permissions = cluster.store.arguments().filter((arg) => arg.startsWith("--allow-"))
      expect(permissions).toEqual(["--allow-net", "--allow-env"])
    })

  test("POST /polarities/batch?wait= answers every result in input order", async () => {
    const reviews = ["I love it", "This is terrible", "Ужасный фильм"]
    const res = await post(stack.url("/polarities/batch?wait=10"), { reviews })
    expect(res.status).toBe(200)
    const group = (await res.json()) as GroupRecord
    expect(group.status).toBe("SUCCESS")
    expect(group.results?.map((task) => task.result)).toMatchObject([
      { polarity: "positive", language: "en" },
      { polarity: "negative", language: "en" },
      { polarity: "negative", language: "ru" },
    ])
  })

  test("GET /polarities/tasks/{id}/events streams the task's states until its final one", async () => {
    const taskId = await submitFlaky(stack, { sleep_ms: 1000 })
    const { type, states } = await streamedStates(stack.url(`/polarities/tasks/${taskId}/events`))
    expect(type).toBe("text/event-stream")
    expect(states.at(-1)).toBe("SUCCESS")
    expect(states.length).toBeGreaterThanOrEqual(2)
    expect(states.every((state) => ["PENDING", "STARTED", "SUCCESS"].includes(state))).toBe(true)
  })

  test("DELETE revokes a queued task, and POST …/retry runs it and a failed task again", async () => {
    const sleeper = await submitFlaky(stack, { sleep_ms: 1500 })
    const queued = await submitFlaky(stack)
    const revoked = await fetch(stack.url(`/polarities/tasks/${queued}`), { method: "DELETE" })
    expect(revoked.status).toBe(200)
    expect(await taskBody(revoked)).toMatchObject({ status: "REVOKED", error: "revoked before it started" })
    const failed = await submitFlaky(stack, { fail_times: 1, non_retryable: true })
    expect(await waitForFinal(stack, failed)).toMatchObject({ status: "FAILURE", attempts: 1 })
    expect((await waitForFinal(stack, sleeper)).status).toBe("SUCCESS")

    for (const taskId of [queued, failed]) {
      const res = await fetch(stack.url(`/polarities/tasks/${taskId}/retry`), { method: "POST" })
      expect(res.status).toBe(202)
    }
    expect(await waitForFinal(stack, queued)).toMatchObject({ status: "SUCCESS", error: null })
    expect(await waitForFinal(stack, failed)).toMatchObject({ status: "SUCCESS", attempts: 2, error: null })
  })

  test("/docs, /openapi.json and the dashboard are served, their files whole", async () => {
    const docs = await fetch(stack.url("/docs"))
    expect(docs.headers.get("content-type")).toStartWith("text/html")
    expect(await docs.text()).toContain('<script src="docs/swagger-ui-bundle.js"></script>')
    expect(
      ((await fetch(stack.url("/openapi.json")).then((r) => r.json())) as { openapi: string }).openapi,
    ).toStartWith("3.1")
    const files: Record<string, [string, string]> = {
      "/docs/swagger-ui-bundle.js": ["node_modules/swagger-ui-dist/swagger-ui-bundle.js", "text/javascript"],
      "/dashboard": ["services/gateway/dashboard/index.html", "text/html"],
      "/dashboard/assets/uPlot.iife.min.js": ["node_modules/uplot/dist/uPlot.iife.min.js", "text/javascript"],
    }
    for (const [path, [file, type]] of Object.entries(files)) {
      const res = await fetch(stack.url(path))
      expect(res.status).toBe(200)
      expect(res.headers.get("content-type")).toStartWith(type)
      expect(await res.text()).toBe(readFileSync(join(ROOT, file), "utf8"))
    }
  })

  test("every service serves /metrics", async () => {
    const services = {
      gateway: cluster.gateway,
      "polarity-worker": cluster.workers[0],
      "status-store": cluster.store,
    }
    for (const [name, service] of Object.entries(services)) {
      const scrape = () => fetch(`${service?.url}/metrics`)
      await (await scrape()).text()
      const res = await scrape()
      expect(res.status).toBe(200)
      expect(res.headers.get("content-type")).toStartWith("text/plain")
      const text = await res.text()
      expect(text).toContain(`process_resident_memory_bytes{service="${name}"}`)
      // The first scrape, counted once it was answered.
      expect(text).toContain(
        `polarity_http_requests_total{method="GET",route="/metrics",status="200",service="${name}"} 1`,
      )
    }
  })
})

/** The URL `deno serve` says it listens on (on stderr). */
async function listeningUrl(stderr: ReadableStream<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder()
  let said = ""
  for await (const chunk of stderr) {
    said += decoder.decode(chunk, { stream: true })
    const url = /Listening on (http:\/\/\S+)\//.exec(said)?.[1]
    if (url) return url
  }
  throw new Error(`deno serve ended without listening: ${said}`)
}

describe("the gateway's app as a plain fetch handler", () => {
  test("`deno serve` of a module whose default export is the app answers the API", async () => {
    // The store and a worker (under Bun) to answer; the cluster's own gateway is not used.
    await using cluster = await startCluster("deno-serve")
    const proc = Bun.spawn(
      [
        DENO,
        "serve",
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        ...denoFlags("gateway"),
        "tests/fixtures/gateway-handler.ts",
      ],
      { cwd: ROOT, env: { ...process.env, ...cluster.env }, stdout: "ignore", stderr: "pipe" },
    )
    try {
      const url = await listeningUrl(proc.stderr)
      const res = await post(`${url}/polarities?wait=10`, { review: "What a lovely day" })
      expect(res.status).toBe(200)
      expect(await taskBody(res)).toMatchObject({ status: "SUCCESS", result: { polarity: "positive" } })
    } finally {
      proc.kill()
      await proc.exited
    }
  })
})

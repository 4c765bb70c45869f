import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { eventually, type Stack, startStack, taskBody, waitForFinal } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("metrics", {
    ENABLE_TEST_TASKS: "true",
    MAX_RETRIES: "1",
    RETRY_BASE_DELAY_MS: "50",
  })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** The samples of the Prometheus text format, comments left out. */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split("\n")) {
    const match = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/)
    if (!match) continue
    const labels: Record<string, string> = {}
    for (const [, key, value] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key ?? ""] = value ?? ""
    }
    samples.push({ name: match[1] ?? "", labels, value: Number(match[3]) })
  }
  return samples
}

async function scrape(baseUrl: string): Promise<Sample[]> {
  const res = await fetch(`${baseUrl}/metrics`)
  expect(res.status).toBe(200)
  expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8")
  return parseMetrics(await res.text())
}

/** The value of the one sample with this name and these labels (the `service` label aside), or undefined. */
function sampleValue(
  samples: Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const found = samples.filter(
    (s) =>
      s.name === name &&
      Object.keys(s.labels).filter((key) => key !== "service").length === Object.keys(labels).length &&
      Object.entries(labels).every(([key, value]) => s.labels[key] === value),
  )
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`)
  return found[0]?.value
}

const services = () => ({
  gateway: stack.gateway.url,
  "polarity-worker": stack.worker.url,
  "status-store": stack.store.url,
})

describe("GET /metrics on every service", () => {
  test("serves the Prometheus text format, every sample labelled with its service", async () => {
    for (const [service, url] of Object.entries(services())) {
      const samples = await scrape(url)
      expect(samples.length).toBeGreaterThan(0)
      expect(samples.filter((s) => s.labels.service !== service)).toEqual([])
      expect(sampleValue(samples, "polarity_broker_reconnects_total")).toBe(0)
      expect(sampleValue(samples, "nodejs_eventloop_lag_seconds")).toBeGreaterThanOrEqual(0)
      expect(sampleValue(samples, "process_resident_memory_bytes")).toBeGreaterThan(0)
    }
  })

  test("counts HTTP requests by method, route pattern and status", async () => {
    const taskId = crypto.randomUUID()
    for (let i = 0; i < 3; i++) await fetch(stack.url(`/polarities/tasks/${crypto.randomUUID()}`))
    await fetch(stack.url("/no/such/route"))
    await fetch(stack.url("/polarities"), { method: "POST", body: "{}" })
    const samples = await scrape(stack.gateway.url)
    const requests = (labels: Record<string, string>) =>
      sampleValue(samples, "polarity_http_requests_total", labels)
    expect(requests({ method: "GET", route: "/polarities/tasks/:taskId", status: "404" })).toBe(3)
    expect(requests({ method: "GET", route: "unmatched", status: "404" })).toBe(1)
    expect(requests({ method: "POST", route: "/polarities", status: "415" })).toBe(1)
    expect(samples.some((s) => s.labels.route?.includes(taskId))).toBe(false)
    const timed = { method: "GET", route: "/polarities/tasks/:taskId" }
    expect(sampleValue(samples, "polarity_http_request_duration_seconds_count", timed)).toBe(3)

    const worker = await scrape(stack.worker.url)
    expect(
      sampleValue(worker, "polarity_http_requests_total", {
        method: "GET",
        route: "/metrics",
        status: "200",
      }),
    ).toBe(1)
  })
})

async function post(path: string, body: unknown): Promise<string> {
  const res = await fetch(stack.url(path), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  })
  expect([200, 202]).toContain(res.status)
  return (await taskBody(res)).task_id
}

describe("after a known workload, each service's counters say exactly what happened", () => {
  test("3 reviews, 1 document, a task retried once, a non-retryable failure and an expired task", async () => {
    // Queued while no worker runs, so that it is past its deadline when the next worker takes it; the worker's
    // counters are its process's, so the whole workload goes to that next worker.
    const expired = await stack.restartWorker(async () => {
      const taskId = await post("/test/flaky", { expires_in: 0.001 })
      await Bun.sleep(20)
      return taskId
    })
    const ids = await Promise.all([
      ...["lovely", "awful", "a table"].map((review) => post("/polarities?wait=10", { review })),
      post("/polarities/documents?wait=10", { document: "I love it. I hate it." }),
      post("/test/flaky?wait=10", { fail_times: 1 }),
      post("/test/flaky?wait=10", { fail_times: 1, non_retryable: true }),
    ])
    const finals = await Promise.all([expired ?? "", ...ids].map((id) => waitForFinal(stack, id)))
    expect(finals.map((t) => t.status)).toEqual([
      "EXPIRED",
      "SUCCESS",
      "SUCCESS",
      "SUCCESS",
      "SUCCESS",
      "SUCCESS",
      "FAILURE",
    ])

    const gateway = await scrape(stack.gateway.url)
    const submitted = (kind: string) => sampleValue(gateway, "polarity_tasks_submitted_total", { kind })
    expect([submitted("polarity:review"), submitted("document:sentences"), submitted("test:flaky")]).toEqual([
      3, 1, 3,
    ])
    expect(sampleValue(gateway, "polarity_tasks_rerun_total", { kind: "test:flaky" })).toBeUndefined()
    const posted = { method: "POST", route: "/polarities" }
    expect(sampleValue(gateway, "polarity_http_requests_total", { ...posted, status: "200" })).toBe(3)

    await eventually(async () => {
      const worker = await scrape(stack.worker.url)
      const count = (name: string, kind: string) =>
        sampleValue(worker, `polarity_tasks_${name}_total`, { kind })
      const kinds = ["polarity:review", "document:sentences", "test:flaky"]
      expect(Object.fromEntries(kinds.map((kind) => [kind, count("started", kind)]))).toEqual({
        "polarity:review": 3,
        "document:sentences": 1,
        "test:flaky": 3,
      })
      expect(Object.fromEntries(kinds.map((kind) => [kind, count("succeeded", kind)]))).toEqual({
        "polarity:review": 3,
        "document:sentences": 1,
        "test:flaky": 1,
      })
      expect([
        count("retried", "test:flaky"),
        count("failed", "test:flaky"),
        count("expired", "test:flaky"),
      ]).toEqual([1, 1, 1])
      expect(count("failed", "polarity:review")).toBeUndefined()
      const runs = (outcome: string) =>
        sampleValue(worker, "polarity_task_run_duration_seconds_count", { kind: "test:flaky", outcome })
      expect([runs("SUCCESS"), runs("RETRY"), runs("FAILURE")]).toEqual([1, 1, 1])
      expect(sampleValue(worker, "polarity_tasks_in_hand")).toBe(0)
    })

    const store = await scrape(stack.store.url)
    const changes = (status: string) => sampleValue(store, "polarity_task_status_changes_total", { status })
    // PENDING left out: it changes nothing when the worker's outcome reached the store first, as it often does.
    expect(["RETRY", "SUCCESS", "FAILURE", "EXPIRED", "REVOKED"].map(changes)).toEqual([
      1,
      5,
      1,
      1,
      undefined,
    ])
    const applied = (state: string) => sampleValue(store, "polarity_events_applied_total", { state })
    expect(["PENDING", "RETRY", "SUCCESS", "FAILURE", "EXPIRED"].map(applied)).toEqual([7, 1, 5, 1, 1])
    for (const phase of ["wait", "run", "total"]) {
      expect(sampleValue(store, "polarity_task_latency_seconds_count", { phase })).toBe(6)
    }
  })
})

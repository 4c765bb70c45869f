import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { type Stack, startStack } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("metrics")
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

// Prometheus metrics every service serves at GET /metrics: a registry of its own (so that services sharing a
// process, as in the tests, never mix their series), the process's metrics (CPU, memory, event-loop lag), HTTP
// requests by route and status, and broker reconnects. Each service registers its own counters beside these.
import type { Context, MiddlewareHandler } from "hono"
import { matchedRoutes } from "hono/route"
// prom-client's entry point also loads its default collectors, the Pushgateway (node:http) and cluster support:
// 8 MB of resident memory in every service, for nothing we use. Its metric classes come from their own modules
// (CommonJS, each exporting its class: a default import under ESM, in Bun and Deno alike; typed in
// prom-client-lib.d.ts), and the few process metrics we serve are below.
import Counter from "prom-client/lib/counter.js"
import Gauge from "prom-client/lib/gauge.js"
import Histogram from "prom-client/lib/histogram.js"
import Registry from "prom-client/lib/registry.js"

export { Counter, Gauge, Histogram }

const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * The route pattern that answered (`/polarities/tasks/:taskId`), never the path itself: a label per task id
 * would make a series per task. Middleware is registered for every method (`ALL`); a request no route matched
 * is `unmatched`.
 */
function routeLabel(c: Context): string {
  const route = matchedRoutes(c).findLast((matched) => matched.method !== "ALL")
  return route?.path ?? "unmatched"
}

export class ServiceMetrics {
  readonly registry = new Registry()
  readonly brokerReconnects: Counter
  private readonly httpRequests: Counter<"method" | "route" | "status">
  private readonly httpDuration: Histogram<"method" | "route">

  constructor(service: string) {
    this.registry.setDefaultLabels({ service })
    const registers = [this.registry]
    processMetrics(registers)
    this.brokerReconnects = new Counter({
      name: "polarity_broker_reconnects_total",
      help: "Times the broker connection was lost and made again.",
      registers,
    })
    this.httpRequests = new Counter({
      name: "polarity_http_requests_total",
      help: "HTTP requests answered, by method, route pattern and status.",
      labelNames: ["method", "route", "status"],
      registers,
    })
    this.httpDuration = new Histogram({
      name: "polarity_http_request_duration_seconds",
      help: "Time from a request's arrival to its answer (a stream's until its headers), by method and route.",
      labelNames: ["method", "route"],
      buckets: HTTP_BUCKETS,
      registers,
    })
  }

  /** Count and time every request; installed before the routes, so that it sees errors as answered. */
  readonly httpMiddleware: MiddlewareHandler = async (c, next) => {
    const startedAt = performance.now()
    await next()
    const labels = { method: c.req.method, route: routeLabel(c) }
    this.httpRequests.inc({ ...labels, status: String(c.res.status) })
    this.httpDuration.observe(labels, (performance.now() - startedAt) / 1000)
  }

  /** GET /metrics: the Prometheus text format. */
  readonly handler = async (c: Context): Promise<Response> =>
    c.body(await this.registry.metrics(), 200, { "content-type": this.registry.contentType })
}

/** What a dashboard needs of the process: CPU, memory, heap and event-loop lag, under prom-client's usual names. */
function processMetrics(registers: Registry[]): void {
  let cpuReported = { user: 0, system: 0 }
  new Counter({
    name: "process_cpu_seconds_total",
    help: "User and system CPU time spent, in seconds.",
    registers,
    collect() {
      const { user, system } = process.cpuUsage()
      this.inc((user + system - cpuReported.user - cpuReported.system) / 1e6)
      cpuReported = { user, system }
    },
  })
  new Gauge({
    name: "process_start_time_seconds",
    help: "When the process started, in seconds since the Unix epoch.",
    registers,
  }).set(Math.round(performance.timeOrigin / 1000))
  new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size, in bytes.",
    registers,
    collect() {
      this.set(process.memoryUsage.rss())
    },
  })
  new Gauge({
    name: "nodejs_heap_size_used_bytes",
    help: "JavaScript heap in use, in bytes.",
    registers,
    collect() {
      this.set(process.memoryUsage().heapUsed)
    },
  })
  new Gauge({
    name: "nodejs_eventloop_lag_seconds",
    help: "How long a callback queued at scrape time waited for the event loop, in seconds.",
    registers,
    async collect() {
      const queuedAt = performance.now()
      await new Promise((resolve) => setImmediate(resolve))
      this.set((performance.now() - queuedAt) / 1000)
    },
  })
}

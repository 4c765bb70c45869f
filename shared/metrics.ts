// Prometheus metrics every service serves at GET /metrics: a registry of its own (so that services sharing a
// process, as in the tests, never mix their series), the process's metrics (CPU, memory, event-loop lag), HTTP
// requests by route and status, and broker reconnects. Each service registers its own counters beside these.
import type { Context, MiddlewareHandler } from "hono"
import { matchedRoutes } from "hono/route"
import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client"

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
    collectDefaultMetrics({ register: this.registry })
    const registers = [this.registry]
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

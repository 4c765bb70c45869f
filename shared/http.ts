// HTTP plumbing every service shares: problem+json errors (RFC 9457), /healthz, start and stop.
import { STATUS_CODES } from "node:http"
import { type Context, Hono, type MiddlewareHandler } from "hono"
import { HTTPException } from "hono/http-exception"
import { BrokerUnavailable } from "./amqp.ts"
import { createLogger, type Logger, type LogLevel } from "./log.ts"
import { serve } from "./runtime.ts"

/** Thrown by handlers; the error boundary turns it into application/problem+json. */
export class Problem extends Error {
  override name = "Problem"
  constructor(
    readonly status: number,
    detail: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(detail)
  }
}

export function problemResponse(
  status: number,
  detail: string,
  headers: Record<string, string> = {},
): Response {
  const body = { type: "about:blank", title: STATUS_CODES[status] ?? "Error", status, detail }
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...headers, "content-type": "application/problem+json" },
  })
}

/** How long a client should wait before retrying when the broker is away. */
export const RETRY_AFTER_SECONDS = 2

export function installErrorBoundary(app: Hono, log: Logger): void {
  app.notFound((c) => problemResponse(404, `no route for ${c.req.method} ${c.req.path}`))
  app.onError((err, c) => {
    if (err instanceof Problem) return problemResponse(err.status, err.message, err.headers)
    if (err instanceof BrokerUnavailable) {
      log.warn("broker unavailable", { path: c.req.path, err: err.message })
      return problemResponse(
        503,
        `the task broker did not take the request (${err.message}); retry shortly`,
        {
          "retry-after": String(RETRY_AFTER_SECONDS),
        },
      )
    }
    if (err instanceof HTTPException && err.status < 500) {
      // Hono's middleware may have built the answer (bearer auth: problem+json with WWW-Authenticate).
      if (err.res?.headers.get("content-type") === "application/problem+json") return err.getResponse()
      return problemResponse(err.status, err.message)
    }
    log.error("request failed", { method: c.req.method, path: c.req.path, err })
    return problemResponse(500, "internal error; see the service log")
  })
}

/** `databaseReachable`: for a service with a database (the status store), whether it answers now. */

export function healthHandler(brokerConnected: () => boolean, databaseReachable?: () => Promise<boolean>) {
  return async (c: Context) => {
    const connected = brokerConnected()
    const reachable = databaseReachable ? await databaseReachable() : undefined
    const ok = connected && reachable !== false
    return c.json(
      {
        status: ok ? "ok" : "degraded",
        broker: connected ? "connected" : "disconnected",
        ...(reachable !== undefined && { database: reachable ? "reachable" : "unreachable" }),
      },
      ok ? 200 : 503,
    )
  }
}

/**
 * Bun closes a connection that has sent nothing for its idle timeout (10 s). An event stream is quiet between
 * its heartbeats, which may be further apart, so a stream is exempt; under servers without the timeout (Deno's)
 * this does nothing.
 */
export function exemptFromIdleTimeout(c: Context): void {
  const server = c.env as { timeout?: (request: Request, seconds: number) => void } | undefined
  server?.timeout?.(c.req.raw, 0)
}

export interface HttpServer {
  url: string
  stop(): Promise<void>
}

/**
 * The app's own limits answer an oversized body with a problem; a server's would be a bare 413. A route that reads a
 * body bounds it (hono/body-limit), and one that does not never buffers it, so the server takes any size.
 */
export function serveApp(app: Hono, port: number, hostname: string): HttpServer {
  const server = serve({ port, hostname, fetch: app.fetch })
  return {
    url: `http://${hostname === "0.0.0.0" ? "127.0.0.1" : hostname}:${server.port}`,
    stop: server.stop,
  }
}

/** What serving /metrics takes of a service's metrics (shared/metrics.ts). */
export interface HttpMetrics {
  httpMiddleware: MiddlewareHandler
  handler: (c: Context) => Promise<Response>
}

/**
 * The HTTP face of a service without an API of its own (the worker, a pool's supervisor, the status store):
 * /healthz and /metrics, counted and behind the error boundary.
 */
export function serveHealthAndMetrics(options: {
  port: number
  host: string
  log: Logger
  metrics: HttpMetrics
  brokerConnected: () => boolean
  databaseReachable?: () => Promise<boolean>
}): HttpServer {
  const app = new Hono()
  app.use(options.metrics.httpMiddleware)
  installErrorBoundary(app, options.log)
  app.get("/healthz", healthHandler(options.brokerConnected, options.databaseReachable))
  app.get("/metrics", options.metrics.handler)
  return serveApp(app, options.port, options.host)
}

/**
 * The `if (import.meta.main)` body of every service: start it, stop it once on SIGTERM/SIGINT, and exit once it
 * has stopped (a worker stops by itself when remote control asks it to).
 */
export function runAsProgram(
  service: string,
  start: () => Promise<{ stop(): Promise<void>; stopped?: Promise<void> }>,
): void {
  // Before the config is parsed (it may be what fails), so the level is read leniently here.
  const level = process.env.LOG_LEVEL as LogLevel | undefined
  const log = createLogger(
    service,
    level && ["debug", "info", "warn", "error"].includes(level) ? level : "info",
  )
  // A config error thrown before the first await is a failed start too.
  const starting = Promise.resolve().then(start)
  // From the first moment: a signal during start-up (an autoscaled pool shrinking by a process just started)
  // stops the service gracefully once it is up, rather than killing it with whatever it has taken in hand.
  stopOnSignals(() => starting.then((running) => running.stop()), log)
  starting.then(
    (running) => void running.stopped?.then(() => process.exit(0)),
    (err: Error) => {
      log.error("start failed", { err: err.message })
      process.exit(1)
    },
  )
}

function stopOnSignals(stop: () => Promise<void>, log: Logger): void {
  let stopping = false
  const onSignal = (signal: string) => {
    if (stopping) return
    stopping = true
    log.info("stopping", { signal })
    stop().then(
      () => process.exit(0),
      (err) => {
        log.error("stop failed", { err })
        process.exit(1)
      },
    )
  }
  process.on("SIGTERM", () => onSignal("SIGTERM"))
  process.on("SIGINT", () => onSignal("SIGINT"))
}

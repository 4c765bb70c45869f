// The live dashboard, served by the gateway at /dashboard: a plain page with a small script and uPlot (served from
// node_modules, so it works offline), its data under /dashboard/api (an overview, a live stream, the task table
// and a task's detail), all behind the optional dashboard credentials. Its actions use the task API itself
// (DELETE and retry) and the admin endpoint for dead-letter replays.
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import type { Context } from "hono"
import * as v from "valibot"
import type { Broker } from "../../shared/amqp.ts"
import { ConfigError, integerVar } from "../../shared/config.ts"
import {
  DashboardOverview,
  MAX_PAGE_SIZE,
  TASK_KINDS,
  TaskDetail,
  TaskIdPrefix,
  TaskStatus,
} from "../../shared/contracts.ts"
import { Problem } from "../../shared/http.ts"
import type { Logger } from "../../shared/log.ts"
import type { ServiceMetrics } from "../../shared/metrics.ts"
import { fileResponse } from "../../shared/runtime.ts"
import type { TopologyOptions } from "../../shared/topology.ts"
import { callerOf } from "./access.ts"
import { DashboardFeed } from "./dashboard-live.ts"
import type { Slots } from "./limits.ts"
import type { Route } from "./openapi.ts"
import { taskQueueStates } from "./queue-admin.ts"
import { QueueStats } from "./queue-stats.ts"
import {
  decodeCursor,
  encodeCursor,
  limitParam,
  parseTaskId,
  RevokeQuery,
  readQuery,
  TaskIdParam,
} from "./requests.ts"
import type { StatusStoreClient } from "./status-store-client.ts"
import type { TaskWatchers } from "./task-streams.ts"

export const DashboardEnv = {
  /** When set, /dashboard and its data need it: `Authorization: Bearer`, or `?token=` once (then a cookie). */
  DASHBOARD_TOKEN: v.optional(v.pipe(v.string(), v.minLength(16, "must be at least 16 characters"))),
  /** Basic-auth credentials for the dashboard, both or neither; with a token too, either will do. */
  DASHBOARD_USER: v.optional(v.pipe(v.string(), v.nonEmpty("must not be empty"))),
  DASHBOARD_PASSWORD: v.optional(v.pipe(v.string(), v.nonEmpty("must not be empty"))),
  /** How often an open dashboard gets new figures. */
  DASHBOARD_REFRESH_MS: integerVar(1000, 100, 60_000),
  /** RabbitMQ's management API, e.g. http://guest:guest@127.0.0.1:15672, for publish and deliver rates. */
  RABBITMQ_MANAGEMENT_URL: v.optional(v.pipe(v.string(), v.url("must be an http:// or https:// URL"))),
}
type DashboardConfig = v.InferOutput<v.ObjectSchema<typeof DashboardEnv, undefined>>

/** Reports the polarity chart shows: two days of hourly ones. */
const REPORTS_SHOWN = 48

export const DASHBOARD_SCHEMAS = { DashboardOverview, TaskDetail }

const DASHBOARD_DIR = join(import.meta.dirname, "dashboard")
const UPLOT_DIR = dirname(fileURLToPath(import.meta.resolve("uplot/package.json")))
const ASSETS = {
  "dashboard.js": join(DASHBOARD_DIR, "dashboard.js"),
  "dashboard.css": join(DASHBOARD_DIR, "dashboard.css"),
  "uPlot.iife.min.js": join(UPLOT_DIR, "dist", "uPlot.iife.min.js"),
  "uPlot.min.css": join(UPLOT_DIR, "dist", "uPlot.min.css"),
} as const
const ASSET_NAMES = Object.keys(ASSETS) as [keyof typeof ASSETS, ...(keyof typeof ASSETS)[]]
const ASSET_TYPES: Record<string, string> = {
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
}

// Styles: uPlot positions its elements with inline styles.
const PAGE_CSP =
  "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'"

const TasksQuery = v.object({
  status: v.optional(v.pipe(TaskStatus, v.description("Only tasks in this status."))),
  kind: v.optional(v.pipe(v.picklist(TASK_KINDS), v.description("Only tasks of this kind."))),
  q: v.optional(
    v.pipe(
      v.string(),
      v.trim(),
      v.toLowerCase(),
      TaskIdPrefix,
      v.description("Only tasks whose id starts with this (1–36 hex digits and dashes)."),
    ),
  ),
  limit: limitParam(MAX_PAGE_SIZE, 25),
  cursor: v.optional(v.pipe(v.string(), v.description("The `next_cursor` of the page before."))),
})

interface DashboardDeps {
  config: DashboardConfig & { SSE_HEARTBEAT_MS: number }
  topology: TopologyOptions
  broker: Broker
  store: StatusStoreClient
  watchers: TaskWatchers
  metrics: ServiceMetrics
  log: Logger
  /** The gateway's event-stream slots: the live feed takes one per viewer. */
  streams: Slots
  /**
   * The task API's DELETE, retry and event stream, served again under /dashboard for the page's Cancel and Retry
   * buttons and its open detail: behind the dashboard's credentials, which a browser sends there (its cookie is
   * scoped to /dashboard) and an API key of the task API's would not come from.
   */
  actions: Record<"revoke" | "retry" | "follow", (c: Context) => Promise<Response>>
}

/** Settings that are wrong only together: refused at start-up, before anything connects. */
export function checkDashboardConfig<TConfig extends DashboardConfig>(config: TConfig): TConfig {
  if (Boolean(config.DASHBOARD_USER) !== Boolean(config.DASHBOARD_PASSWORD)) {
    throw new ConfigError(
      "invalid configuration: set DASHBOARD_USER and DASHBOARD_PASSWORD together, or neither",
    )
  }
  return config
}

export function mountDashboard(
  route: Route<
    "DashboardOverview" | "TaskDetail" | "TaskPage" | "TaskRecord" | "TaskAccepted" | "ScheduleList"
  >,
  { config, topology, broker, store, watchers, metrics, log, streams, actions }: DashboardDeps,
) {
  if (!config.DASHBOARD_TOKEN && !config.DASHBOARD_USER) {
    log.warn("production risk", {
      risk: "dashboard without DASHBOARD_TOKEN or DASHBOARD_USER/DASHBOARD_PASSWORD",
    })
  }

  const queues = new QueueStats({
    amqpUrl: () => broker.url,
    topology,
    managementUrl: config.RABBITMQ_MANAGEMENT_URL,
    deadLetterQueues: [broker.names.failedQueue, broker.names.poisonQueue],
    metrics,
    log,
  })
  const feed = new DashboardFeed({
    store,
    queues,
    taskQueues: async () => taskQueueStates(broker, await store.queuePauses()),
    watchers,
    refreshMs: config.DASHBOARD_REFRESH_MS,
    heartbeatMs: config.SSE_HEARTBEAT_MS,
    log,
  })
  const problems = [401, 503]

  route(
    "get",
    "/dashboard",
    {
      summary: "The live dashboard: counts, rates, latency, throughput, workers, queues and tasks",
      tag: "dashboard",
      responses: { 200: { description: "An HTML page", mediaType: "text/html" } },
      problems: [401],
    },
    () =>
      fileResponse(join(DASHBOARD_DIR, "index.html"), {
        headers: {
          "content-type": "text/html; charset=utf-8",
          "content-security-policy": PAGE_CSP,
          "cache-control": "no-cache",
        },
      }),
  )
  route(
    "get",
    "/dashboard/assets/:asset",
    {
      summary: "The dashboard's script and styles, and uPlot's",
      tag: "dashboard",
      path: { asset: v.picklist(ASSET_NAMES) },
      responses: { 200: { description: "The file" } },
      problems: [401, 404],
    },
    (c) => {
      const asset = c.req.param("asset") ?? ""
      if (!v.is(v.picklist(ASSET_NAMES), asset)) throw new Problem(404, `no dashboard asset "${asset}"`)
      const type = ASSET_TYPES[asset.split(".").at(-1) ?? ""] ?? "application/octet-stream"
      return fileResponse(ASSETS[asset], {
        headers: { "content-type": type, "cache-control": "no-cache" },
      })
    },
  )
  route(
    "get",
    "/dashboard/api/overview",
    {
      summary: "Counts, rates, latency percentiles, throughput, workers and queues, now",
      tag: "dashboard",
      responses: { 200: { description: "The overview", schema: "DashboardOverview" } },
      problems,
    },
    async (c) => c.json(await feed.overview()),
  )
  route(
    "get",
    "/dashboard/api/stream",
    {
      summary: "The dashboard's live feed as Server-Sent Events",
      description: `\`overview\` (a DashboardOverview) at once, then every DASHBOARD_REFRESH_MS with only the last 15 seconds of the series; \`tasks\` (\`{"changed": n}\`) at most twice a second while tasks change; \`problem\` (\`{"detail"}\`) when a refresh failed. A comment line keeps the connection alive.`,
      tag: "dashboard",
      responses: { 200: { description: "The event stream", mediaType: "text/event-stream" } },
      problems: [401],
    },
    (c) => feed.stream(c, streams.take(callerOf(c))),
  )
  route(
    "get",
    "/dashboard/api/tasks",
    {
      summary: "The task table: newest first, by status, kind and id prefix, a page at a time",
      tag: "dashboard",
      query: TasksQuery,
      responses: { 200: { description: "A page of tasks", schema: "TaskPage" } },
      problems: [401, 422, 503],
    },
    async (c) => {
      const { status, kind, q, limit, cursor } = readQuery(c, TasksQuery)
      const page = await store.listTasks(status, limit, decodeCursor(cursor), { kind, idPrefix: q })
      return c.json({
        tasks: page.tasks,
        next_cursor: page.next_after === null ? null : encodeCursor(page.next_after),
      })
    },
  )
  route(
    "get",
    "/dashboard/api/tasks/:taskId",
    {
      summary: "A task with its input (the review or document) and its timeline",
      tag: "dashboard",
      path: { taskId: TaskIdParam },
      responses: { 200: { description: "The task's detail", schema: "TaskDetail" } },
      problems: [401, 404, 410, 503],
    },
    async (c) => {
      const taskId = parseTaskId(c.req.param("taskId") ?? "")
      const detail = await store.taskDetail(taskId)
      if (!detail) throw new Problem(404, `no task with id ${taskId}`)
      return c.json(detail)
    },
  )
  route(
    "get",
    "/dashboard/api/tasks/:taskId/events",
    {
      summary: "A task's states and progress as Server-Sent Events, for its open detail",
      description:
        "The same stream as `GET /polarities/tasks/{task_id}/events`, behind the dashboard's credentials.",
      tag: "dashboard",
      path: { taskId: TaskIdParam },
      responses: { 200: { description: "The event stream", mediaType: "text/event-stream" } },
      problems: [401, 404, 410, 503],
    },
    actions.follow,
  )

  route(
    "delete",
    "/dashboard/api/tasks/:taskId",
    {
      summary:
        "The dashboard's Cancel: DELETE /polarities/tasks/{task_id} behind the dashboard's credentials",
      tag: "dashboard",
      path: { taskId: TaskIdParam },
      query: RevokeQuery,
      responses: { 200: { description: "The task, now REVOKED", schema: "TaskRecord" } },
      problems: [401, 404, 409, 410, 422, 503],
    },
    actions.revoke,
  )
  route(
    "post",
    "/dashboard/api/tasks/:taskId/retry",
    {
      summary:
        "The dashboard's Retry: POST /polarities/tasks/{task_id}/retry behind the dashboard's credentials",
      tag: "dashboard",
      path: { taskId: TaskIdParam },
      responses: { 202: { description: "Published again", schema: "TaskAccepted" } },
      problems: [401, 404, 409, 410, 503],
    },
    actions.retry,
  )

  route(
    "get",
    "/dashboard/api/schedules",
    {
      summary: "Every schedule, with its last and next run",
      tag: "dashboard",
      responses: { 200: { description: "The schedules, by id", schema: "ScheduleList" } },
      problems: [401, 503],
    },
    async (c) => c.json({ schedules: await store.schedules() }),
  )

  route(
    "get",
    "/dashboard/api/reports",
    {
      summary: "The latest polarity reports that succeeded, newest first: the polarity share over time",
      tag: "dashboard",
      responses: { 200: { description: "A page of report tasks", schema: "TaskPage" } },
      problems: [401, 503],
    },
    async (c) => {
      const page = await store.listTasks("SUCCESS", REPORTS_SHOWN, undefined, { kind: "report:polarity" })
      return c.json({ tasks: page.tasks, next_cursor: null })
    },
  )

  return {
    /** Queue depths and rates, for the queue routes too. */
    queues,
    /** Dashboard streams open now. */
    streams: () => feed.size,
    async close(): Promise<void> {
      feed.close()
      await queues.close()
    },
  }
}

// The dashboard's live feed. One loop per gateway, running only while a browser watches, reads the figures from
// the status store and the queues from the broker every DASHBOARD_REFRESH_MS and sends them to every open stream.
// Task events from the gateway's listener tell the browsers to look at their task table again.
import type { Context } from "hono"
import { type SSEStreamingApi, streamSSE } from "hono/streaming"
import type { DashboardOverview, TaskEvent, TaskQueueState } from "../../shared/contracts.ts"
import { exemptFromIdleTimeout } from "../../shared/http.ts"
import type { Logger } from "../../shared/log.ts"
import type { QueueStats } from "./queue-stats.ts"
import type { StatusStoreClient } from "./status-store-client.ts"
import type { TaskWatchers } from "./task-streams.ts"

/** The throughput chart's span, and the latency percentiles' window. */
export const SERIES_SECONDS = 600
export const LATENCY_WINDOW_SECONDS = 300
/** Each tick resends this much of the series: the seconds that late events may still change. */
const SERIES_TAIL_SECONDS = 15
/** Task-table refreshes are sent at most this often, however many events arrive. */
const TASKS_CHANGED_MS = 500

interface FeedOptions {
  store: StatusStoreClient
  queues: QueueStats
  /** The work queues, paused or not. */
  taskQueues: () => Promise<TaskQueueState[]>
  watchers: TaskWatchers
  refreshMs: number
  heartbeatMs: number
  log: Logger
}

interface Viewer {
  stream: SSEStreamingApi
  closed: PromiseWithResolvers<void>
}

export class DashboardFeed {
  private readonly viewers = new Set<Viewer>()
  private timer: ReturnType<typeof setInterval> | undefined
  private ticking = false
  private changedTasks = 0
  private changeTimer: ReturnType<typeof setTimeout> | undefined
  private readonly onTaskEvents = (events: TaskEvent[]) => this.tasksChanged(events.length)

  constructor(private readonly options: FeedOptions) {}

  /** Streams open now. */
  get size(): number {
    return this.viewers.size
  }

  /** Everything the dashboard shows beside the task table, read now. */
  async overview(seriesSeconds = SERIES_SECONDS): Promise<DashboardOverview> {
    const { store, queues, taskQueues } = this.options
    const [stats, workers, queueReport, taskQueueStates] = await Promise.all([
      store.stats(seriesSeconds, LATENCY_WINDOW_SECONDS),
      store.workers(),
      queues.sample(),
      taskQueues(),
    ])
    return { stats, workers, queues: queueReport, task_queues: taskQueueStates }
  }

  /**
   * `overview` events: the whole series first, then every tick its last seconds (the browser merges them by
   * second); `tasks` when tasks changed; `problem` when the store or the broker did not answer a tick.
   */
  stream(c: Context, release: () => void): Response {
    exemptFromIdleTimeout(c)
    return streamSSE(c, async (stream) => {
      const viewer: Viewer = { stream, closed: Promise.withResolvers() }
      stream.onAbort(() => viewer.closed.resolve())
      const heartbeat = setInterval(() => void stream.write(": heartbeat\n\n"), this.options.heartbeatMs)
      this.join(viewer)
      try {
        await this.send(viewer, "overview", await this.overview())
      } catch (err) {
        await this.send(viewer, "problem", { detail: (err as Error).message })
      }
      await viewer.closed.promise
      clearInterval(heartbeat)
      this.leave(viewer)
      release()
    })
  }

  /** End every stream, so that the server can stop. */
  close(): void {
    for (const viewer of this.viewers) viewer.closed.resolve()
  }

  private join(viewer: Viewer): void {
    this.viewers.add(viewer)
    if (this.timer) return
    this.options.watchers.subscribers.add(this.onTaskEvents)
    this.timer = setInterval(() => void this.tick(), this.options.refreshMs)
  }

  private leave(viewer: Viewer): void {
    this.viewers.delete(viewer)
    if (this.viewers.size > 0) return
    clearInterval(this.timer)
    clearTimeout(this.changeTimer)
    this.timer = undefined
    this.changeTimer = undefined
    this.options.watchers.subscribers.delete(this.onTaskEvents)
  }

  private async tick(): Promise<void> {
    // A slow store must not stack ticks up: the next one starts after this one ends.
    if (this.ticking) return
    this.ticking = true
    try {
      const overview = await this.overview(SERIES_TAIL_SECONDS)
      await this.broadcast("overview", overview)
    } catch (err) {
      this.options.log.warn("dashboard tick failed", { err: (err as Error).message })
      await this.broadcast("problem", { detail: (err as Error).message })
    } finally {
      this.ticking = false
    }
  }

  private tasksChanged(count: number): void {
    this.changedTasks += count
    this.changeTimer ??= setTimeout(() => {
      this.changeTimer = undefined
      const changed = this.changedTasks
      this.changedTasks = 0
      void this.broadcast("tasks", { changed })
    }, TASKS_CHANGED_MS)
  }

  private async broadcast(event: string, data: unknown): Promise<void> {
    await Promise.all([...this.viewers].map((viewer) => this.send(viewer, event, data)))
  }

  private async send(viewer: Viewer, event: string, data: unknown): Promise<void> {
    if (viewer.stream.aborted) return viewer.closed.resolve()
    await viewer.stream.writeSSE({ event, data: JSON.stringify(data) }).catch(() => viewer.closed.resolve())
  }
}

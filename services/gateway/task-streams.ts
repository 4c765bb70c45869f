// Live task progress over Server-Sent Events. The gateway listens once to the events exchange and fans the
// events out in process to the streams watching each task id. An event only says "look again": each stream
// reads the task from the status store, so what it sends is exactly what GET answers. Progress reports, which
// come often and change no state, go to the streams as they are, without a read.
import type { Context } from "hono"
import { streamSSE } from "hono/streaming"
import { type Broker, decodeMessage } from "../../shared/amqp.ts"
import {
  FINAL_STATUSES,
  MessageType,
  type ProgressView,
  type TaskEvent,
  TaskEventBatch,
  type TaskProgress,
  TaskProgressBatch,
  type TaskRecord,
} from "../../shared/contracts.ts"
import { exemptFromIdleTimeout, Problem } from "../../shared/http.ts"
import type { Logger } from "../../shared/log.ts"
import { TASK_PROGRESS_KEY } from "../../shared/topology.ts"
import type { StatusStoreClient } from "./status-store-client.ts"

interface Wakeup {
  /** The task's state may have changed: read it again. */
  changed: boolean
  /** The latest progress report since the last wake-up, if any. */
  progress: TaskProgress | undefined
}

/**
 * What a stream waits on: raised by every event of its task, so nothing is missed while it reads, and holding
 * the latest progress report, so that a slow client gets the newest one rather than a backlog.
 */
class Signal {
  private changed = false
  private progress: TaskProgress | undefined
  private waiter: PromiseWithResolvers<void> | undefined

  raise(): void {
    this.changed = true
    this.waiter?.resolve()
  }

  report(progress: TaskProgress): void {
    this.progress = progress
    this.waiter?.resolve()
  }

  async next(): Promise<Wakeup> {
    if (!this.changed && !this.progress) {
      this.waiter = Promise.withResolvers()
      await this.waiter.promise
    }
    const wakeup = { changed: this.changed, progress: this.progress }
    this.changed = false
    this.progress = undefined
    return wakeup
  }
}

export class TaskWatchers {
  private readonly byTask = new Map<string, Set<Signal>>()
  private closing = false
  /** Told of every task event, e.g. the dashboard's live view; the listener skips decoding when nobody is. */
  readonly subscribers = new Set<(events: TaskEvent[]) => void>()

  /** Streams open now. */
  get size(): number {
    let open = 0
    for (const signals of this.byTask.values()) open += signals.size
    return open
  }

  get closed(): boolean {
    return this.closing
  }

  watch(taskId: string, signal: Signal): () => void {
    const signals = this.byTask.get(taskId) ?? new Set()
    this.byTask.set(taskId, signals)
    signals.add(signal)
    return () => {
      signals.delete(signal)
      if (signals.size === 0) this.byTask.delete(taskId)
    }
  }

  notify(taskId: string): void {
    for (const signal of this.byTask.get(taskId) ?? []) signal.raise()
  }

  report(progress: TaskProgress): void {
    for (const signal of this.byTask.get(progress.task_id) ?? []) signal.report(progress)
  }

  /** After a reconnect events may have been missed: every stream reads its task again. */
  notifyAll(): void {
    for (const taskId of this.byTask.keys()) this.notify(taskId)
  }

  /** End every stream, so that the server can stop. */
  close(): void {
    this.closing = true
    this.notifyAll()
  }
}

/** Subscribe once, for every stream this gateway will serve. */
export async function listenForTaskEvents(broker: Broker, log: Logger): Promise<TaskWatchers> {
  const watchers = new TaskWatchers()
  await broker.listen(
    broker.names.eventsExchange,
    ["task.#", TASK_PROGRESS_KEY],
    (msg) => {
      if (watchers.size === 0 && watchers.subscribers.size === 0) return
      try {
        if (msg.properties.type === MessageType.taskProgress) {
          if (watchers.size === 0) return
          const { reports } = decodeMessage(msg, TaskProgressBatch, "TaskProgressBatch")
          for (const report of reports) watchers.report(report)
          return
        }
        const { events } = decodeMessage(msg, TaskEventBatch, "TaskEventBatch")
        for (const event of events) watchers.notify(event.task_id)
        for (const subscriber of watchers.subscribers) subscriber(events)
      } catch (err) {
        log.warn("task event not understood", { err })
      }
    },
    () => watchers.notifyAll(),
  )
  return watchers
}

/** The SSE `id` of a record: a reconnecting client sends it back as Last-Event-ID. */
const eventIdOf = (record: TaskRecord) => `${record.attempts}-${record.status}`

/** A report as GET shows it, if it belongs to the attempt the record is at and that attempt may be running. */
function progressView(report: TaskProgress, record: TaskRecord): ProgressView | undefined {
  const running = record.status === "STARTED" || record.status === "PENDING"
  if (!running || report.attempt < record.attempts) return undefined
  return { ...report.progress, at: new Date(report.at).toISOString() }
}

interface StreamOptions {
  store: StatusStoreClient
  watchers: TaskWatchers
  heartbeatMs: number
  log: Logger
  /** Gives back the stream's slot (MAX_STREAMS_PER_CALLER), once the stream ends or is refused. */
  release: () => void
  /** Only this key's task (undefined: any task). */
  owner: string | undefined
}

/**
 * The task's states as they change: `event:` the status, `data:` the task record, `id:` attempts and status;
 * the current state first, and the stream ends after a final one. A comment every `heartbeatMs` keeps proxies
 * from closing a quiet stream. A client that reconnects with the id of the final state gets 204, which tells
 * a browser's EventSource to stop reconnecting.
 */
export async function streamTaskEvents(
  c: Context,
  taskId: string,
  options: StreamOptions,
): Promise<Response> {
  const { store, watchers, heartbeatMs, log, release, owner } = options
  // Watch first, then read: an event that lands in between raises the signal, and the stream reads again.
  // The first read catches up too: an event this gateway heard just before the stream opened may still wait in
  // the store's queue, and no signal would come for it again.
  const signal = new Signal()
  const stopWatching = watchers.watch(taskId, signal)
  const unwatch = () => {
    stopWatching()
    release()
  }
  let record: TaskRecord | null
  try {
    record = await store.getTask(taskId, { owner, catchUp: true })
  } catch (err) {
    unwatch()
    throw err
  }
  if (!record) {
    unwatch()
    throw new Problem(404, `no task with id ${taskId}`)
  }
  if (FINAL_STATUSES.has(record.status) && c.req.header("last-event-id") === eventIdOf(record)) {
    unwatch()
    return c.body(null, 204)
  }
  let current = record
  exemptFromIdleTimeout(c)
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => signal.raise())
    const heartbeat = setInterval(() => void stream.write(": heartbeat\n\n"), heartbeatMs)
    try {
      let sent = ""
      while (!stream.aborted && !watchers.closed) {
        if (eventIdOf(current) !== sent) {
          sent = eventIdOf(current)
          await stream.writeSSE({ event: current.status, data: JSON.stringify(current), id: sent })
        }
        if (FINAL_STATUSES.has(current.status)) break
        const { changed, progress } = await signal.next()
        const view = progress && progressView(progress, current)
        if (view) await stream.writeSSE({ event: "progress", data: JSON.stringify(view) })
        // The event is on the store's queue too; catching up makes sure the store has applied it.
        if (changed) current = (await store.getTask(taskId, { catchUp: true, owner })) ?? current
      }
    } catch (err) {
      log.warn("task stream ended early", { taskId, err })
    } finally {
      clearInterval(heartbeat)
      unwatch()
    }
  })
}

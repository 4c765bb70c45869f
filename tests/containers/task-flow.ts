// Clients that keep submitting reviews, and reading them back, while containers are replaced under them. Each
// behaves as a patient client would: a refused submission is tried again after a short back-off, for at most
// GIVE_UP_MS, so every task a client meant to submit is accepted in the end, or the run fails. What each try
// met is counted per phase: the figures of a deployment.
import { expect } from "bun:test"
import { FINAL_STATUSES, type TaskRecord } from "../../shared/contracts.ts"

type Kind = "submit" | "read"
/** `ok` is a 202 for a submission and a 200 for a read; `refused` is a connection the gateway did not take. */
type Outcome = "ok" | "503" | "refused" | `${number}`

export interface PhaseFigures {
  phase: string
  submit: Record<string, number>
  read: Record<string, number>
  /** The longest stretch from a failed try to the next success, per kind, in ms. */
  longestOutageMs: Record<Kind, number>
}

const GIVE_UP_MS = 60_000
const REVIEWS = [
  "This is terrible, awful and sad.",
  "Lovely, great and happy!",
  "Ужасный сервис, всё сломано.",
]

export class TaskFlow {
  readonly accepted: string[] = []
  private readonly phases: PhaseFigures[] = []
  private readonly outageSince: Partial<Record<Kind, number>> = {}
  private stopped = false
  private clients: Promise<void>[] = []
  private progress = Promise.withResolvers<void>()

  constructor(
    private readonly url: (path: string) => string,
    /** Bounds the run whatever happens: no client submits more than this many tasks in all. */
    private readonly maxTasks = 20_000,
  ) {
    this.enter("steady")
  }

  start(clients = 4): this {
    this.clients = Array.from({ length: clients }, () => this.client())
    return this
  }

  /** Count what follows under this name (e.g. "worker replaced"). */
  enter(phase: string): void {
    this.phases.push({ phase, submit: {}, read: {}, longestOutageMs: { submit: 0, read: 0 } })
  }

  /** Resolve once `count` more tasks have been accepted, and read back, from now. */
  async flowing(count = 50): Promise<void> {
    const target = this.accepted.length + count
    while (this.accepted.length < target) {
      if (this.stopped) throw new Error("the clients stopped")
      await this.progress.promise
    }
  }

  async stop(): Promise<PhaseFigures[]> {
    this.stopped = true
    await Promise.all(this.clients)
    return this.phases
  }

  private async client(): Promise<void> {
    try {
      while (!this.stopped && this.accepted.length < this.maxTasks) {
        this.accepted.push(await this.submit(REVIEWS[this.accepted.length % REVIEWS.length] ?? ""))
        await this.read(this.accepted[Math.floor(Math.random() * this.accepted.length)] ?? "")
        this.progress.resolve()
        this.progress = Promise.withResolvers()
      }
    } finally {
      this.stopped = true
      this.progress.resolve()
    }
  }

  private async submit(review: string): Promise<string> {
    const deadline = Date.now() + GIVE_UP_MS
    for (;;) {
      const res = await this.request("submit", "/polarities", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ review }),
      })
      if (res?.status === 202) return ((await res.json()) as { task_id: string }).task_id
      if (Date.now() > deadline) throw new Error(`a submission was refused for ${GIVE_UP_MS} ms`)
      await Bun.sleep(res?.status === 503 ? 100 : 50)
    }
  }

  /** One read, not retried: a 503 or a refused connection is what a client would see, and is counted. */
  private async read(taskId: string): Promise<void> {
    const res = await this.request("read", `/polarities/tasks/${taskId}`)
    await res?.body?.cancel()
  }

  private async request(kind: Kind, path: string, init?: RequestInit): Promise<Response | undefined> {
    const res = await fetch(this.url(path), init).catch(() => undefined)
    const ok = res?.status === (kind === "submit" ? 202 : 200)
    const outcome: Outcome = !res ? "refused" : ok ? "ok" : res.status === 503 ? "503" : `${res.status}`
    const figures = this.phases.at(-1) as PhaseFigures
    figures[kind][outcome] = (figures[kind][outcome] ?? 0) + 1
    const since = this.outageSince[kind]
    if (!ok && since === undefined) this.outageSince[kind] = performance.now()
    if (ok && since !== undefined) {
      const lasted = Math.round(performance.now() - since)
      figures.longestOutageMs[kind] = Math.max(figures.longestOutageMs[kind], lasted)
      delete this.outageSince[kind]
    }
    if (!ok && res) await res.body?.cancel()
    return ok ? res : undefined
  }
}

/** Every task's record, up to 1,000 per request, each held until final (or `waitSeconds`). */
export async function lookupAll(
  url: (path: string) => string,
  taskIds: string[],
  waitSeconds = 30,
): Promise<(TaskRecord | null)[]> {
  const records: (TaskRecord | null)[] = []
  for (let at = 0; at < taskIds.length; at += 1000) {
    const res = await fetch(url(`/polarities/tasks/lookup?wait=${waitSeconds}`), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ task_ids: taskIds.slice(at, at + 1000) }),
    })
    expect(res.status).toBe(200)
    records.push(...((await res.json()) as { tasks: (TaskRecord | null)[] }).tasks)
  }
  return records
}

/** How the tasks ended: counts by status, `missing` for a task the store does not know. */
export function tally(records: (TaskRecord | null)[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const record of records) {
    const key = record ? record.status : "missing"
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}

export const isFinal = (record: TaskRecord | null) => record !== null && FINAL_STATUSES.has(record.status)

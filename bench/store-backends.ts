// What applying events costs on each status-store backend, without the broker: TASKS tasks' events (PENDING,
// STARTED, SUCCESS) in batches of BATCH, as the store commits one turn of messages; on SQLite, and on PostgreSQL
// with one store and with two stores on one database taking batches at once (replicas). The events of a task
// go to different batches, so on two replicas one task's events are applied concurrently, as in production.
// `bun bench/store-backends.ts [tasks]`; prints one line per setup.
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { openPostgresStore } from "../services/status-store/postgres.ts"
import { openSqliteStore } from "../services/status-store/sqlite.ts"
import type { StatusStore } from "../services/status-store/store.ts"
import type { TaskEvent } from "../shared/contracts.ts"
import { createTestDatabase } from "../tests/postgres.ts"

const TASKS = Number(process.argv[2] ?? 10_000)
const BATCH = 200

function eventsOf(taskId: string, at: number): TaskEvent[] {
  return [
    {
      task_id: taskId,
      state: "PENDING",
      attempt: 0,
      run: 1,
      at,
      kind: "polarity:review",
      input: { review: "x" },
    },
    { task_id: taskId, state: "STARTED", attempt: 1, run: 1, at: at + 1, worker: "bench:1" },
    {
      task_id: taskId,
      state: "SUCCESS",
      attempt: 1,
      run: 1,
      at: at + 2,
      started_at: at + 1,
      result: { score: 1, comparative: 1, polarity: "positive", positive: [], negative: [], language: "en" },
    },
  ]
}

/** Each state's events in batches, the states one after another: a task's three events are in three batches. */
function batches(): TaskEvent[][] {
  const now = Date.now()
  const histories = Array.from({ length: TASKS }, (_, i) => eventsOf(Bun.randomUUIDv7(), now + i))
  const out: TaskEvent[][] = []
  for (const stage of [0, 1, 2]) {
    const events = histories.map((history) => history[stage] as TaskEvent)
    for (let from = 0; from < events.length; from += BATCH) out.push(events.slice(from, from + BATCH))
  }
  return out
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0

async function run(label: string, stores: StatusStore[]): Promise<void> {
  const queue = batches()
  const total = queue.length * BATCH
  const commits: number[] = []
  const started = performance.now()
  await Promise.all(
    stores.map(async (store) => {
      for (let batch = queue.shift(); batch; batch = queue.shift()) {
        const t = performance.now()
        await store.applyEvents(batch)
        commits.push(performance.now() - t)
      }
    }),
  )
  const seconds = (performance.now() - started) / 1000
  const counts = await stores[0]?.statusCounts()
  commits.sort((a, b) => a - b)
  console.log(
    `${label}: ${Math.round(total / seconds)} events/s, a batch of ${BATCH} p50 ${quantile(commits, 0.5).toFixed(1)} ms, ` +
      `p99 ${quantile(commits, 0.99).toFixed(1)} ms; SUCCESS ${counts?.SUCCESS} of ${TASKS}`,
  )
}

async function onSqlite(synchronous: "FULL" | "NORMAL"): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "store-backends-"))
  const store = openSqliteStore(join(dir, "store.sqlite"), synchronous)
  try {
    await run(`SQLite (${synchronous})`, [store])
  } finally {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

async function onPostgres(replicas: number): Promise<void> {
  await using database = await createTestDatabase("bench_store")
  const stores = await Promise.all(Array.from({ length: replicas }, () => openPostgresStore(database.url, 4)))
  try {
    await run(`PostgreSQL, ${replicas} store${replicas > 1 ? "s" : ""} on one database`, stores)
  } finally {
    await Promise.all(stores.map((store) => store.close()))
  }
}

console.log(`${TASKS} tasks, ${TASKS * 3} events, batches of ${BATCH}`)
await onSqlite("FULL")
await onSqlite("NORMAL")
await onPostgres(1)
await onPostgres(2)

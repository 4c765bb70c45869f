// The status store's figures for the dashboard, on the database alone and on every backend: they must agree with
// a scan of the tasks whatever order the events come in, and every read must stay an index lookup with 100,000
// tasks.
import { Database } from "bun:sqlite"
import { describe, expect, test } from "bun:test"
import { latencyBucket, percentile } from "../services/status-store/dashboard.ts"
import type { StatusStore } from "../services/status-store/store.ts"
import type { TaskEvent, TaskKind, WorkerHeartbeat } from "../shared/contracts.ts"
import { openTestDatabase, STORE_BACKENDS, type StoreBackend, type TestDatabase } from "./store-backends.ts"

const T0 = 1_800_000_000_000
const idOf = (i: number) => `01a21300-0000-7000-8000-${String(i).padStart(12, "0")}`

function pending(i: number, at: number, kind: TaskKind = "polarity:review"): TaskEvent {
  return {
    task_id: idOf(i),
    state: "PENDING",
    attempt: 0,
    run: 1,
    at,
    kind,
    input: { review: `review ${i}` },
  }
}
function success(i: number, startedAt: number, at: number, attempt = 1): TaskEvent {
  const result = {
    score: 1,
    comparative: 1,
    polarity: "positive" as const,
    positive: [],
    negative: [],
    language: "en" as const,
  }
  return { task_id: idOf(i), state: "SUCCESS", attempt, run: 1, at, started_at: startedAt, result }
}
function failure(i: number, startedAt: number, at: number, attempt = 1): TaskEvent {
  return {
    task_id: idOf(i),
    state: "FAILURE",
    attempt,
    run: 1,
    at,
    started_at: startedAt,
    error: "Error: boom",
  }
}
function retry(i: number, startedAt: number, at: number, attempt = 1): TaskEvent {
  return {
    task_id: idOf(i),
    state: "RETRY",
    attempt,
    run: 1,
    at,
    started_at: startedAt,
    error: "Error: once",
    retry_at: at + 100,
  }
}

/** Task i's whole history: most succeed, every fifth is retried first, every seventh fails, a few stay queued. */
function historyOf(i: number): TaskEvent[] {
  const t = T0 + i * 10
  const kind: TaskKind = i % 3 === 0 ? "document:sentences" : "polarity:review"
  if (i % 11 === 0) return [pending(i, t, kind)]
  if (i % 7 === 0) return [pending(i, t, kind), failure(i, t + 2, t + 5)]
  if (i % 5 === 0) return [pending(i, t, kind), retry(i, t + 1, t + 2), success(i, t + 3, t + 4, 2)]
  return [
    pending(i, t, kind),
    { task_id: idOf(i), state: "STARTED", attempt: 1, run: 1, at: t + 1, worker: "w:1" },
    success(i, t + 1, t + 3),
  ]
}

function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items]
  let state = seed
  for (let i = out.length - 1; i > 0; i--) {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31
    const j = state % (i + 1)
    ;[out[i], out[j]] = [out[j] as T, out[i] as T]
  }
  return out
}

async function scanCounts(database: TestDatabase) {
  const rows = await database.query<{ status: string; tasks: number }>(
    "SELECT status, CAST(count(*) AS INTEGER) AS tasks FROM tasks GROUP BY status",
  )
  return Object.fromEntries(rows.map((row) => [row.status, row.tasks]))
}

async function withDatabase(
  backend: StoreBackend,
  run: (db: StatusStore, database: TestDatabase) => Promise<void>,
) {
  await using database = await openTestDatabase(backend)
  await run(database.store, database)
}

const nonZero = (counts: Record<string, number>) =>
  Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0))

describe.each(STORE_BACKENDS)("on %s", (backend) => {
  describe("counts per status", () => {
    test("equal a scan of the tasks after events in any order, repeated", async () => {
      const events = Array.from({ length: 300 }, (_, i) => historyOf(i)).flat()
      for (const seed of [1, 2, 3]) {
        await withDatabase(backend, async (db, database) => {
          const duplicates = events.filter((_, i) => i % 4 === 0)
          const all = shuffled([...events, ...duplicates], seed)
          for (let i = 0; i < all.length; i += 37) await db.applyEvents(all.slice(i, i + 37))
          expect(nonZero((await db.stats(T0, 1, 60)).counts)).toEqual(await scanCounts(database))
          expect((await db.stats(T0, 1, 60)).counts).toMatchObject({ PENDING: 28, FAILURE: 39, SUCCESS: 233 })
        })
      }
    })
  })

  describe("throughput and latency", () => {
    test("per second: submitted, succeeded, failed and retried, and rates over the last 10 seconds", async () => {
      await withDatabase(backend, async (db) => {
        const events = [
          pending(1, T0),
          pending(2, T0 + 10),
          pending(3, T0 + 20),
          success(1, T0 + 100, T0 + 1100),
          retry(2, T0 + 100, T0 + 1200),
          success(2, T0 + 2000, T0 + 2100, 2),
          failure(3, T0 + 2000, T0 + 2500),
        ]
        await db.applyEvents(events)
        const second = T0 / 1000
        const stats = await db.stats(T0 + 3000, 600, 300)
        expect(stats.series).toEqual({
          t: [second, second + 1, second + 2],
          submitted: [3, 0, 0],
          succeeded: [0, 1, 1],
          failed: [0, 0, 1],
          retried: [0, 1, 0],
        })
        expect(stats.rates).toEqual({
          window_s: 10,
          submitted: 0.3,
          succeeded: 0.2,
          failed: 0.1,
          retried: 0.1,
        })
        // Seconds before the series' window are left out.
        expect((await db.stats(T0 + 3000, 2, 300)).series.t).toEqual([second + 2])
      })
    })

    test("percentiles of wait, run and total, within a bucket's 19 %", async () => {
      await withDatabase(backend, async (db) => {
        const events: TaskEvent[] = []
        // Waits of 1..100 ms, runs of 10 × that, for 100 tasks.
        for (let i = 1; i <= 100; i++) {
          events.push(pending(i, T0), success(i, T0 + i, T0 + i + 10 * i))
        }
        await db.applyEvents(shuffled(events, 7))
        const { latency } = await db.stats(T0 + 5000, 60, 300)
        const near = (value: number | undefined, exact: number) => {
          expect(value).toBeGreaterThanOrEqual(exact / 1.19)
          expect(value).toBeLessThanOrEqual(exact * 1.19)
        }
        expect(latency.wait?.count).toBe(100)
        near(latency.wait?.p50, 50)
        near(latency.wait?.p90, 90)
        near(latency.run?.p50, 500)
        near(latency.run?.p99, 990)
        near(latency.total?.p90, 990)
        // Tasks that ended before the window are left out.
        expect((await db.stats(T0 + 3_600_000, 60, 300)).latency).toEqual({
          window_s: 300,
          wait: null,
          run: null,
          total: null,
        })
      })
    })

    test("a task whose outcome came before its submission is measured once, when both are known", async () => {
      await withDatabase(backend, async (db) => {
        await db.applyEvents([success(1, T0 + 10, T0 + 30)])
        expect((await db.stats(T0 + 100, 60, 300)).latency.total).toBeNull()
        await db.applyEvents([pending(1, T0)])
        await db.applyEvents([success(1, T0 + 10, T0 + 30)])
        expect((await db.stats(T0 + 100, 60, 300)).latency.total).toEqual({
          count: 1,
          p50: expect.any(Number),
          p90: expect.any(Number),
          p99: expect.any(Number),
        })
      })
    })
  })

  describe("a task's detail", () => {
    test("its input, run and every event once, in order, with worker, errors and times", async () => {
      await withDatabase(backend, async (db) => {
        const history = [
          pending(1, T0),
          {
            task_id: idOf(1),
            state: "STARTED",
            attempt: 1,
            run: 1,
            at: T0 + 1,
            worker: "host:42",
          } as TaskEvent,
          retry(1, T0 + 1, T0 + 2),
          success(1, T0 + 200, T0 + 210, 2),
        ]
        await db.applyEvents(shuffled([...history, ...history], 3))
        const iso = (ms: number) => new Date(ms).toISOString()
        expect(await db.detail(idOf(1))).toEqual({
          task: expect.objectContaining({ task_id: idOf(1), status: "SUCCESS", attempts: 2 }),
          input: { review: "review 1" },
          run: 1,
          timeline: [
            {
              at: iso(T0),
              state: "PENDING",
              attempt: 0,
              run: 1,
              worker: null,
              error: null,
              started_at: null,
              retry_at: null,
            },
            {
              at: iso(T0 + 1),
              state: "STARTED",
              attempt: 1,
              run: 1,
              worker: "host:42",
              error: null,
              started_at: null,
              retry_at: null,
            },
            {
              at: iso(T0 + 2),
              state: "RETRY",
              attempt: 1,
              run: 1,
              worker: null,
              error: "Error: once",
              started_at: iso(T0 + 1),
              retry_at: iso(T0 + 102),
            },
            {
              at: iso(T0 + 210),
              state: "SUCCESS",
              attempt: 2,
              run: 1,
              worker: null,
              error: null,
              started_at: iso(T0 + 200),
              retry_at: null,
            },
          ],
        })
        expect(await db.detail(idOf(2))).toBeNull()
      })
    })
  })

  describe("with 100,000 tasks", () => {
    test("every page, filter, search and figure reads the right rows of 100,000 (their timings printed, not asserted)", async () => {
      await withDatabase(backend, async (db) => {
        const startedAt = performance.now()
        for (let from = 0; from < 100_000; from += 5000) {
          await db.applyEvents(Array.from({ length: 5000 }, (_, k) => historyOf(from + k)).flat())
        }
        const loadMs = performance.now() - startedAt

        const timed = async <T>(read: () => Promise<T>): Promise<{ value: T; ms: number }> => {
          await read()
          const t = performance.now()
          const value = await read()
          return { value, ms: performance.now() - t }
        }
        const newest = await timed(() => db.list({}, 51))
        const rare = await timed(() => db.list({ status: "PENDING", kind: "document:sentences" }, 51))
        const byKind = await timed(() => db.list({ kind: "document:sentences" }, 51, idOf(50_000)))
        const search = await timed(() => db.list({ idPrefix: idOf(77_777).slice(0, 35) }, 51))
        const stats = await timed(() => db.stats(T0 + 1_000_000, 600, 300))
        console.log(
          `[figures] 100k tasks loaded in ${Math.round(loadMs)} ms; newest ${newest.ms.toFixed(2)} ms, status+kind ${rare.ms.toFixed(2)} ms, kind page ${byKind.ms.toFixed(2)} ms, id search ${search.ms.toFixed(2)} ms, stats ${stats.ms.toFixed(2)} ms`,
        )
        expect(newest.value.map((row) => row.task_id)[0]).toBe(idOf(99_999))
        expect(rare.value.every((row) => row.status === "PENDING" && row.kind === "document:sentences")).toBe(
          true,
        )
        expect(rare.value).toHaveLength(51)
        expect(byKind.value[0]?.task_id).toBe(idOf(49_998))
        expect(search.value.map((row) => row.task_id)).toEqual(
          Array.from({ length: 10 }, (_, k) => idOf(77_779 - k)).filter((id) =>
            id.startsWith(idOf(77_777).slice(0, 35)),
          ),
        )
        expect(stats.value.counts.PENDING + stats.value.counts.SUCCESS + stats.value.counts.FAILURE).toBe(
          100_000,
        )
      })
    })
  })

  describe("workers", () => {
    const heartbeat = (worker: string, fields: Partial<WorkerHeartbeat> = {}): WorkerHeartbeat => ({
      worker,
      host: "host",
      pid: 42,
      state: "online",
      prefetch: 64,
      in_hand: 3,
      succeeded: 10,
      failed: 1,
      retried: 2,
      started_at: T0,
      sent_at: T0 + 1000,
      interval_ms: 1000,
      ...fields,
    })

    test("online while heartbeats come, lost after the set number of missed ones, offline when stopped", async () => {
      await withDatabase(backend, async (db) => {
        await db.recordHeartbeats([heartbeat("a:1"), heartbeat("b:2"), heartbeat("c:3")], T0 + 1000)
        await db.recordHeartbeats(
          [heartbeat("a:1", { in_hand: 5, sent_at: T0 + 4000 }), heartbeat("c:3", { state: "offline" })],
          T0 + 4000,
        )
        const workers = await db.workers(T0 + 4500, 3)
        expect(workers.map((w) => [w.worker, w.status, w.in_hand])).toEqual([
          ["a:1", "online", 5],
          ["b:2", "lost", 3],
          ["c:3", "offline", 3],
        ])
        expect(workers[0]).toEqual({
          worker: "a:1",
          host: "host",
          pid: 42,
          prefetch: 64,
          in_hand: 5,
          succeeded: 10,
          failed: 1,
          retried: 2,
          interval_ms: 1000,
          status: "online",
          started_at: new Date(T0).toISOString(),
          last_heartbeat_at: new Date(T0 + 4000).toISOString(),
        })
        await db.prune(T0, T0 + 2000)
        expect((await db.workers(T0 + 4500, 3)).map((w) => w.worker)).toEqual(["a:1", "c:3"])
      })
    })
  })
})

describe("on sqlite", () => {
  test("a database from before them starts from a scan of its tasks", async () => {
    await using database = await openTestDatabase("sqlite")
    await database.store.applyEvents([pending(1, T0), pending(2, T0), success(2, T0 + 1, T0 + 2)])
    await database.store.close()
    // As a version-3 database would be: the figures' tables not there yet, and the rank still called progress.
    const raw = new Database(database.path)
    raw.run(`DROP TABLE status_counts; DROP TABLE throughput; DROP TABLE latency_buckets; ALTER TABLE inbox DROP COLUMN detail; ALTER TABLE inbox DROP COLUMN at; ALTER TABLE inbox DROP COLUMN run;
      DROP TABLE workers; DROP INDEX tasks_by_kind; DROP INDEX tasks_by_status_kind;
      ALTER TABLE tasks DROP COLUMN progress_report; ALTER TABLE tasks RENAME COLUMN rank TO progress;
      DROP INDEX tasks_by_owner; DROP INDEX tasks_by_owner_status; ALTER TABLE tasks DROP COLUMN owner;
      ALTER TABLE groups DROP COLUMN owner; DROP TABLE owner_in_flight; DROP TABLE held_events;
      DROP INDEX tasks_final_by_end; DROP INDEX tasks_scheduled_by_eta; ALTER TABLE tasks DROP COLUMN eta;
      DROP TABLE schedules; DROP TABLE schedule_runs;
      DROP TABLE webhook_deliveries; DROP TABLE webhook_attempts; ALTER TABLE tasks DROP COLUMN callback_url;
      PRAGMA user_version = 3`)
    // And without the tables of later migrations, whichever they are.
    const v3Tables = ["tasks", "inbox", "groups", "idempotency_keys"]
    for (const { name } of raw
      .query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table'")
      .all())
      if (!v3Tables.includes(name)) raw.run(`DROP TABLE ${name}`)
    raw.close()
    const db = await database.reopen()
    expect(nonZero((await db.stats(T0, 1, 60)).counts)).toEqual({ PENDING: 1, SUCCESS: 1 })
  })

  test("the listing's query plans use an index for every filter", async () => {
    await withDatabase("sqlite", async (_, database) => {
      const raw = new Database(database.path, { readonly: true })
      try {
        const plan = (where: string) =>
          raw
            .query<{ detail: string }, []>(
              `EXPLAIN QUERY PLAN SELECT * FROM tasks WHERE ${where} ORDER BY task_id DESC LIMIT 51`,
            )
            .all()
            .map((row) => row.detail)
            .join("; ")
        expect(plan("task_id < '~' AND status = 'PENDING'")).toContain("USING INDEX tasks_by_status")
        expect(plan("task_id < '~' AND kind = 'polarity:review'")).toContain("USING INDEX tasks_by_kind")
        expect(plan("task_id < '~' AND status = 'PENDING' AND kind = 'polarity:review'")).toContain(
          "USING INDEX tasks_by_status_kind",
        )
        expect(plan("task_id < '~' AND owner = 'alice'")).toContain("USING INDEX tasks_by_owner ")
        expect(plan("task_id < '~' AND owner = 'alice' AND status = 'PENDING'")).toContain(
          "USING INDEX tasks_by_owner_status",
        )
        expect(plan("task_id < '~' AND task_id >= '01a2' AND task_id < '01a2' || '~'")).toContain(
          "USING INDEX sqlite_autoindex_tasks_1",
        )
        for (const where of ["task_id < '~'", "task_id < '~' AND kind = 'test:flaky'"]) {
          expect(plan(where)).not.toContain("USE TEMP B-TREE")
        }
      } finally {
        raw.close()
      }
    })
  })
})

describe("latency buckets", () => {
  test("buckets: 0 holds below 1 ms, then four per doubling", () => {
    expect([0, 0.5, 1, 1.18, 1.19, 2, 1000].map(latencyBucket)).toEqual([0, 0, 1, 1, 2, 5, 40])
    expect(percentile([[0, 10]], 0.5)).toBe(0.5)
    expect(percentile([], 0.5)).toBe(0)
  })
})

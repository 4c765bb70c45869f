// Several store replicas on one database, applying the events of the same tasks at the same time, in any order,
// some of them twice (a redelivery to another replica): the tasks, the inbox, the groups and every dashboard
// figure must come out exactly as one store applying them one by one makes them.
import { describe, expect, test } from "bun:test"
import type { StatusStore } from "../services/status-store/store.ts"
import type { PolarityResult, TaskEvent } from "../shared/contracts.ts"
import { openTestDatabase, STORE_BACKENDS } from "./store-backends.ts"

const T0 = 1_800_000_000_000
const TASKS = 240
const idOf = (i: number) => `01a21400-0000-7000-8000-${String(i).padStart(12, "0")}`
const GROUP = idOf(99_999)
const RESULT: PolarityResult = {
  score: 1,
  comparative: 1,
  polarity: "positive",
  positive: [],
  negative: [],
  language: "en",
}

/** Task i's history: queued, failed, retried or not; some in a group; owned by one of two keys, or none. */
function historyOf(i: number): TaskEvent[] {
  const task_id = idOf(i)
  const t = T0 + i * 37
  // A group's tasks are submitted together, by one key.
  const inGroup = i < 20
  const owner = inGroup ? "alice" : ["alice", "bob", undefined][i % 3]
  const pending: TaskEvent = {
    task_id,
    state: "PENDING",
    attempt: 0,
    run: 1,
    at: inGroup ? T0 : t,
    kind: "polarity:review",
    input: { review: `review ${i}` },
    ...(owner && { owner }),
    ...(inGroup && { group: { group_id: GROUP, index: i, size: 20 } }),
  }
  const started = (attempt: number, at: number): TaskEvent => ({
    task_id,
    state: "STARTED",
    attempt,
    run: 1,
    at,
    worker: `w:${i % 4}`,
  })
  if (i % 13 === 0) return [pending]
  if (i % 7 === 0)
    return [
      pending,
      started(1, t + 5),
      { task_id, state: "FAILURE", attempt: 1, run: 1, at: t + 9, started_at: t + 5, error: "Error: boom" },
    ]
  const retried: TaskEvent[] =
    i % 5 === 0
      ? [
          started(1, t + 2),
          {
            task_id,
            state: "RETRY",
            attempt: 1,
            run: 1,
            at: t + 4,
            started_at: t + 2,
            error: "Error: once",
            retry_at: t + 6,
          },
        ]
      : []
  const attempt = retried.length > 0 ? 2 : 1
  return [
    pending,
    ...retried,
    started(attempt, t + 7),
    { task_id, state: "SUCCESS", attempt, run: 1, at: t + 11 + (i % 50), started_at: t + 7, result: RESULT },
  ]
}

function random(seed: number) {
  let state = seed
  return (below: number) => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31
    return state % below
  }
}

/** The events shuffled, a tenth of them delivered a second time, cut into batches of 1 to 30. */
function deliveries(events: TaskEvent[], seed: number): TaskEvent[][] {
  const next = random(seed)
  const all = [...events, ...events.filter(() => next(10) === 0)]
  for (let i = all.length - 1; i > 0; i--) {
    const j = next(i + 1)
    ;[all[i], all[j]] = [all[j] as TaskEvent, all[i] as TaskEvent]
  }
  const batches: TaskEvent[][] = []
  for (let from = 0; from < all.length; ) {
    const size = 1 + next(30)
    batches.push(all.slice(from, from + size))
    from += size
  }
  return batches
}

/** Everything a reader can see of the tasks: rows, details, the group, counts, figures, owners' tasks in flight. */
async function everything(store: StatusStore) {
  const ids = Array.from({ length: TASKS }, (_, i) => idOf(i))
  const rows = await store.findMany(ids)
  const details = await Promise.all(ids.map((id) => store.detail(id)))
  return {
    rows,
    details,
    group: await store.findGroup(GROUP),
    counts: await store.statusCounts(),
    stats: await store.stats(T0 + TASKS * 37 + 60_000, 30, 3600),
    inFlight: [await store.inFlight("alice"), await store.inFlight("bob")],
    held: await store.heldBefore(Number.MAX_SAFE_INTEGER, 10),
    workers: await store.workers(T0, 3),
  }
}

describe.each(STORE_BACKENDS)("replicas on one database (%s)", (backend) => {
  test("two stores applying shuffled and redelivered events at once end as one store applying them in order", async () => {
    const events = Array.from({ length: TASKS }, (_, i) => historyOf(i)).flat()
    await using serial = await openTestDatabase(backend)
    for (const event of events) await serial.store.applyEvents([event], T0)
    const expected = await everything(serial.store)
    expect(expected.counts).toMatchObject({ PENDING: 19, FAILURE: 32, SUCCESS: 189 })

    for (const seed of [1, 2]) {
      await using shared = await openTestDatabase(backend)
      const replicas = [shared.store, await shared.openReplica()]
      const queue = deliveries(events, seed)
      const applied = new Map<string, number>()
      // Each replica takes the next batch as soon as it is done with its own: both are in a transaction at once.
      await Promise.all(
        replicas.map(async (replica) => {
          for (let batch = queue.shift(); batch; batch = queue.shift()) {
            const outcome = await replica.applyEvents(batch, T0)
            for (const { event } of outcome.applied) {
              const id = `${event.task_id}:${event.state}:${event.attempt}`
              applied.set(id, (applied.get(id) ?? 0) + 1)
            }
          }
        }),
      )
      expect(await everything(replicas[1] as StatusStore)).toEqual(expected)
      expect([...applied.values()].every((times) => times === 1)).toBe(true)
      expect(applied.size).toBe(events.length)
    }
  }, 120_000)

  test("of two replicas claiming one Idempotency-Key or one schedule occurrence at once, exactly one wins", async () => {
    await using shared = await openTestDatabase(backend)
    const replicas = [shared.store, await shared.openReplica()] as const
    const claimOf = (key: string, replica: number, now = T0) => ({
      key,
      fingerprint: `request of replica ${replica}`,
      group_id: null,
      task_ids: [idOf(replica)],
      lease_until: now + 30_000,
      expires_at: now + 86_400_000,
    })
    for (let n = 0; n < 20; n++) {
      const key = `key-${n}`
      const [first, second] = await Promise.all(
        replicas.map((replica, i) => replica.claimKey(claimOf(key, i), T0)),
      )
      // The loser is told the winner's claim; the winner gets null.
      expect([first, second].filter((held) => held === null)).toHaveLength(1)
      expect(first ?? second).toEqual(claimOf(key, first === null ? 0 : 1))
      const won = await Promise.all(
        replicas.map((replica, i) =>
          replica.schedules.claimRun("every-minute", n, idOf(i), `replica-${i}`, T0),
        ),
      )
      expect(won.filter(Boolean)).toHaveLength(1)
    }
    // An expired claim is taken over by the next request, once.
    const later = T0 + 86_400_000
    const retaken = await Promise.all(
      replicas.map((replica, i) => replica.claimKey(claimOf("key-0", i, later), later)),
    )
    expect(retaken.filter((held) => held === null)).toHaveLength(1)
  })

  test("a revoke and a worker's STARTED of the same task at once: the row agrees with the revoke's answer", async () => {
    await using shared = await openTestDatabase(backend)
    const [revoker, worker] = [shared.store, await shared.openReplica()]
    const tasks = Array.from({ length: 30 }, (_, i) => historyOf(i * 2 + 1)[0] as TaskEvent)
    await revoker.applyEvents(tasks, T0)
    const outcomes = await Promise.all(
      tasks.map(async ({ task_id }, i) => {
        const start: TaskEvent = { task_id, state: "STARTED", attempt: 1, run: 1, at: T0 + 1, worker: "w:1" }
        const [revoked] = await Promise.all([
          revoker.revoke(task_id, T0 + 1, false),
          worker.applyEvents([start], T0),
        ])
        return { i, outcome: revoked.outcome, status: (await worker.find(task_id))?.status }
      }),
    )
    for (const { outcome, status } of outcomes)
      expect({ outcome, status }).toEqual(
        outcome === "revoked" ? { outcome, status: "REVOKED" } : { outcome: "started", status: "STARTED" },
      )
    const counts = await revoker.statusCounts()
    const revoked = outcomes.filter(({ outcome }) => outcome === "revoked").length
    expect({ REVOKED: counts.REVOKED, STARTED: counts.STARTED, PENDING: counts.PENDING }).toEqual({
      REVOKED: revoked,
      STARTED: tasks.length - revoked,
      PENDING: 0,
    })
  })
})

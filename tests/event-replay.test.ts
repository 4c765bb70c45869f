import { Database } from "bun:sqlite"
import { describe, expect, test } from "bun:test"
import { rmSync } from "node:fs"
import { loadStoreConfig, start as startStore } from "../services/status-store.ts"
import { eventId, type PolarityResult, type TaskEvent } from "../shared/contracts.ts"
import { eventRoutingKey } from "../shared/topology.ts"
import { deleteTopology, rawChannel, testEnv } from "./support.ts"

const TASKS = 200

/** A deterministic history per task: plain success, success after a retry, failure then a replay, no retries. */
function historyOf(i: number): TaskEvent[] {
  const task_id = `01a21300-0000-7000-8000-${String(i).padStart(12, "0")}`
  const t = 1_700_000_000_000 + i * 1000
  const base = { task_id, run: 1 }
  const pending: TaskEvent = {
    ...base,
    state: "PENDING",
    attempt: 0,
    at: t,
    kind: "polarity:review",
    input: { review: `r${i}` },
  }
  const started = (attempt: number, at: number, run = 1): TaskEvent => ({
    ...base,
    run,
    state: "STARTED",
    attempt,
    at,
    worker: "w",
  })
  const retry = (attempt: number, at: number): TaskEvent => ({
    ...base,
    state: "RETRY",
    attempt,
    at,
    started_at: at - 1,
    error: `boom ${attempt}`,
    retry_at: at + 5,
  })
  const result: PolarityResult = {
    score: i % 7,
    comparative: 0.5,
    polarity: "positive",
    positive: ["good"],
    negative: [],
    language: "en",
  }
  const success = (attempt: number, at: number, run = 1): TaskEvent => ({
    ...base,
    run,
    state: "SUCCESS",
    attempt,
    at,
    started_at: at - 1,
    result,
  })
  const failure = (attempt: number, at: number): TaskEvent => ({
    ...base,
    state: "FAILURE",
    attempt,
    at,
    started_at: at - 1,
    error: `gave up at ${attempt}`,
  })
  switch (i % 4) {
    case 0:
      return [pending, started(1, t + 1), success(1, t + 2)]
    case 1:
      return [pending, started(1, t + 1), retry(1, t + 2), started(2, t + 10), success(2, t + 11)]
    case 2:
      return [
        pending,
        started(1, t + 1),
        retry(1, t + 2),
        started(2, t + 10),
        failure(2, t + 11),
        { ...pending, run: 3, attempt: 2, at: t + 50 },
        started(3, t + 51, 3),
        success(3, t + 52, 3),
      ]
    default:
      return [pending, started(1, t + 1), failure(1, t + 2)]
  }
}

const history = Array.from({ length: TASKS }, (_, i) => historyOf(i)).flat()
const distinctEvents = new Set(history.map(eventId)).size

function shuffledWithDuplicates(events: TaskEvent[]): TaskEvent[] {
  const withDuplicates = events.flatMap((e) => (Math.random() < 0.3 ? [e, e] : [e]))
  for (let i = withDuplicates.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[withDuplicates[i], withDuplicates[j]] = [withDuplicates[j] as TaskEvent, withDuplicates[i] as TaskEvent]
  }
  return withDuplicates
}

/** Feed the events to a fresh status store through the broker, in batches of random size; return its rows. */
async function applyThroughStore(events: TaskEvent[]) {
  // The histories ended in 2023: under any retention they would expire while they are fed in.
  const { env, dataDir } = testEnv("event-replay", { RESULT_EXPIRES: "never" })
  const store = await startStore(loadStoreConfig(env))
  try {
    await using amqp = await rawChannel()
    for (let i = 0; i < events.length; ) {
      const size = 1 + Math.floor(Math.random() * 50)
      const batch = events.slice(i, i + size)
      i += size
      // Each state under its own routing key, as publishers send them: the store takes a key's state only.
      for (const state of new Set(batch.map((event) => event.state))) {
        await amqp.channel.basicPublish(
          `${env.AMQP_PREFIX}events`,
          eventRoutingKey(state),
          JSON.stringify({ events: batch.filter((event) => event.state === state) }),
          { type: "task-events", deliveryMode: 2 },
        )
      }
    }
    const db = new Database(env.DATABASE_PATH ?? "", { readonly: true })
    try {
      const applied = () => (db.query("SELECT count(*) AS n FROM inbox").get() as { n: number }).n
      const deadline = Date.now() + 30_000
      while (applied() < distinctEvents && Date.now() < deadline) await Bun.sleep(20)
      return db.query("SELECT * FROM tasks ORDER BY task_id").all()
    } finally {
      db.close()
    }
  } finally {
    await store.stop()
    await deleteTopology(env)
    rmSync(dataDir, { recursive: true, force: true })
  }
}

describe("events replayed in random orders with duplicates", () => {
  test("converge on the same final states every time", async () => {
    const inOrder = await applyThroughStore(history)
    expect(inOrder).toHaveLength(TASKS)
    expect(inOrder.map((row) => (row as { status: string }).status)).toEqual(
      Array.from({ length: TASKS }, (_, i) => (i % 4 === 3 ? "FAILURE" : "SUCCESS")),
    )
    for (let trial = 0; trial < 3; trial++) {
      expect(await applyThroughStore(shuffledWithDuplicates(history))).toEqual(inOrder)
    }
  })
})

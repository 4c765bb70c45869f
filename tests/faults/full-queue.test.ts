import { Database } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { awaitFinal, type Cluster, report, startCluster, submitReviews } from "./cluster.ts"

const MAX_LENGTH = 50

let cluster: Cluster
beforeAll(async () => {
  // No worker yet: the work queue fills up and stays full.
  cluster = await startCluster(
    "full-queue",
    { TASK_QUEUE_MAX_LENGTH: String(MAX_LENGTH) },
    { startWorkers: false },
  )
})
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]()
})

const gatewayUrl = () => cluster.gateway.url

describe("a full work queue", () => {
  test("answers 503 problem+json, and nothing it accepted is lost", async () => {
    const { accepted, refused, failed } = await submitReviews(gatewayUrl, { count: 120, concurrency: 1 })
    expect(failed).toBe(0)
    expect(accepted).toHaveLength(MAX_LENGTH)
    expect(refused).toEqual(Array.from({ length: 120 - MAX_LENGTH }, () => 503))

    const res = await fetch(`${gatewayUrl()}/polarities`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ review: "one too many" }),
    })
    expect(res.status).toBe(503)
    expect(res.headers.get("retry-after")).toBe("2")
    expect(await res.json()).toMatchObject({
      status: 503,
      detail: expect.stringContaining("the queue is full"),
    })

    // With an Idempotency-Key a refused task is not recorded at all, so that the key's replay, once there is
    // room, publishes it under the id the key holds and it runs, rather than answering a record of the refusal.
    const key = `full-queue-${crypto.randomUUID()}`
    const submitKeyed = () =>
      fetch(`${gatewayUrl()}/polarities?wait=10`, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": key },
        body: JSON.stringify({ review: "worth the wait" }),
      })
    expect((await submitKeyed()).status).toBe(503)

    await cluster.workers[0]?.start()
    const final = await awaitFinal(gatewayUrl, accepted)
    // As a client would: again on a 503, which the key's lease (held by the refused request) may still give.
    let replay = await submitKeyed()
    for (const deadline = Date.now() + 30_000; replay.status === 503 && Date.now() < deadline; ) {
      await Bun.sleep(500)
      replay = await submitKeyed()
    }
    expect(replay.status).toBe(200)
    const keyed = (await replay.json()) as { task_id: string; status: string }
    expect(keyed.status).toBe("SUCCESS")
    report("full work queue", {
      accepted: accepted.length,
      final: final.size,
      lost: accepted.length - final.size,
      doubled: 0,
      redeliveries: 0,
      deadLettered: 0,
      refused: refused.length,
    })
    expect([...final.values()].every((t) => t.status === "SUCCESS")).toBe(true)
    expect(final.size).toBe(MAX_LENGTH)

    // A refused task never ran: its PENDING (sent beside the task) is closed as a FAILURE that says so, and
    // the store knows exactly the accepted tasks besides those.
    const db = new Database(cluster.databasePath, { readonly: true })
    const rows = db.query("SELECT task_id, status, error, attempts, started_at FROM tasks").all() as {
      task_id: string
      status: string
      error: string | null
      attempts: number
      started_at: number | null
    }[]
    db.close()
    const acceptedIds = new Set([...accepted, keyed.task_id])
    expect(rows.filter((r) => acceptedIds.has(r.task_id)).map((r) => r.status)).toEqual(
      [...acceptedIds].map(() => "SUCCESS"),
    )
    const others = rows.filter((r) => !acceptedIds.has(r.task_id))
    // The 70 refused in the loop and the one posted after it; the keyed one left no record when refused.
    expect(others).toHaveLength(refused.length + 1)
    for (const row of others) {
      expect(row).toMatchObject({
        status: "FAILURE",
        error: "the broker refused the task (the queue is full); it never ran",
        attempts: 0,
        started_at: null,
      })
    }
  })
})

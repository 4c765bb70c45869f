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

    await cluster.workers[0]?.start()
    const final = await awaitFinal(gatewayUrl, accepted)
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

    // A refused task leaves no record behind: the store knows exactly the accepted ones.
    const db = new Database(cluster.databasePath, { readonly: true })
    const known = (db.query("SELECT task_id FROM tasks").all() as { task_id: string }[]).map((r) => r.task_id)
    db.close()
    expect(known.sort()).toEqual([...accepted].sort())
  })
})

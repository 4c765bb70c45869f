import { Database } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import {
  awaitFinal,
  type Cluster,
  queueDepth,
  report,
  sampleStatuses,
  startCluster,
  submitReviews,
  watchFinalEvents,
} from "./cluster.ts"

let cluster: Cluster
beforeAll(async () => {
  cluster = await startCluster("service-crash", {}, { workers: 1 })
})
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]()
})

const gatewayUrl = () => cluster.gateway.url

describe("a service killed with -9 while tasks flow", () => {
  test("the status store: every status converges and none goes backwards", async () => {
    await using finals = await watchFinalEvents(cluster.env)
    const accepted: string[] = []
    const sampler = sampleStatuses(gatewayUrl, () => accepted)
    const load = submitReviews(gatewayUrl, { count: 2000, onAccepted: (id) => accepted.push(id) })
    await Bun.sleep(300)
    await cluster.store.kill()
    await Bun.sleep(300)
    await cluster.store.start()
    await load
    const final = await awaitFinal(gatewayUrl, accepted)
    const { regressions, samples } = await sampler.stop()

    // The database agrees with the API: one row per task, each final.
    const db = new Database(cluster.databasePath, { readonly: true })
    const rows = db.query("SELECT count(*) AS n FROM tasks WHERE status = 'SUCCESS'").get() as { n: number }
    db.close()
    const figures = {
      accepted: accepted.length,
      final: final.size,
      lost: accepted.length - final.size,
      doubled: finals.doubled(),
      redeliveries: 0,
      deadLettered: await queueDepth(cluster.env, `${cluster.env.AMQP_PREFIX}dead-letter.poison`),
      regressions,
      samples,
      successRows: rows.n,
    }
    report("status store kill -9 while events flow", figures)
    expect(figures).toMatchObject({
      lost: 0,
      doubled: 0,
      deadLettered: 0,
      regressions: 0,
      successRows: accepted.length,
    })
    expect(samples).toBeGreaterThan(0)
  })

  test("the gateway: every 202 it gave ends final", async () => {
    await using finals = await watchFinalEvents(cluster.env)
    const load = submitReviews(gatewayUrl, { count: 2000, concurrency: 16 })
    await Bun.sleep(300)
    await cluster.gateway.kill()
    await cluster.gateway.start()
    const { accepted, failed } = await load
    const final = await awaitFinal(gatewayUrl, accepted)
    const figures = {
      accepted: accepted.length,
      final: final.size,
      lost: accepted.length - final.size,
      doubled: finals.doubled(),
      redeliveries: 0,
      deadLettered: 0,
      requestsCutOff: failed,
    }
    report("gateway kill -9 under load", figures)
    expect(figures).toMatchObject({ lost: 0, doubled: 0 })
    expect(accepted.length).toBeGreaterThan(0)
  })
})

// What schedules and webhooks cost, without the broker: the store's firing loop when nothing is due (one indexed
// query per tick), a firing's claim and move-on, and one webhook attempt (sign and POST) to a local receiver.
// `bun bench/scheduling-cost.ts`; prints one line per figure.
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { deliver } from "../services/polarity-worker/webhooks.ts"
import { openSqliteStore } from "../services/status-store/sqlite.ts"
import { AllowedHosts } from "../shared/webhooks.ts"

const SCHEDULES = 1000
const TICKS = 20_000
const FIRINGS = 5000
const WEBHOOKS = 2000

const cpuMs = () => process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000

async function measure(label: string, times: number, work: (i: number) => Promise<unknown>) {
  const [wall, cpu] = [performance.now(), cpuMs()]
  for (let i = 0; i < times; i++) await work(i)
  const perWall = ((performance.now() - wall) * 1000) / times
  const perCpu = ((cpuMs() - cpu) * 1000) / times
  console.log(`${label}: ${perWall.toFixed(1)} µs wall, ${perCpu.toFixed(1)} µs CPU each (${times} times)`)
}

const dir = mkdtempSync(join(tmpdir(), "scheduling-cost-"))
const store = openSqliteStore(join(dir, "store.sqlite"), "NORMAL")
try {
  const now = Date.now()
  const definition = {
    cron: null,
    timezone: null,
    every: 3600,
    missed: "skip" as const,
    task: { kind: "polarity:review" as const, review: "x" },
  }
  for (let i = 0; i < SCHEDULES; i++) {
    await store.schedules.create({
      id: `s${i}`,
      owner: null,
      definition,
      paused: false,
      fromFile: false,
      createdAt: now,
      updatedAt: now,
      nextRunAt: now + 3_600_000,
      lastRunAt: null,
      lastTaskId: null,
    })
  }
  await measure(`a tick with ${SCHEDULES} schedules, none due`, TICKS, () => store.schedules.due(Date.now()))
  await measure("a firing's claim and move-on", FIRINGS, async (i) => {
    const id = `s${i % SCHEDULES}`
    const due = now + 3_600_000 + Math.floor(i / SCHEDULES) * 3_600_000
    await store.schedules.claimRun(id, due, `task-${i}`, "replica", Date.now())
    await store.schedules.advance(id, due, due + 3_600_000, { occurrence: due, taskId: `task-${i}` })
  })
} finally {
  await store.close()
  rmSync(dir, { recursive: true, force: true })
}

const receiver = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch: () => new Response(null, { status: 204 }),
})
const settings = {
  secret: "whsec_c2VjcmV0LW9mLXRoZS1iZW5jaG1hcms=",
  allowed: new AllowedHosts("127.0.0.1"),
  timeoutMs: 5000,
}
const record = { task_id: "01a22a05-7350-7349-b7f1-a04937b6940d", status: "SUCCESS", result: { score: 3 } }
await measure("a webhook attempt (sign, POST, 204)", WEBHOOKS, async (i) => {
  const result = await deliver(
    { delivery_id: `d${i}`, url: `http://127.0.0.1:${receiver.port}/hook`, record },
    settings,
  )
  if (result.outcome !== "delivered") throw new Error(JSON.stringify(result))
})
receiver.stop(true)

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import * as v from "valibot"
import { Autoscaler } from "../services/polarity-worker/autoscaler.ts"
import { loadWorkerConfig } from "../services/polarity-worker.ts"
import { type TaskEvent, WorkerHeartbeat } from "../shared/contracts.ts"
import { WORKER_HEARTBEAT_KEY } from "../shared/topology.ts"
import { ROOT } from "./runtimes.ts"
import {
  eventually,
  rawChannel,
  type Stack,
  startStack,
  submitFlaky,
  waitForFinal,
  watchEvents,
} from "./support.ts"

// The stack's own worker takes reviews only; the pool, a real supervisor process with processes of its own,
// takes the `default` queue, where the slow test tasks go. One task at a time per process, so that a backlog
// builds up in the queue.
const POOL = `pool-${Math.random().toString(36).slice(2, 8)}`
const MAX = 3
const MIN = 1

let stack: Stack
let pool: ReturnType<typeof Bun.spawn>
const logs: { msg: string; worker?: string; url?: string; process?: string; taskId?: string }[] = []
const poolUrl = Promise.withResolvers<string>()
const latest = new Map<string, WorkerHeartbeat>()
let heartbeatSeen = Promise.withResolvers<void>()
let closeHeartbeats = async () => {}

async function readLogs(stdout: ReadableStream<Uint8Array>) {
  const decoder = new TextDecoder()
  let buffered = ""
  for await (const chunk of stdout) {
    buffered += decoder.decode(chunk, { stream: true })
    const lines = buffered.split("\n")
    buffered = lines.pop() ?? ""
    for (const line of lines) {
      const entry = JSON.parse(line) as (typeof logs)[number]
      logs.push(entry)
      if (process.env.AUTOSCALE_TEST_VERBOSE) console.log(line)
      if (entry.msg === "started" && entry.worker === POOL && entry.url) poolUrl.resolve(entry.url)
    }
  }
}

beforeAll(async () => {
  const heartbeatMs = "100"
  stack = await startStack(
    "autoscale",
    { ENABLE_TEST_TASKS: "true", WORKER_HEARTBEAT_MS: heartbeatMs, CONTROL_TIMEOUT_MS: "2000" },
    { "polarity-worker": { WORKER_QUEUES: "polarity" } },
  )
  const amqp = await rawChannel()
  const { name } = await amqp.channel.queueDeclare("", { exclusive: true, autoDelete: true })
  await amqp.channel.queueBind(name, stack.names.eventsExchange, WORKER_HEARTBEAT_KEY)
  await amqp.channel.basicConsume(name, { noAck: true }, (msg) => {
    const heartbeat = v.parse(WorkerHeartbeat, JSON.parse(msg.bodyString() ?? ""))
    latest.set(heartbeat.worker, heartbeat)
    heartbeatSeen.resolve()
    heartbeatSeen = Promise.withResolvers()
  })
  closeHeartbeats = () => amqp[Symbol.asyncDispose]()
  pool = Bun.spawn([process.execPath, "services/polarity-worker.ts"], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...stack.env,
      LOG_LEVEL: process.env.AUTOSCALE_TEST_VERBOSE ? "debug" : "info",
      WORKER_NAME: POOL,
      WORKER_QUEUES: "default",
      WORKER_PREFETCH: "1",
      WORKER_HEARTBEAT_MS: heartbeatMs,
      WORKER_AUTOSCALE: `${MAX},${MIN}`,
      AUTOSCALE_BACKLOG: "2",
      AUTOSCALE_INTERVAL_MS: "100",
      AUTOSCALE_IDLE_MS: "1000",
      POOL_TERMINATE_GRACE_MS: "300",
    },
    stdout: "pipe",
    stderr: "inherit",
  })
  void readLogs(pool.stdout as ReadableStream<Uint8Array>)
})

afterAll(async () => {
  // The supervisor stops its processes, each after draining; then it exits.
  pool?.kill("SIGTERM")
  await pool?.exited
  await closeHeartbeats()
  await stack?.[Symbol.asyncDispose]()
})

/** The pool's heartbeat once `done` holds for it, waiting for later ones as they come. */
async function poolUntil(done: (heartbeat: WorkerHeartbeat) => boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const heartbeat = latest.get(POOL)
    if (heartbeat && done(heartbeat)) return heartbeat
    const left = deadline - Date.now()
    if (left <= 0) throw new Error(`the pool never got there: ${JSON.stringify(heartbeat)}`)
    await Promise.race([heartbeatSeen.promise, Bun.sleep(left)])
  }
}
const processesOf = (heartbeat: WorkerHeartbeat) => heartbeat.pool?.processes ?? []

async function poolMetric(name: string): Promise<number> {
  const text = await fetch(`${await poolUrl.promise}/metrics`).then((res) => res.text())
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`))
  return Number(line?.split(" ").at(-1))
}

describe("WORKER_AUTOSCALE", () => {
  test("a burst of slow tasks grows the pool to its maximum and, once idle, back to its minimum: 0 lost, 0 doubled, a shrink included", async () => {
    await poolUntil((heartbeat) => processesOf(heartbeat).length === MIN)
    await using watch = await watchEvents(stack)
    // One after the other, so that each is a message of its own: the gateway puts the tasks of one turn in one.
    const ids: string[] = []
    for (let i = 0; i < 40; i++) ids.push(await submitFlaky(stack, { sleep_ms: 200 }))

    // Full, and every process holding a task.
    const full = await poolUntil((h) => processesOf(h).length === MAX && h.in_hand === MAX)
    expect(full.pool).toEqual({ min: MIN, max: MAX, processes: expect.any(Array) })
    // A shrink by hand while every process holds a task: the one stopped finishes it and acks it first.
    const res = await fetch(stack.url(`/admin/workers/${POOL}/pool/shrink?n=1`), { method: "POST" })
    expect(res.status).toBe(200)
    const shrunk = (await res.json()) as {
      worker: string
      pool: { min: number; max: number; processes: string[] }
    }
    expect(shrunk).toEqual({ worker: POOL, pool: { min: MIN, max: MAX, processes: expect.any(Array) } })
    expect(shrunk.pool.processes).toHaveLength(MAX - 1)

    const mine = new Set(ids)
    const count = (events: TaskEvent[], state: TaskEvent["state"]) =>
      events.filter((e) => e.state === state && mine.has(e.task_id))
    await watch.until((events) => count(events, "SUCCESS").length >= ids.length, 60_000)
    const finals = await Promise.all(ids.map((id) => waitForFinal(stack, id)))
    await poolUntil((heartbeat) => processesOf(heartbeat).length === MIN)

    const perTask = (state: TaskEvent["state"]) => {
      const runs = new Map<string, number>()
      for (const e of count(watch.events, state)) runs.set(e.task_id, (runs.get(e.task_id) ?? 0) + 1)
      return runs
    }
    const started = perTask("STARTED")
    const succeeded = perTask("SUCCESS")
    const figures = {
      tasks: ids.length,
      lost: finals.filter((t) => t.status !== "SUCCESS").length,
      doubled: [...ids].filter((id) => (started.get(id) ?? 0) > 1 || (succeeded.get(id) ?? 0) > 1).length,
      retried: finals.filter((t) => t.attempts !== 1).length,
      grown: await poolMetric("polarity_pool_grown_total"),
      shrunk: await poolMetric("polarity_pool_shrunk_total"),
      replaced: await poolMetric("polarity_pool_replaced_total"),
    }
    console.log(`autoscale ${MIN}–${MAX}: ${JSON.stringify(figures)}`)
    expect(figures).toMatchObject({ lost: 0, doubled: 0, retried: 0, replaced: 0 })
    // Up from the minimum to the maximum, and again after the shrink by hand; down to the minimum twice over.
    expect(figures.grown).toBeGreaterThanOrEqual(MAX - MIN)
    expect(figures.shrunk).toBeGreaterThanOrEqual(MAX - MIN)
    expect(await poolMetric("polarity_pool_processes")).toBe(MIN)
    // Every task ran in a process of the pool, which says so in its heartbeats.
    const workers = new Set(watch.events.flatMap((e) => (e.state === "STARTED" ? [e.worker] : [])))
    for (const worker of workers) expect(latest.get(worker)?.supervisor).toBe(POOL)
    expect(logs.filter((entry) => entry.msg === "pool process died, replacing it")).toEqual([])
    // Each process stopped drained and exited by itself, none was killed.
    const stops = logs.filter((entry) => entry.msg === "pool process stopped")
    expect(stops.length).toBeGreaterThanOrEqual(MAX - MIN)
    expect(stops.every((entry) => (entry as { code?: number }).code === 0)).toBe(true)
  })

  test("a process that dies is replaced", async () => {
    // Once the process has started (its own heartbeat says its pid).
    const before = await poolUntil(
      (h) => processesOf(h).length === MIN && latest.has(processesOf(h)[0] ?? ""),
    )
    const victim = processesOf(before)[0] ?? ""
    const pid = latest.get(victim)?.pid ?? 0
    expect(pid).toBeGreaterThan(0)
    process.kill(pid, "SIGKILL")

    const after = await poolUntil((heartbeat) => {
      const processes = processesOf(heartbeat)
      return processes.length === MIN && !processes.includes(victim)
    })
    expect(processesOf(after)).toEqual([expect.stringMatching(new RegExp(`^${POOL}\\.\\d+$`))])
    expect(await poolMetric("polarity_pool_replaced_total")).toBe(1)
    // The replacement takes tasks.
    const taskId = await submitFlaky(stack)
    expect((await waitForFinal(stack, taskId)).status).toBe("SUCCESS")
  })

  test("a terminated task that does not heed its signal: its process exits and is replaced, the task ends REVOKED", async () => {
    const before = await poolUntil(
      (h) => processesOf(h).length === MIN && latest.has(processesOf(h)[0] ?? ""),
    )
    const holder = processesOf(before)[0] ?? ""
    const replacedBefore = await poolMetric("polarity_pool_replaced_total")
    await using watch = await watchEvents(stack)
    const taskId = await submitFlaky(stack, { sleep_ms: 60_000, ignore_abort: true })
    await watch.until((events) => events.some((e) => e.task_id === taskId && e.state === "STARTED"))

    const res = await fetch(stack.url(`/polarities/tasks/${taskId}?terminate=true`), { method: "DELETE" })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ status: "REVOKED", error: "terminated while running attempt 1" })
    const after = await poolUntil((h) => processesOf(h).length === MIN && !processesOf(h).includes(holder))
    expect(processesOf(after)).not.toContain(holder)
    expect(await poolMetric("polarity_pool_replaced_total")).toBe(replacedBefore + 1)
    const exits = logs.filter(
      (entry) => entry.msg === "a terminated task runs on: this process of the pool exits, to be replaced",
    )
    expect(exits.map((entry) => entry.taskId)).toEqual([taskId])

    // The replacement takes tasks, and drops the terminated one when it comes back from the dead process.
    const next = await submitFlaky(stack)
    expect((await waitForFinal(stack, next)).status).toBe("SUCCESS")
    await using amqp = await rawChannel()
    await eventually(async () => {
      const quarantine = await amqp.channel.queueDeclare(stack.names.quarantineQueues.default, {
        passive: true,
      })
      expect({ waiting: quarantine.messageCount, inHand: latest.get(POOL)?.in_hand }).toEqual({
        waiting: 0,
        inHand: 0,
      })
    }, 15_000)
    const states = watch.events.filter((e) => e.task_id === taskId).map((e) => `${e.state}:${e.attempt}`)
    expect(states.toSorted()).toEqual(["PENDING:0", "REVOKED:1", "STARTED:1"])
    expect((await waitForFinal(stack, taskId)).status).toBe("REVOKED")
  })

  test("GET /admin/workers lists the supervisor with its pool and each process with its supervisor", async () => {
    // Until the store has heard the replacement's heartbeat; the one killed above may be listed online still,
    // until its missed heartbeats make it lost.
    await eventually(async () => {
      const res = await fetch(stack.url("/admin/workers"))
      const { workers } = (await res.json()) as {
        workers: { worker: string; status: string; pool?: unknown; supervisor?: string }[]
      }
      const online = workers.filter((w) => w.status === "online")
      const supervisor = online.find((w) => w.worker === POOL) as { pool: { processes: string[] } }
      const processes = [...supervisor.pool.processes]
      expect(supervisor).toMatchObject({ pool: { min: MIN, max: MAX } })
      expect(processes).toHaveLength(MIN)
      for (const id of processes) {
        expect(online.find((w) => w.worker === id)).toMatchObject({ supervisor: POOL })
      }
    })
  })
})

describe("the autoscaler's policy", () => {
  const settings = { min: 1, max: 4, backlogPerProcess: 10, idleMs: 1000 }
  const busy = (id: string) => ({ id, idleSince: null })

  test("grows once the backlog per process stays above the threshold for two readings, by what it needs", () => {
    const autoscaler = new Autoscaler(settings)
    expect(autoscaler.decide(0, 30, [busy("a")])).toBeNull()
    expect(autoscaler.decide(100, 30, [busy("a")])).toEqual({ grow: 2 })
    expect(autoscaler.decide(200, 500, [busy("a"), busy("b"), busy("c")])).toBeNull()
    expect(autoscaler.decide(300, 500, [busy("a"), busy("b"), busy("c")])).toEqual({ grow: 1 })
    expect(autoscaler.decide(400, 500, ["a", "b", "c", "d"].map(busy))).toBeNull()
  })

  test("a dip below the threshold starts the count again", () => {
    const autoscaler = new Autoscaler(settings)
    expect(autoscaler.decide(0, 30, [busy("a")])).toBeNull()
    expect(autoscaler.decide(100, 5, [busy("a")])).toBeNull()
    expect(autoscaler.decide(200, 30, [busy("a")])).toBeNull()
  })

  test("shrinks by the process idle longest once it has been idle for the period and nothing waits", () => {
    const autoscaler = new Autoscaler(settings)
    const processes = [{ id: "a", idleSince: 500 }, { id: "b", idleSince: 100 }, busy("c")]
    expect(autoscaler.decide(1000, 0, processes)).toBeNull()
    expect(autoscaler.decide(1100, 0, processes)).toEqual({ shrink: "b" })
    expect(autoscaler.decide(1100, 1, processes)).toBeNull()
    expect(autoscaler.decide(9000, 0, [{ id: "a", idleSince: 0 }])).toBeNull()
  })

  test("with a minimum of 0 and no process, the first task waiting starts one at once", () => {
    const autoscaler = new Autoscaler({ ...settings, min: 0 })
    expect(autoscaler.decide(0, 0, [])).toBeNull()
    expect(autoscaler.decide(100, 1, [])).toEqual({ grow: 1 })
  })
})

describe("WORKER_AUTOSCALE at start-up", () => {
  const problem = (value: string) => {
    try {
      return loadWorkerConfig({ WORKER_AUTOSCALE: value }).WORKER_AUTOSCALE
    } catch (err) {
      return (err as Error).message
    }
  }

  test("takes max,min in Celery's order, or max alone with a minimum of 0, and refuses the rest", () => {
    expect(problem("8,2")).toEqual({ max: 8, min: 2 })
    expect(problem("4")).toEqual({ max: 4, min: 0 })
    expect(problem("2,8")).toContain("the minimum must not be above the maximum")
    expect(problem("0")).toContain("the maximum must be 1 to 100 processes")
    expect(problem("101,1")).toContain("the maximum must be 1 to 100 processes")
    expect(problem("eight")).toContain("must be max,min (Celery's order), such as 8,2")
    expect(loadWorkerConfig({}).WORKER_AUTOSCALE).toBeUndefined()
  })
})

// The supervisor of an autoscaled pool (WORKER_AUTOSCALE, Celery's `--autoscale`): it consumes no task itself.
// It starts worker processes of this same program (each with WORKER_SUPERVISOR and a name of its own), reads
// the depth of the pool's queues and its processes' heartbeats, and grows or shrinks the pool by the
// autoscaler's policy or by remote control. A process is stopped with SIGTERM, the worker's graceful stop: it
// takes no more tasks, finishes and acks those in hand, then exits. One that dies otherwise is replaced.
import { type AMQPChannel, AMQPClient } from "@cloudamqp/amqp-client"
import { type Broker, decodeMessage } from "../../shared/amqp.ts"
import { type PoolInfo, WorkerHeartbeat } from "../../shared/contracts.ts"
import { serveHealthAndMetrics } from "../../shared/http.ts"
import type { Logger } from "../../shared/log.ts"
import { Counter, Gauge, type ServiceMetrics } from "../../shared/metrics.ts"
import { type ChildProcess, spawnScript } from "../../shared/runtime.ts"
import { type TaskRoute, WORKER_HEARTBEAT_KEY } from "../../shared/topology.ts"
import { Autoscaler, type AutoscaleSettings } from "./autoscaler.ts"
import { serveControl } from "./control.ts"
import { Heartbeats } from "./heartbeat.ts"

/** Deno runs a process with the permissions `npm run start:deno:worker` gives a worker. */
const DENO_WORKER_FLAGS = ["--no-prompt", "--allow-net", "--allow-env", "--allow-sys=hostname"]
/** A process that dies sooner than this after its start is restarted after a growing wait, not at once. */
const QUICK_EXIT_MS = 5000
const MAX_RESTART_WAIT_MS = 30_000

export interface PoolSettings extends AutoscaleSettings {
  /** The supervisor's worker id; its processes are `<id>.<n>`. */
  name: string
  queues: TaskRoute[]
  /** The names of the work queues whose depth the pool reads: those not paused. */
  queueNames: () => string[]
  prefetch: number
  heartbeatMs: number
  intervalMs: number
  host: string
  port: number
  /** This program's file, run again for each process, and the environment it gets (the supervisor's own). */
  script: string
  env: Record<string, string | undefined>
}

interface PoolProcess {
  id: string
  child: ChildProcess
  startedAt: number
  /** Asked to stop (shrink or shutdown): its exit is no crash. */
  stopping: boolean
  idleSince: number | null
  heartbeat?: WorkerHeartbeat
}

class PoolMetrics {
  readonly grown: Counter
  readonly shrunk: Counter
  readonly replaced: Counter
  waiting = 0

  constructor({ registry }: ServiceMetrics, processes: () => PoolProcess[]) {
    const registers = [registry]
    const counter = (name: string, help: string) => new Counter({ name, help, registers })
    this.grown = counter(
      "polarity_pool_grown_total",
      "Processes the pool started to grow (not replacements).",
    )
    this.shrunk = counter(
      "polarity_pool_shrunk_total",
      "Processes the pool stopped to shrink, each drained first.",
    )
    this.replaced = counter("polarity_pool_replaced_total", "Processes that died unasked and were replaced.")
    const metrics = this
    new Gauge({
      name: "polarity_pool_processes",
      help: "Worker processes of the pool running now (not stopping).",
      registers,
      collect() {
        this.set(processes().filter((p) => !p.stopping).length)
      },
    })
    new Gauge({
      name: "polarity_pool_waiting_tasks",
      help: "Messages ready in the pool's work queues at the last reading.",
      registers,
      collect() {
        this.set(metrics.waiting)
      },
    })
    new Gauge({
      name: "polarity_pool_process_tasks_in_hand",
      help: "Tasks in hand of each process of the pool, from its last heartbeat.",
      labelNames: ["process"] as const,
      registers,
      collect() {
        this.reset()
        for (const p of processes()) this.set({ process: p.id }, p.heartbeat?.in_hand ?? 0)
      },
    })
  }
}

/** Ready messages per queue, by passive declares on a connection of its own (a missing queue closes a channel). */
class QueueDepths {
  private client: AMQPClient | undefined
  private channel: AMQPChannel | undefined

  constructor(
    private readonly amqpUrl: () => string,
    private readonly name: string,
  ) {}

  async waiting(queues: string[]): Promise<number> {
    try {
      const channel = await this.open()
      let total = 0
      for (const queue of queues) total += (await channel.queueDeclare(queue, { passive: true })).messageCount
      return total
    } catch (err) {
      this.channel = undefined
      throw err
    }
  }

  private async open(): Promise<AMQPChannel> {
    if (this.channel && !this.channel.closed) return this.channel
    if (!this.client || this.client.closed) {
      const url = new URL(this.amqpUrl())
      url.searchParams.set("name", this.name)
      this.client = new AMQPClient(url.toString(), undefined, null)
      await this.client.connect()
    }
    this.channel = await this.client.channel()
    return this.channel
  }

  async close(): Promise<void> {
    await this.client?.close().catch(() => {})
  }
}

export async function startSupervisor(
  settings: PoolSettings,
  broker: Broker,
  metrics: ServiceMetrics,
  log: Logger,
) {
  const processes = new Map<string, PoolProcess>()
  const running = () => [...processes.values()].filter((p) => !p.stopping)
  const poolMetrics = new PoolMetrics(metrics, () => [...processes.values()])
  const autoscaler = new Autoscaler(settings)
  const depths = new QueueDepths(() => broker.url, "polarity-worker-pool")
  let sequence = 0
  let quickExits = 0
  /** Replacements waiting to start: they count as processes, so that neither policy nor command adds one twice. */
  let restarting = 0
  let stopping = false

  function poolInfo(): PoolInfo {
    return { min: settings.min, max: settings.max, processes: running().map((p) => p.id) }
  }

  function startProcess(): void {
    const id = `${settings.name}.${++sequence}`
    const env = {
      ...settings.env,
      WORKER_SUPERVISOR: settings.name,
      WORKER_NAME: id,
      // Each process serves its own /healthz and /metrics on a port of the system's choosing.
      WORKER_PORT: "0",
      WORKER_AUTOSCALE: undefined,
    }
    const child = spawnScript(settings.script, { env, denoFlags: DENO_WORKER_FLAGS })
    const started: PoolProcess = { id, child, startedAt: Date.now(), stopping: false, idleSince: Date.now() }
    processes.set(id, started)
    log.info("pool process started", { process: id, pid: child.pid })
    void child.exited.then((exit) => ended(started, exit))
  }

  function ended(p: PoolProcess, exit: { code: number | null; signal: string | null }): void {
    processes.delete(p.id)
    if (p.stopping || stopping) {
      log.info("pool process stopped", { process: p.id, ...exit })
      return
    }
    // Shut down alone by remote control: the pool is smaller now, unless that takes it below its minimum.
    if (exit.code === 0 && running().length >= settings.min) {
      log.info("pool process exited", { process: p.id, ...exit })
      return
    }
    quickExits = Date.now() - p.startedAt < QUICK_EXIT_MS ? quickExits + 1 : 0
    const waitMs = quickExits === 0 ? 0 : Math.min(MAX_RESTART_WAIT_MS, 500 * 2 ** (quickExits - 1))
    log.warn("pool process died, replacing it", { process: p.id, ...exit, waitMs })
    poolMetrics.replaced.inc()
    restarting++
    setTimeout(() => {
      restarting--
      if (!stopping) startProcess()
    }, waitMs)
  }

  function stopProcess(p: PoolProcess): void {
    p.stopping = true
    p.child.kill("SIGTERM")
  }

  function grow(n: number): void {
    const added = Math.min(n, settings.max - running().length - restarting)
    for (let i = 0; i < added; i++) startProcess()
    if (added > 0) poolMetrics.grown.inc(added)
  }

  /** The processes holding fewest tasks go first; each drains before it exits. */
  function shrink(n: number, chosen?: string): void {
    const byLoad = running().sort((a, b) => (a.heartbeat?.in_hand ?? 0) - (b.heartbeat?.in_hand ?? 0))
    const order = chosen ? byLoad.filter((p) => p.id === chosen) : byLoad
    const removed = order.slice(0, Math.max(0, Math.min(n, running().length - settings.min)))
    for (const p of removed) {
      log.info("pool process stopping", { process: p.id })
      stopProcess(p)
    }
    poolMetrics.shrunk.inc(removed.length)
  }

  async function scale(): Promise<void> {
    let waiting: number
    try {
      waiting = await depths.waiting(settings.queueNames())
    } catch (err) {
      log.warn("queue depths not read: the pool stays as it is", { err: (err as Error).message })
      return
    }
    poolMetrics.waiting = waiting
    log.debug("pool queues read", { waiting, processes: running().length })
    if (restarting > 0) return
    const decision = autoscaler.decide(Date.now(), waiting, running())
    if (decision && "grow" in decision) {
      log.info("pool growing", { waiting, processes: running().length, by: decision.grow })
      grow(decision.grow)
    } else if (decision) {
      shrink(1, decision.shrink)
    }
  }

  // Its processes' heartbeats say what each holds: the pool's own heartbeat adds them up.
  await broker.listen(broker.names.eventsExchange, [WORKER_HEARTBEAT_KEY], (msg) => {
    try {
      const heartbeat = decodeMessage(msg, WorkerHeartbeat, "WorkerHeartbeat")
      const p = processes.get(heartbeat.worker)
      if (!p || heartbeat.supervisor !== settings.name) return
      p.heartbeat = heartbeat
      if (heartbeat.in_hand > 0) p.idleSince = null
      else p.idleSince ??= Date.now()
    } catch (err) {
      log.debug("heartbeat not understood", { err: (err as Error).message })
    }
  })

  const sum = (field: "in_hand" | "succeeded" | "failed" | "retried") =>
    [...processes.values()].reduce((total, p) => total + (p.heartbeat?.[field] ?? 0), 0)
  const heartbeats = new Heartbeats(broker, {
    worker: settings.name,
    intervalMs: settings.heartbeatMs,
    describe: () => ({
      queues: settings.queues,
      pool: poolInfo(),
      prefetch: settings.prefetch,
      in_hand: sum("in_hand"),
      succeeded: sum("succeeded"),
      failed: sum("failed"),
      retried: sum("retried"),
    }),
    log,
  })

  await serveControl(
    broker,
    settings.name,
    (command) => {
      const worker = settings.name
      switch (command.command) {
        case "ping":
          return { reply: "pong", heartbeat: heartbeats.now() }
        case "active":
          // Its processes answer for their own tasks; the supervisor holds none.
          return { reply: "active", worker, tasks: [] }
        case "shutdown":
          log.info("shutdown asked by remote control")
          setImmediate(() => void stop())
          return { reply: "shutting_down", worker }
        case "pool_grow":
          grow(command.n)
          return { reply: "pool", worker, pool: poolInfo() }
        case "pool_shrink":
          shrink(command.n)
          return { reply: "pool", worker, pool: poolInfo() }
      }
    },
    log,
  )

  grow(settings.min)
  heartbeats.start()
  const timer = setInterval(() => void scale(), settings.intervalMs)

  const server = serveHealthAndMetrics({
    port: settings.port,
    host: settings.host,
    log,
    metrics,
    brokerConnected: () => broker.connected,
  })
  log.info("started", { url: server.url, worker: settings.name, pool: poolInfo(), queues: settings.queues })

  const stopped = Promise.withResolvers<void>()
  let stoppingAll: Promise<void> | undefined
  /** Every process drains and exits, then the supervisor. */
  function stop(): Promise<void> {
    stoppingAll ??= (async () => {
      stopping = true
      clearInterval(timer)
      const all = [...processes.values()]
      for (const p of all) stopProcess(p)
      await Promise.all(all.map((p) => p.child.exited))
      await heartbeats.stop()
      await server.stop()
      await depths.close()
      await broker.close()
      log.info("stopped")
      stopped.resolve()
    })()
    return stoppingAll
  }
  return { url: server.url, worker: settings.name, stop, stopped: stopped.promise }
}

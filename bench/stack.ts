// The services under test as child processes (`bun services/<name>.ts`, or Deno as `npm run start:deno:<name>`
// runs it) under a prefix of their own, and what /proc tells about them and the broker: resident memory and CPU
// time.
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Subprocess } from "bun"
import { deleteTopology } from "../tests/broker.ts"
import { createTestDatabase } from "../tests/postgres.ts"
import { RUNTIMES, type Runtime, type Runtimes, type ServiceName, serviceCommand } from "../tests/runtimes.ts"

export interface StackOptions {
  amqpUrl: string
  queueType: "classic" | "quorum"
  prefix: string
  prefetch: number
  workers: number
  /** Which runtime runs each service (Bun where not said). */
  runtimes: Runtimes
  /** Where each service writes its CPU profile (Bun's markdown format) when it stops; none when absent. */
  cpuProfileDir?: string | undefined
  /** The gateway's further settings, e.g. API keys and their limits. */
  gatewayEnv?: Record<string, string>
  /** Where the status store keeps its state: a SQLite file, or a PostgreSQL database of the run's own. */
  store: "sqlite" | "postgres"
  /** Status-store processes, all on the one database. */
  storeReplicas: number
  /** The status store's further settings, e.g. RESULT_EXPIRES. */
  storeEnv?: Record<string, string>
}

export interface ServiceProcess {
  /** `gateway`, `status-store`, `polarity-worker#1`, … */
  label: string
  pid: number
}

export interface Stack {
  gatewayUrl: string
  /** Each status-store replica's /healthz and /metrics. */
  storeUrls: string[]
  /** The status store's database: its SQLite file, or the PostgreSQL database's URL. */
  database: StoreDatabase
  processes: ServiceProcess[]
  /** The run's PostgreSQL database (`--store postgres`), whose server processes are measured too. */
  databaseName: string | undefined
  stop(): Promise<void>
}

export type StoreDatabase = { sqlitePath: string } | { postgresUrl: string }

const ROOT = join(import.meta.dir, "..")

/** The JavaScriptCore settings `npm start` runs the services with: package.json's `config.bunEnv`. */
export const BUN_ENV: Record<string, string> = Object.fromEntries(
  (
    JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { config: { bunEnv: string } }
  ).config.bunEnv
    .split(" ")
    .map((pair) => pair.split("=")),
)
const START_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 15_000

interface Child extends ServiceProcess {
  proc: Subprocess
  healthUrl: string
}

/** A port nobody listens on right now; the service binds it a moment later. */
function freePort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } })
  const { port } = listener
  listener.stop(true)
  return port
}

interface Spawn {
  label: string
  service: ServiceName
  runtime: Runtime
  env: Record<string, string>
  port: number
  cpuProfileDir?: string | undefined
}

function spawnService({ label, service, runtime, env, port, cpuProfileDir }: Spawn): Child {
  const [executable = "", ...args] = serviceCommand(service, runtime, env)
  const profile =
    cpuProfileDir && runtime === "bun"
      ? ["--cpu-prof-md", `--cpu-prof-dir=${cpuProfileDir}`, `--cpu-prof-name=${label}.md`]
      : []
  const proc = Bun.spawn([executable, ...profile, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    // The services log JSON lines on stdout; ours carries the report, so theirs goes to stderr.
    stdio: ["ignore", 2, 2],
  })
  return { label, pid: proc.pid, proc, healthUrl: `http://127.0.0.1:${port}/healthz` }
}

async function waitHealthy(child: Child): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (child.proc.exitCode !== null) throw new Error(`${child.label} exited with ${child.proc.exitCode}`)
    const res = await fetch(child.healthUrl).catch(() => null)
    if (res?.status === 200) return
    await Bun.sleep(50)
  }
  throw new Error(`${child.label} not healthy within ${START_TIMEOUT_MS} ms`)
}

async function stopChild(child: Child): Promise<void> {
  if (child.proc.exitCode !== null) return
  child.proc.kill("SIGTERM")
  const timer = setTimeout(() => child.proc.kill("SIGKILL"), STOP_TIMEOUT_MS)
  await child.proc.exited
  clearTimeout(timer)
}

/** Start the status store, the workers and the gateway; resolves once every /healthz answers 200. */
export async function startStack(options: StackOptions): Promise<Stack> {
  const dataDir = mkdtempSync(join(tmpdir(), "polarity-bench-"))
  const common = {
    // As npm start and the container images run them (docs/performance.md, "Memory").
    ...BUN_ENV,
    AMQP_URL: options.amqpUrl,
    AMQP_PREFIX: options.prefix,
    QUEUE_TYPE: options.queueType,
    LOG_LEVEL: "warn",
    HOST: "127.0.0.1",
    WORKER_HOST: "127.0.0.1",
    STATUS_STORE_HOST: "127.0.0.1",
  }
  const gatewayPort = freePort()
  const spawn = (label: string, service: ServiceName, env: Record<string, string>, port: number) =>
    spawnService({
      label,
      service,
      runtime: options.runtimes[service] ?? "bun",
      env: { ...common, ...env },
      port,
      cpuProfileDir: options.cpuProfileDir,
    })
  const database = options.store === "postgres" ? await createTestDatabase("bench") : undefined
  const databasePath = join(dataDir, "status.sqlite")
  const children: Child[] = []
  const storeUrls: string[] = []
  for (let n = 1; n <= options.storeReplicas; n++) {
    const port = freePort()
    const env = {
      ...options.storeEnv,
      STATUS_STORE_PORT: String(port),
      ...(database ? { DATABASE_URL: database.url } : { DATABASE_PATH: databasePath }),
    }
    children.push(spawn(n === 1 ? "status-store" : `status-store#${n}`, "store", env, port))
    storeUrls.push(`http://127.0.0.1:${port}`)
  }
  for (let n = 1; n <= options.workers; n++) {
    const port = freePort()
    const env = { WORKER_PORT: String(port), WORKER_PREFETCH: String(options.prefetch) }
    children.push(spawn(`polarity-worker#${n}`, "worker", env, port))
  }
  const gatewayEnv = { ...options.gatewayEnv, PORT: String(gatewayPort) }
  children.push(spawn("gateway", "gateway", gatewayEnv, gatewayPort))

  // The gateway first, so nothing new comes in; the store last, so it commits every outcome.
  const stop = async () => {
    for (const child of [...children].reverse()) await stopChild(child)
    await deleteTopology({ AMQP_PREFIX: options.prefix, AMQP_URL: options.amqpUrl })
    rmSync(dataDir, { recursive: true, force: true })
    await database?.[Symbol.asyncDispose]()
  }
  try {
    await Promise.all(children.map(waitHealthy))
  } catch (err) {
    await stop()
    throw err
  }
  return {
    databaseName: database?.name,
    gatewayUrl: `http://127.0.0.1:${gatewayPort}`,
    storeUrls,
    database: database ? { postgresUrl: database.url } : { sqlitePath: databasePath },
    processes: children.map(({ label, pid }) => ({ label, pid })),
    stop,
  }
}

/**
 * `--runtime`: one runtime for every service (`bun`, `deno`), `mixed` (a Deno gateway, a Bun worker and store),
 * or each service's own, as `gateway=deno,worker=bun,store=deno`.
 */
export function parseRuntimes(value: string): Runtimes {
  if (value === "mixed") return { gateway: "deno" }
  if (RUNTIMES.includes(value as Runtime)) {
    const runtime = value as Runtime
    return { gateway: runtime, worker: runtime, store: runtime }
  }
  const runtimes: Runtimes = {}
  for (const pair of value.split(",")) {
    const [service, runtime] = pair.split("=")
    if (!["gateway", "worker", "store"].includes(service ?? "") || !RUNTIMES.includes(runtime as Runtime)) {
      throw new Error(
        `--runtime must be bun, deno, mixed, or service=runtime pairs such as gateway=deno,store=bun, not "${value}"`,
      )
    }
    runtimes[service as ServiceName] = runtime as Runtime
  }
  return runtimes
}

/** Resident set size in MB, or null once the process is gone. */
export function rssMb(pid: number, field: "VmRSS" | "VmHWM" = "VmRSS"): number | null {
  try {
    const kb = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]
    return kb === undefined ? null : Number(kb) / 1024
  } catch {
    return null
  }
}

/** The highest RSS the process has had since it started (the kernel's high-water mark). */
export const peakRssMb = (pid: number) => rssMb(pid, "VmHWM")

const CLOCK_TICKS_PER_SECOND = 100

/** User + system CPU seconds the process has used so far, or null once it is gone. */
export function cpuSeconds(pid: number | "self"): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name (field 2) may hold spaces; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND
  } catch {
    return null
  }
}

/**
 * The PostgreSQL server's processes that serve `database` (its backends, titled `postgres: <cluster>: <user> <database> …`),
 * if the server runs on this machine: the store's share of the server's work.
 */
export function postgresPids(database: string): number[] {
  const { stdout } = Bun.spawnSync(["pgrep", "-f", `^postgres: .* ${database} `])
  return stdout.toString().split("\n").filter(Boolean).map(Number)
}

/** The broker's Erlang VM, if it runs on this machine. */
export function brokerPids(): number[] {
  const { stdout } = Bun.spawnSync(["pgrep", "-f", "beam.smp"])
  return stdout.toString().split("\n").filter(Boolean).map(Number)
}

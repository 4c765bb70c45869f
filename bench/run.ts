// `npm run bench`: the broker's ceiling, end-to-end throughput through the API, single-task latency, and the
// services' memory and CPU, in one run; prints a table, then the same figures as one JSON line.
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, loadavg } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import * as v from "valibot"
import { keyLine, mintKey } from "../services/gateway/api-keys.ts"
import { durationVar } from "../shared/config.ts"
import { MAX_REVIEW_LENGTH } from "../shared/contracts.ts"
import { AMQP_URL, deleteQueuesAndExchanges, deleteTopology } from "../tests/broker.ts"
import { type CeilingResult, ceilingNames, runCeiling } from "./ceiling.ts"
import { type DelayedResult, measureDelayLateness } from "./delayed.ts"
import { type FloorResult, floorNames, runLatencyFloor } from "./floor.ts"
import {
  type Follow,
  measureLatency,
  type Percentiles,
  runThroughput,
  type ThroughputResult,
  warmUp,
} from "./load.ts"
import { measureScoring, type ScoringCost, scoringLines } from "./scoring.ts"
import { runSoak, type SoakResult, type SoakSample } from "./soak.ts"
import {
  brokerPids,
  cpuSeconds,
  parseRuntimes,
  peakRssMb,
  postgresPids,
  rssMb,
  type ServiceProcess,
  type StoreDatabase,
  startStack,
} from "./stack.ts"

const USAGE = `Usage: npm run bench -- [options]

  --tasks N              tasks in the throughput phase, and messages in the ceiling (default 20000)
  --review-bytes N       length of each review, up to 10000 (default: one sentence and its index, 90-130 bytes)
  --concurrency N        concurrent HTTP clients submitting (default 128)
  --follow F             how tasks are followed until final: lookup (POST /polarities/tasks/lookup, up to 100
                         tasks per request) or get (GET /polarities/tasks/{id}, one per task) (default lookup)
  --poll-concurrency N   concurrent HTTP clients following tasks (default 4 with lookup, --concurrency with get)
  --prefetch N           WORKER_PREFETCH of each worker (default 64)
  --workers N            polarity-worker processes (default 1)
  --latency-samples N    sequential single tasks per latency mode (default 500)
  --warmup N             tasks through the pipeline before measuring (default 200)
  --window N             ceiling publishes awaiting their confirm at once (default 1000)
  --ceiling-prefetch N   unacked deliveries of the ceiling's relay (default 1000)
  --settle-timeout S     seconds without a task turning final before the rest count as lost (default 30)
  --delayed N            delayed tasks (countdowns of 1-5 s) whose lateness is measured (default 1000)
  --phase P              all | scoring | ceiling | throughput | latency | delayed | soak (default all, which
                         leaves out soak); scoring is µs per review of scoring alone, in this process, before
                         any service starts
  --soak N               the retention soak alone: N tasks through the API under --result-expires, the
                         store's database size sampled as they flow, and again once the last result expired
  --result-expires D     the store's RESULT_EXPIRES, e.g. 10s (default: the store's own, 1d; with --soak, 10s)
  --scoring-rounds N     reviews scored per run of the scoring phase, best of three runs (default 20000)
  --api-key              start the gateway with an API key and send it with every request; its limits are set
                         high enough never to refuse the benchmark, so that their checks are measured and not
                         their refusals (with --gateway-url: the key in $BENCH_API_KEY is sent)
  --gateway-url URL      use services already running behind this gateway (no RSS, nothing started)
  --runtime R            what runs the services: bun, deno, mixed (a Deno gateway, a Bun worker and store), or
                         each service's own, as gateway=deno,worker=bun,store=deno (default bun)
  --cpu-prof DIR         each Bun service started here writes its CPU profile to DIR/<service>.md when it stops
  --amqp-url URL         broker (default $AMQP_URL or amqp://guest:guest@127.0.0.1:5672)
  --queue-type T         classic or quorum: the services' QUEUE_TYPE and the ceiling's queues (default
                         $QUEUE_TYPE or classic)
  --store S              where the status store keeps its state: sqlite (a file) or postgres (a database of
                         the run's own, created and dropped, on $TEST_POSTGRES_URL or
                         postgres://postgres@127.0.0.1:5432) (default sqlite)
  --store-replicas N     status-store processes, all on the one database; more than 1 needs --store postgres
                         (default 1)
  --help                 this text

The last line of stdout is the JSON report; it is also written to bench/results/<timestamp>.json.`

const PHASES = ["all", "scoring", "ceiling", "throughput", "latency", "delayed", "soak"] as const
const FOLLOWS: readonly Follow[] = ["lookup", "get"]
/** The ceiling's queues are of the services' type, so that the ratio compares like with like. */
const QUEUE_TYPES = ["classic", "quorum"] as const
const STORE_BACKENDS = ["sqlite", "postgres"] as const
type StoreBackend = (typeof STORE_BACKENDS)[number]
type QueueType = (typeof QUEUE_TYPES)[number]
/** Lookups in flight at once: each carries every task due, so a few keep up with any rate. */
const LOOKUP_CLIENTS = 4
type Phase = (typeof PHASES)[number]
/** Where the "flat memory" figure starts: growth is measured from this many completed tasks to the end. */
const RSS_MILESTONE = 10_000

function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      tasks: { type: "string", default: "20000" },
      "review-bytes": { type: "string", default: "0" },
      // Each client waits for its answer, and under load a POST takes 10-40 ms: 64 clients capped the
      // submissions near 64 / 10 ms, a figure of the clients, not of the system. 256 (and as many polling)
      // held 512 connections open, and the gateway's peak RSS came to 79-81 MB (docs/performance.md).
      concurrency: { type: "string", default: "128" },
      // How a client of many tasks follows them: up to 100 tasks per request. A GET per task (--follow get)
      // doubles the HTTP work per task, which is the API's cost, not the pipeline's (docs/performance.md).
      follow: { type: "string", default: "lookup" },
      "poll-concurrency": { type: "string" },
      prefetch: { type: "string", default: "64" },
      workers: { type: "string", default: "1" },
      "latency-samples": { type: "string", default: "500" },
      warmup: { type: "string", default: "200" },
      window: { type: "string", default: "1000" },
      "ceiling-prefetch": { type: "string", default: "1000" },
      "settle-timeout": { type: "string", default: "30" },
      delayed: { type: "string", default: "1000" },
      phase: { type: "string", default: "all" },
      soak: { type: "string" },
      "result-expires": { type: "string" },
      "scoring-rounds": { type: "string", default: "20000" },
      "gateway-url": { type: "string" },
      "api-key": { type: "boolean", default: false },
      runtime: { type: "string", default: "bun" },
      "cpu-prof": { type: "string" },
      "amqp-url": { type: "string", default: AMQP_URL },
      "queue-type": { type: "string", default: process.env.QUEUE_TYPE ?? "classic" },
      store: { type: "string", default: "sqlite" },
      "store-replicas": { type: "string", default: "1" },
      help: { type: "boolean", default: false },
    },
  })
  const count = (name: keyof typeof values, min = 1): number => {
    const n = Number(values[name])
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number ≥ ${min}`)
    return n
  }
  const phase = (values.soak === undefined ? values.phase : "soak") as Phase
  if (!PHASES.includes(phase)) throw new Error(`--phase must be one of ${PHASES.join(", ")}`)
  if (count("review-bytes", 0) > MAX_REVIEW_LENGTH) {
    throw new Error(`--review-bytes must be at most ${MAX_REVIEW_LENGTH}, the longest review the API takes`)
  }
  const follow = values.follow as Follow
  if (!FOLLOWS.includes(follow)) throw new Error(`--follow must be one of ${FOLLOWS.join(", ")}`)
  const queueType = values["queue-type"] as QueueType
  if (!QUEUE_TYPES.includes(queueType))
    throw new Error(`--queue-type must be one of ${QUEUE_TYPES.join(", ")}`)
  const store = values.store as StoreBackend
  if (!STORE_BACKENDS.includes(store)) throw new Error(`--store must be one of ${STORE_BACKENDS.join(", ")}`)
  if (count("store-replicas") > 1 && store !== "postgres")
    throw new Error("--store-replicas above 1 needs --store postgres: the replicas share its database")
  const options = {
    tasks: count("tasks"),
    reviewBytes: count("review-bytes", 0),
    concurrency: count("concurrency"),
    follow,
    pollConcurrency: values["poll-concurrency"]
      ? count("poll-concurrency")
      : follow === "lookup"
        ? LOOKUP_CLIENTS
        : count("concurrency"),
    prefetch: count("prefetch"),
    workers: count("workers"),
    latencySamples: count("latency-samples"),
    warmup: count("warmup", 0),
    window: count("window"),
    ceilingPrefetch: count("ceiling-prefetch"),
    settleTimeoutMs: count("settle-timeout") * 1000,
    delayed: count("delayed"),
    scoringRounds: count("scoring-rounds"),
    phase,
    soakTasks: count(values.soak === undefined ? "tasks" : "soak"),
    resultExpires: values["result-expires"] ?? (phase === "soak" ? "10s" : undefined),
    gatewayUrl: values["gateway-url"]?.replace(/\/$/, ""),
    apiKey: values["api-key"] ? (process.env.BENCH_API_KEY ?? mintKey()) : undefined,
    runtimes: parseRuntimes(values.runtime),
    cpuProfileDir: values["cpu-prof"],
    amqpUrl: values["amqp-url"],
    queueType,
    store,
    storeReplicas: count("store-replicas"),
  }
  return { help: values.help, options }
}
type Options = ReturnType<typeof parseOptions>["options"]

const progress = (message: string) => console.error(`[bench] ${message}`)

// --- CPU and memory, from /proc

const BROKER = "broker (beam.smp)"
const POSTGRES = "postgres (the run's database)"
/** Set once the stack is up with --store postgres: its server processes are sampled with the services. */
let runDatabase: string | undefined
const BENCH = "bench (this process)"

type CpuSample = Map<string, number>
interface CpuUsage {
  wallSeconds: number
  /** CPU seconds per process over the phase; 100% of one core = wallSeconds. */
  seconds: Record<string, number>
}

function sampleCpu(processes: ServiceProcess[]): CpuSample {
  const sample: CpuSample = new Map()
  const add = (label: string, seconds: number | null) => {
    if (seconds !== null) sample.set(label, (sample.get(label) ?? 0) + seconds)
  }
  for (const { label, pid } of processes) add(label, cpuSeconds(pid))
  for (const pid of brokerPids()) add(BROKER, cpuSeconds(pid))
  if (runDatabase) for (const pid of postgresPids(runDatabase)) add(POSTGRES, cpuSeconds(pid))
  add(BENCH, cpuSeconds("self"))
  return sample
}

/** Run `phase` and report the CPU each process used meanwhile. */
async function withCpu<T>(processes: ServiceProcess[], phase: () => Promise<T>): Promise<[T, CpuUsage]> {
  const before = sampleCpu(processes)
  const start = performance.now()
  const result = await phase()
  const wallSeconds = (performance.now() - start) / 1000
  const after = sampleCpu(processes)
  const seconds: Record<string, number> = {}
  for (const [label, used] of after) seconds[label] = used - (before.get(label) ?? used)
  return [result, { wallSeconds, seconds }]
}

interface MemoryRow {
  startMb: number | null
  at10kMb: number | null
  endMb: number | null
  /** The highest RSS of the whole run (VmHWM), read at the end. */
  peakMb: number | null
  /** From the 10k sample to the end: the "flat memory" figure. */
  growthPct: number | null
  /** Every 10k tasks seen final in the throughput phase: the trend behind the growth figure. */
  everyTenKMb: (number | null)[]
}

function sampleRss(
  processes: ServiceProcess[],
  into: Record<string, MemoryRow>,
  at: "startMb" | "at10kMb" | "endMb" | "everyTenKMb",
) {
  for (const { label, pid } of processes) {
    into[label] ??= {
      startMb: null,
      at10kMb: null,
      endMb: null,
      peakMb: null,
      growthPct: null,
      everyTenKMb: [],
    }
    const row = into[label]
    if (at === "everyTenKMb") row.everyTenKMb.push(rssMb(pid))
    else row[at] = rssMb(pid)
    if (at === "endMb") row.peakMb = peakRssMb(pid)
    if (row.at10kMb !== null && row.endMb !== null) row.growthPct = (row.endMb / row.at10kMb - 1) * 100
  }
}

// --- the run

interface Report {
  timestamp: string
  prefix: string
  options: Options
  host: { cpus: number; loadavg: number[] }
  servicesStartedByBench: boolean
  ceiling?: CeilingResult & { cpu: CpuUsage }
  throughput?: ThroughputResult & { ratioToCeiling: number | null; cpu: CpuUsage }
  latency?: { floor: FloorResult; wait: Percentiles; poll: Percentiles }
  delayed?: DelayedResult
  scoring?: ScoringCost[]
  memory?: Record<string, MemoryRow>
  soak?: SoakResult & { resultExpires: string }
}

/** Clean-ups run last-registered first, each once: from the finally block or from Ctrl-C. */
const cleanups: (() => Promise<void>)[] = []
async function cleanUp(): Promise<void> {
  for (let step = cleanups.pop(); step; step = cleanups.pop()) {
    await step().catch((err: Error) => progress(`clean-up failed: ${err.message}`))
  }
}

/** The services under test: started here (and stopped by the clean-ups), or already running elsewhere. */
async function servicesUnderTest(options: Options, prefix: string) {
  if (options.gatewayUrl)
    return { gatewayUrl: options.gatewayUrl, processes: [] as ServiceProcess[], store: null }
  cleanups.push(() => deleteTopology({ AMQP_PREFIX: prefix, AMQP_URL: options.amqpUrl }))
  progress(
    `starting the services (prefix ${prefix}, ${options.workers} worker(s), prefetch ${options.prefetch}, ${options.storeReplicas} store(s) on ${options.store})`,
  )
  const storeEnv: Record<string, string> = options.resultExpires
    ? { RESULT_EXPIRES: options.resultExpires }
    : {}
  const stack = await startStack({ ...options, prefix, gatewayEnv: keyedGateway(options.apiKey), storeEnv })
  cleanups.push(stack.stop)
  runDatabase = stack.databaseName
  const store = { urls: stack.storeUrls, database: stack.database }
  return { gatewayUrl: stack.gatewayUrl, processes: stack.processes, store }
}

/**
 * With --api-key: the key, and limits no benchmark reaches, so that every request pays for its checks (the key's
 * digest, the rate bucket, the in-flight query before each submission) and none is refused.
 */
function keyedGateway(apiKey: string | undefined): Record<string, string> {
  if (!apiKey) return {}
  return {
    API_KEYS: keyLine("bench", false, apiKey),
    RATE_LIMIT_PER_SECOND: "1000000",
    RATE_LIMIT_BURST: "1000000",
    MAX_TASKS_IN_FLIGHT_PER_KEY: "100000000",
    MAX_WAITS_PER_CALLER: "100000",
    MAX_STREAMS_PER_CALLER: "100000",
  }
}

async function ceilingPhase(options: Options, prefix: string, processes: ServiceProcess[]) {
  progress(
    `ceiling: ${options.tasks} messages, prefetch ${options.ceilingPrefetch}, window ${options.window}`,
  )
  const [ceiling, cpu] = await withCpu(processes, () =>
    runCeiling({ ...options, prefix, messages: options.tasks, prefetch: options.ceilingPrefetch }),
  )
  return { ...ceiling, cpu }
}

async function throughputPhase(
  options: Options,
  gatewayUrl: string,
  processes: ServiceProcess[],
  memory: Record<string, MemoryRow>,
) {
  progress(
    `throughput: ${options.tasks} tasks, ${options.concurrency} submitting, ${options.pollConcurrency} following by ${options.follow}`,
  )
  let finals = 0
  const ticker = setInterval(() => progress(`  ${finals} tasks final`), 5000)
  const onFinal = (n: number) => {
    finals = n
    if (n === RSS_MILESTONE) sampleRss(processes, memory, "at10kMb")
    if (n % RSS_MILESTONE === 0) sampleRss(processes, memory, "everyTenKMb")
  }
  try {
    const [throughput, cpu] = await withCpu(processes, () =>
      runThroughput({ ...options, gatewayUrl, onFinal }),
    )
    return { ...throughput, cpu }
  } finally {
    clearInterval(ticker)
  }
}

async function soakPhase(
  options: Options,
  gatewayUrl: string,
  store: { urls: string[]; database: StoreDatabase },
) {
  const resultExpires = options.resultExpires ?? "1d"
  const resultExpiresMs = v.parse(durationVar("1d", 1000, { never: true }), resultExpires)
  progress(
    `soak: ${options.soakTasks} tasks, ${options.concurrency} submitting, RESULT_EXPIRES ${resultExpires}`,
  )
  const soak = await runSoak({
    ...options,
    tasks: options.soakTasks,
    gatewayUrl,
    storeUrls: store.urls,
    database: store.database,
    resultExpiresMs,
    onSample: (s) => progress(`  ${soakRow(s).join("  ")}`),
    log: progress,
  })
  return { ...soak, resultExpires }
}

async function latencyPhase(options: Options, prefix: string, gatewayUrl: string) {
  progress(`latency: the bare chain ${options.latencySamples} times, one at a time`)
  const floor = await runLatencyFloor({ ...options, prefix, samples: options.latencySamples })
  progress(`latency: ${options.latencySamples} sequential tasks with ?wait=, then as many polled`)
  const { latencySamples, reviewBytes, apiKey } = options
  const wait = await measureLatency(gatewayUrl, "wait", latencySamples, reviewBytes, apiKey)
  const poll = await measureLatency(gatewayUrl, "poll", latencySamples, reviewBytes, apiKey)
  return { floor, wait, poll }
}

async function run(options: Options): Promise<Report> {
  const prefix = `bench-${Date.now().toString(36)}-${process.pid}.`
  const report: Report = {
    timestamp: new Date().toISOString(),
    prefix,
    // The key itself stays out of the report and its file.
    options: { ...options, apiKey: options.apiKey ? "(sent)" : undefined },
    host: { cpus: cpus().length, loadavg: loadavg() },
    servicesStartedByBench: false,
  }
  // The soak runs alone: its short retention would change what the other phases measure.
  const wants = (phase: Phase) => (options.phase === "all" && phase !== "soak") || options.phase === phase
  cleanups.push(() =>
    deleteQueuesAndExchanges(
      {
        queues: [...Object.values(ceilingNames(prefix)), ...Object.values(floorNames(prefix))],
        exchanges: [],
      },
      options.amqpUrl,
    ),
  )

  if (wants("scoring")) {
    progress(`scoring: ${options.scoringRounds} reviews a run, best of three, per language`)
    report.scoring = await measureScoring(options.scoringRounds)
  }
  const needsServices = wants("throughput") || wants("latency") || wants("delayed") || wants("soak")
  const { gatewayUrl, processes, store } = needsServices
    ? await servicesUnderTest(options, prefix)
    : { gatewayUrl: undefined, processes: [], store: null }
  report.servicesStartedByBench = processes.length > 0
  const memory: Record<string, MemoryRow> = {}
  if (gatewayUrl) {
    progress(`warming up with ${options.warmup} tasks`)
    await warmUp(gatewayUrl, options.warmup, 8, options.reviewBytes, options.apiKey)
    sampleRss(processes, memory, "startMb")
  }

  if (wants("ceiling")) report.ceiling = await ceilingPhase(options, prefix, processes)
  if (wants("throughput") && gatewayUrl) {
    const throughput = await throughputPhase(options, gatewayUrl, processes, memory)
    const ratioToCeiling = report.ceiling ? throughput.endToEndPerSecond / report.ceiling.perSecond : null
    report.throughput = { ...throughput, ratioToCeiling }
  }
  if (wants("latency") && gatewayUrl) report.latency = await latencyPhase(options, prefix, gatewayUrl)
  if (wants("delayed") && gatewayUrl) {
    progress(`delayed: ${options.delayed} tasks with countdowns of 1 to 5 s`)
    report.delayed = await measureDelayLateness(
      gatewayUrl,
      options.delayed,
      options.concurrency,
      options.settleTimeoutMs,
      options.apiKey,
    )
  }

  if (wants("soak") && gatewayUrl) {
    if (!store)
      throw new Error("--soak reads the store's database: it starts the services itself (no --gateway-url)")
    report.soak = await soakPhase(options, gatewayUrl, store)
  }

  if (processes.length > 0) {
    sampleRss(processes, memory, "endMb")
    report.memory = memory
  }
  return report
}

// --- output

const fixed = (n: number | null | undefined, digits = 1) => (n == null ? "—" : n.toFixed(digits))
const perSecond = (n: number) => `${Math.round(n).toLocaleString("en")}/s`

function formatTable(rows: (string | number)[][]): string {
  const cells = rows.map((row) => row.map(String))
  const widths = cells[0]?.map((_, i) => Math.max(...cells.map((row) => row[i]?.length ?? 0))) ?? []
  return cells
    .map((row) =>
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
        .join("  "),
    )
    .join("\n")
}

/** CPU per process, and their sum: near 100% × cores, the machine (shared with others) is the limit. */
function cpuTable(cpu: CpuUsage): string {
  const entries = Object.entries(cpu.seconds)
  const total = entries.reduce((sum, [, s]) => sum + s, 0)
  const rows = [...entries, ["total", total] as const].map(([label, s]) => [
    `  ${label}`,
    fixed(s, 2),
    `${fixed((s / cpu.wallSeconds) * 100, 0)}%`,
  ])
  return formatTable([["  process", "CPU s", "of a core"], ...rows])
}

const counts = (table: Record<string, number>) =>
  Object.entries(table)
    .map(([code, n]) => `${n}×${code}`)
    .join(", ") || "none"

function ceilingLines(ceiling: NonNullable<Report["ceiling"]>, o: Options): string[] {
  return [
    `broker ceiling  ${ceiling.messages} tasks in ${fixed(ceiling.seconds, 2)} s = ${perSecond(ceiling.perSecond)}` +
      `  (task ${ceiling.taskBytes} B, event ${ceiling.eventBytes} B, window ${o.window}, prefetch ${o.ceilingPrefetch})`,
    cpuTable(ceiling.cpu),
  ]
}

function throughputLines(t: NonNullable<Report["throughput"]>): string[] {
  const ratio = t.ratioToCeiling === null ? "—" : `${fixed(t.ratioToCeiling * 100)}%`
  return [
    `throughput      submitted ${t.submitted}  accepted ${t.accepted}  non-202 ${counts(t.rejected)}`,
    `                succeeded ${t.succeeded}  failed ${t.failed}  lost ${t.lost}`,
    `                submit ${perSecond(t.submitPerSecond)} (${fixed(t.submitSeconds, 2)} s)` +
      `  end-to-end ${perSecond(t.endToEndPerSecond)} (${fixed(t.endToEndSeconds, 2)} s) = ${ratio} of the ceiling`,
    `                polls ${t.polls} (${fixed(t.polls / Math.max(1, t.accepted), 2)} per task) in ${t.pollRequests} requests, failed polls ${counts(t.pollErrors)}`,
    cpuTable(t.cpu),
  ]
}

function latencyTable({ latency, throughput, options }: Report): string {
  const row = (label: string, p: Percentiles) => [
    label,
    ...[p.p50, p.p90, p.p99, p.max].map((n) => fixed(n, 2)),
    p.samples,
  ]
  const rows: (string | number)[][] = [["latency, ms", "p50", "p90", "p99", "max", "samples"]]
  if (latency)
    rows.push(
      row("  POST ?wait=10 → 200", latency.wait),
      row("  POST, GET every 1 ms", latency.poll),
      row("  floor: bare chain (see bench/floor.ts)", latency.floor.chain),
      row("  floor: the task's two confirms", latency.floor.confirm),
    )
  if (throughput) {
    rows.push(
      row("  under load: one POST", throughput.submitRequestMs),
      row(`  under load: one ${options.follow === "get" ? "GET" : "lookup"}`, throughput.pollRequestMs),
      row("  under load: submit → seen final", throughput.seenFinalMs),
    )
  }
  return formatTable(rows)
}

function memoryLines(memory: Record<string, MemoryRow>): string[] {
  const rows = Object.entries(memory).map(([label, m]) => [
    `  ${label}`,
    fixed(m.startMb),
    fixed(m.at10kMb),
    fixed(m.endMb),
    fixed(m.peakMb),
    m.growthPct === null ? "—" : `${m.growthPct >= 0 ? "+" : ""}${fixed(m.growthPct)}%`,
  ])
  const lines = [
    formatTable([["RSS, MB", "start", `at ${RSS_MILESTONE / 1000}k`, "end", "peak", "10k→end"], ...rows]),
  ]
  for (const [label, m] of Object.entries(memory)) {
    const trend = m.everyTenKMb.map((mb) => fixed(mb, 0)).join(" ")
    if (m.everyTenKMb.length > 2) lines.push(`  ${label} every 10k tasks: ${trend}`)
  }
  return lines
}

function delayedLine({ tasks, lost, early, lateness: l }: DelayedResult): string {
  return `delayed tasks: ${tasks} (countdowns 1–5 s), lateness eta → started p50 ${fixed(l.p50, 0)} ms  p90 ${fixed(l.p90, 0)} ms  p99 ${fixed(l.p99, 0)} ms  max ${fixed(l.max, 0)} ms; ${lost} not done, ${early} early`
}

function soakRow(s: SoakSample): string[] {
  return [
    `${fixed(s.seconds, 0)} s`,
    s.submitted.toLocaleString("en"),
    s.final.toLocaleString("en"),
    s.expired.toLocaleString("en"),
    s.held.toLocaleString("en"),
    fixed(s.fileMb),
    fixed(s.walMb),
  ]
}

/** About ten samples spread over the run, the last of the flow, and the database once every result expired. */
function soakLines(soak: NonNullable<Report["soak"]>): string[] {
  const step = Math.max(1, Math.round(soak.samples.length / 10))
  const shown = soak.samples.filter((_, i) => i % step === 0 || i === soak.samples.length - 1)
  // The size is SQLite's file (the log beside it), or PostgreSQL's tables with their indexes.
  const header = ["  time", "submitted", "final", "expired", "held", "size MB", "WAL MB"]
  const rows = shown.map((s) => soakRow(s).map((cell, i) => (i === 0 ? `  ${cell}` : cell)))
  if (soak.drained)
    rows.push(soakRow(soak.drained).map((cell, i) => (i === 0 ? `  ${cell} (drained)` : cell)))
  // While tasks flow: from the sample past half of them to the last before every one was final.
  const flowing = soak.samples.filter((s) => s.final < soak.accepted)
  const [mid, end] = [flowing.find((s) => s.submitted >= soak.accepted / 2), flowing.at(-1)]
  const peak = Math.max(...soak.samples.map((s) => s.fileMb))
  return [
    `soak            ${soak.accepted} accepted, ${soak.final} final, ${soak.lost} lost, non-202 ${counts(soak.rejected)}, ${perSecond(soak.perSecond)} over ${fixed(soak.seconds, 0)} s; RESULT_EXPIRES ${soak.resultExpires}`,
    `                size at half the tasks ${fixed(mid?.fileMb)} MB, at the last task ${fixed(end?.fileMb)} MB, peak ${fixed(peak)} MB; drained ${fixed(soak.drained?.fileMb)} MB`,
    `                expiry ${soak.expiryBatches} batches, ${fixed((soak.expirySeconds / Math.max(1, soak.expiryBatches)) * 1000)} ms each, ${fixed((soak.expirySeconds / Math.max(1, soak.drained?.expired ?? soak.final)) * 1e6)} µs per task`,
    ...(soak.vacuumStandIn
      ? [
          `                the server's autovacuum is off: the soak ran VACUUM (ANALYZE) on the run's database every 10 s in its place`,
        ]
      : []),
    formatTable([header, ...rows]),
  ]
}

function formatReport(report: Report): string {
  const { options: o, host } = report
  const lines = [
    `benchmark ${report.timestamp}  prefix ${report.prefix}  host ${host.cpus} cores, load ${host.loadavg.map((l) => l.toFixed(2)).join(" ")}`,
    `tasks ${o.phase === "soak" ? o.soakTasks : o.tasks}  reviews ${o.reviewBytes || "90–130"} B  concurrency ${o.concurrency}  following by ${o.follow} ×${o.pollConcurrency}  prefetch ${o.prefetch}  workers ${o.workers}  ${o.queueType} queues  store ${o.store ?? "sqlite"}×${o.storeReplicas ?? 1}${o.apiKey ? "  with an API key" : ""}`,
    `runtimes  gateway ${o.runtimes.gateway ?? "bun"}  worker ${o.runtimes.worker ?? "bun"}  store ${o.runtimes.store ?? "bun"}`,
  ]
  if (!report.servicesStartedByBench && o.gatewayUrl) {
    lines.push(
      `services already running behind ${o.gatewayUrl}: not started here, so no RSS or service CPU, and --prefetch and --workers do not apply`,
    )
  }
  if (report.scoring) lines.push("", ...scoringLines(report.scoring))
  if (report.ceiling) lines.push("", ...ceilingLines(report.ceiling, o))
  if (report.throughput) lines.push("", ...throughputLines(report.throughput))
  if (report.latency || report.throughput) lines.push("", latencyTable(report))
  if (report.delayed) lines.push("", delayedLine(report.delayed))
  if (report.soak) lines.push("", ...soakLines(report.soak))
  if (report.memory) lines.push("", ...memoryLines(report.memory))
  return lines.join("\n")
}

function saveReport(report: Report): string {
  const dir = join(import.meta.dir, "results")
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `${report.timestamp.replace(/[:.]/g, "-")}.json`)
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
  return file
}

async function main(): Promise<void> {
  const { help, options } = parseOptions(process.argv.slice(2))
  if (help) {
    console.log(USAGE)
    return
  }
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      progress(`${signal}: stopping the services and deleting the run's queues and exchanges`)
      cleanUp().finally(() => process.exit(130))
    })
  }
  let report: Report
  try {
    report = await run(options)
  } finally {
    await cleanUp()
  }
  progress(`report written to ${saveReport(report)}`)
  console.log(formatReport(report))
  console.log(JSON.stringify(report))
}

main().catch((err: Error) => {
  console.error(`[bench] failed: ${err.stack ?? err.message}`)
  process.exit(1)
})

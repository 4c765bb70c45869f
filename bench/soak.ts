// The retention soak (`npm run bench -- --soak 200000 --result-expires 10s`): many tasks through the API under a
// short RESULT_EXPIRES, while the status store's database is sampled: the SQLite file and its log, or the
// PostgreSQL tables with their indexes. Its size should level off at what one retention window holds (and the
// SQLite file fall back once the flow stops and the last results expire). Progress is read from the store's own
// counters (/metrics), not by polling the tasks, which expire under the reader.
import { statSync } from "node:fs"
import postgres from "postgres"
import { HttpClient } from "./http-client.ts"
import { forEachConcurrently, reviewText, submit } from "./load.ts"
import type { StoreDatabase } from "./stack.ts"

export interface SoakOptions {
  gatewayUrl: string
  /** Every store replica: each counts what it applied and expired itself. */
  storeUrls: string[]
  database: StoreDatabase
  tasks: number
  concurrency: number
  reviewBytes: number
  apiKey: string | undefined
  settleTimeoutMs: number
  resultExpiresMs: number
  /** Called with each sample as it is taken, to show progress. */
  onSample(sample: SoakSample): void
  log(message: string): void
}

export interface SoakSample {
  seconds: number
  submitted: number
  /** Tasks that reached a final state (events applied by the store). */
  final: number
  expired: number
  /** Tasks the store holds now, of any status. */
  held: number
  /** The SQLite file, or the PostgreSQL tables with their indexes and TOAST, in MB. */
  fileMb: number
  /** SQLite's write-ahead log, in MB; null on PostgreSQL. */
  walMb: number | null
}

export interface SoakResult {
  accepted: number
  rejected: Record<string, number>
  final: number
  lost: number
  seconds: number
  perSecond: number
  samples: SoakSample[]
  /** After the flow stopped and every result expired. */
  drained: SoakSample | null
  /** Expiry batches that deleted something, and the seconds they took in all. */
  expiryBatches: number
  expirySeconds: number
  /** Whether the soak vacuumed the PostgreSQL database itself, the server's autovacuum being off. */
  vacuumStandIn: boolean
}

const SAMPLE_MS = 2000

/** Sums of the replicas' counters that the soak follows; the tasks held are the database's, which each reports. */
async function storeCounters(storeUrls: string[]) {
  const each = await Promise.all(storeUrls.map(replicaCounters))
  const sum = (key: keyof (typeof each)[number]) => each.reduce((total, counters) => total + counters[key], 0)
  return {
    final: sum("final"),
    expired: sum("expired"),
    held: each[0]?.held ?? 0,
    expiryBatches: sum("expiryBatches"),
    expirySeconds: sum("expirySeconds"),
  }
}

async function replicaCounters(storeUrl: string) {
  const text = await (await fetch(`${storeUrl}/metrics`)).text()
  const sum = (matches: (line: string) => boolean) =>
    text
      .split("\n")
      .filter((line) => !line.startsWith("#") && matches(line))
      .reduce((total, line) => total + Number(line.slice(line.lastIndexOf(" ") + 1)), 0)
  return {
    final: sum(
      (line) =>
        line.startsWith("polarity_task_status_changes_total") && /status="(SUCCESS|FAILURE)"/.test(line),
    ),
    expired: sum((line) => line.startsWith("polarity_results_expired_total")),
    held: sum((line) => line.startsWith("polarity_tasks{")),
    expiryBatches: sum((line) => line.startsWith("polarity_result_expiry_duration_seconds_count")),
    expirySeconds: sum((line) => line.startsWith("polarity_result_expiry_duration_seconds_sum")),
  }
}

const megabytes = (path: string) => {
  try {
    return statSync(path).size / 1_048_576
  } catch {
    return 0
  }
}

/**
 * Autovacuum's stand-in where the server has it off (this machine's does): deleted rows leave dead tuples that
 * only a VACUUM makes reusable, and a store relies on autovacuum for that. Its default naptime is a minute.
 */
const STAND_IN_VACUUM_MS = 10_000

/** How big the store's database is now: `{ fileMb, walMb }`. */
async function databaseSizer(database: StoreDatabase, log: (message: string) => void) {
  if ("sqlitePath" in database) {
    const path = database.sqlitePath
    const measure = async () => ({ fileMb: megabytes(path), walMb: megabytes(`${path}-wal`) })
    return { measure, standIn: false, close() {} }
  }
  const sql = postgres(database.postgresUrl, { max: 2, onnotice: () => {} })
  const [setting] = await sql<{ autovacuum: string }[]>`SHOW autovacuum`
  let vacuuming: ReturnType<typeof setInterval> | undefined
  if (setting?.autovacuum !== "on") {
    log(
      `autovacuum is off on this server: the soak runs VACUUM (ANALYZE) on its database every ${STAND_IN_VACUUM_MS / 1000} s`,
    )
    vacuuming = setInterval(() => void sql`VACUUM (ANALYZE)`.catch(() => {}), STAND_IN_VACUUM_MS)
  }
  return {
    standIn: vacuuming !== undefined,
    async measure() {
      const [row] = await sql<
        { bytes: string }[]
      >`SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) AS bytes
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname = current_schema()`
      return { fileMb: Number(row?.bytes ?? 0) / 1_048_576, walMb: null }
    },
    close: () => {
      clearInterval(vacuuming)
      return sql.end({ timeout: 5 })
    },
  }
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const client = new HttpClient(options.gatewayUrl, options.apiKey)
  const start = performance.now()
  const rejected: Record<string, number> = {}
  let accepted = 0
  let submitted = 0
  const samples: SoakSample[] = []
  // The warm-up's tasks are counted already; the soak's figures start from here.
  const before = await storeCounters(options.storeUrls)
  const sizer = await databaseSizer(options.database, options.log)
  const sample = async (): Promise<SoakSample> => {
    const counters = await storeCounters(options.storeUrls)
    const taken = {
      seconds: (performance.now() - start) / 1000,
      submitted,
      final: counters.final - before.final,
      expired: counters.expired - before.expired,
      held: counters.held,
      ...(await sizer.measure()),
    }
    options.onSample(taken)
    return taken
  }
  const sampler = setInterval(() => {
    sample().then(
      (taken) => samples.push(taken),
      () => {},
    )
  }, SAMPLE_MS)
  try {
    await forEachConcurrently(options.tasks, options.concurrency, async (index) => {
      const res = await submit(client, reviewText(index, options.reviewBytes)).catch(() => null)
      submitted++
      if (res?.status === 202) accepted++
      else rejected[res?.status ?? 0] = (rejected[res?.status ?? 0] ?? 0) + 1
    })
    let last = await sample()
    let lastChange = performance.now()
    while (last.final < accepted && performance.now() - lastChange < options.settleTimeoutMs) {
      await Bun.sleep(SAMPLE_MS)
      const next = await sample()
      if (next.final > last.final) lastChange = performance.now()
      last = next
    }
    const seconds = (performance.now() - start) / 1000
    const drained = await drain(options, sample)
    const after = await storeCounters(options.storeUrls)
    return {
      vacuumStandIn: sizer.standIn,
      expiryBatches: after.expiryBatches - before.expiryBatches,
      expirySeconds: after.expirySeconds - before.expirySeconds,
      accepted,
      rejected,
      final: last.final,
      lost: accepted - last.final,
      seconds,
      perSecond: last.final / seconds,
      samples,
      drained,
    }
  } finally {
    clearInterval(sampler)
    client.close()
    await sizer.close()
  }
}

/** Once the flow stopped: wait until the store holds nothing (every result expired), and sample that. */
async function drain(options: SoakOptions, sample: () => Promise<SoakSample>): Promise<SoakSample | null> {
  const deadline = performance.now() + options.resultExpiresMs + options.settleTimeoutMs
  while (performance.now() < deadline) {
    const now = await sample()
    if (now.held === 0) {
      // One more pause: the last batch's vacuum and a checkpoint of the log come just after it.
      await Bun.sleep(SAMPLE_MS)
      return sample()
    }
    await Bun.sleep(SAMPLE_MS)
  }
  return null
}

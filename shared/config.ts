// Environment parsing: each service declares a valibot schema over process.env, built from these pieces.
import * as v from "valibot"
import { explainIssues, MAX_RETRIES_PER_RUN } from "./contracts.ts"

/** An integer env var with a default and bounds; the message names the variable and the allowed range. */
export function integerVar(fallback: number, min: number, max = Number.MAX_SAFE_INTEGER) {
  return v.pipe(
    v.optional(v.string(), String(fallback)),
    v.trim(),
    v.regex(/^-?\d+$/, "must be a whole number"),
    v.transform(Number),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  )
}

const DURATION_UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const

/**
 * A duration as milliseconds: a number with a unit (`500ms`, `90s`, `15m`, `12h`, `1d`; a bare number is in seconds,
 * as Celery's `result_expires` is), at least `minMs`; `never` (or `0`) reads as 0 when `never` is allowed.
 */
export function durationVar(fallback: string, minMs: number, { never = false } = {}) {
  const problem = `must be a duration such as 90s, 15m, 12h or 1d, of at least ${minMs} ms${never ? ", or never" : ""}`
  return v.pipe(
    v.optional(v.string(), fallback),
    v.trim(),
    v.toLowerCase(),
    v.transform((text) => {
      if (never && (text === "never" || text === "0")) return 0
      const match = /^(\d+)(ms|s|m|h|d)?$/.exec(text)
      if (!match) return Number.NaN
      const unit = (match[2] ?? "s") as keyof typeof DURATION_UNITS_MS
      return Number(match[1]) * DURATION_UNITS_MS[unit]
    }),
    v.check((ms) => (never && ms === 0) || (Number.isSafeInteger(ms) && ms >= minMs), problem),
  )
}

export function booleanVar(fallback: boolean) {
  return v.pipe(
    v.optional(v.string(), String(fallback)),
    v.trim(),
    v.toLowerCase(),
    v.picklist(["true", "false", "1", "0", "yes", "no"], "must be true or false"),
    v.transform((value) => value === "true" || value === "1" || value === "yes"),
  )
}

export function stringVar(fallback: string) {
  return v.pipe(v.optional(v.string(), fallback), v.trim(), v.nonEmpty("must not be empty"))
}

export function picklistVar<const T extends readonly [string, ...string[]]>(options: T, fallback: T[number]) {
  return v.pipe(
    v.optional(v.string(), fallback),
    v.trim(),
    v.picklist(options, `must be one of ${options.join(", ")}`),
  )
}

export const DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672"

/**
 * What is wrong with a list of broker addresses, or undefined. The messages never repeat an address: it may
 * hold a password. The addresses are nodes of one cluster, so only host and port may differ: that is also what
 * lets a failover point the connection at another node without anything else changing.
 */
function brokerAddressProblem(addresses: string[]): string | undefined {
  const parsed: { cluster: string; node: string }[] = []
  for (const [i, address] of addresses.entries()) {
    const which = addresses.length > 1 ? `address ${i + 1} of ${addresses.length}` : "the address"
    if (!address) return `${which} is empty`
    const url = URL.canParse(address) ? new URL(address) : undefined
    if (!url || !["amqp:", "amqps:"].includes(url.protocol) || !url.hostname)
      return `${which} must be an amqp:// or amqps:// URL with a host`
    const vhost = decodeURIComponent(url.pathname.slice(1)) || "/"
    const port = url.port || (url.protocol === "amqps:" ? "5671" : "5672")
    parsed.push({
      cluster: JSON.stringify([url.protocol, url.username, url.password, vhost]),
      node: `${url.hostname}:${port}`,
    })
  }
  const nodes = new Set<string>()
  for (const [i, { cluster, node }] of parsed.entries()) {
    if (cluster !== parsed[0]?.cluster)
      return `address ${i + 1} differs from address 1 in scheme, user, password or virtual host: list the nodes of one cluster, which differ only in host and port`
    if (nodes.has(node)) return `address ${i + 1} names the host and port of an earlier one`
    nodes.add(node)
  }
  return undefined
}

/** Comma-separated broker addresses, tried in order; one address is a list of one. */
const brokerAddresses = v.pipe(
  v.string(),
  v.transform((list) => list.split(",").map((address) => address.trim())),
  v.check(
    (addresses) => brokerAddressProblem(addresses) === undefined,
    (issue) => brokerAddressProblem(issue.input as string[]) ?? "",
  ),
)

/** What every service needs to reach the broker and name its topology. */
export const BrokerEnv = {
  /** One broker URL, or the nodes of a cluster, comma-separated; unset, a local broker. */
  AMQP_URL: v.optional(brokerAddresses),
  /** The same as AMQP_URL, under the name other tools use for a list; set one of the two. */
  AMQP_URLS: v.optional(brokerAddresses),
  AMQP_PREFIX: v.pipe(
    v.optional(v.string(), "sentiment."),
    v.regex(/^[\w.-]*$/, "may hold only letters, digits, '.', '_' and '-'"),
  ),
  AMQP_HEARTBEAT_SECONDS: integerVar(10, 0, 600),
  QUEUE_TYPE: picklistVar(["classic", "quorum"], "classic"),
  TASK_QUEUE_MAX_LENGTH: integerVar(1_000_000, 1),
  /** Retries after a failed attempt (Celery's max_retries); 0 disables retries. */
  MAX_RETRIES: integerVar(5, 0, MAX_RETRIES_PER_RUN),
  /** Wait before the first retry; each later retry waits twice as long, up to RETRY_MAX_DELAY_MS. */
  RETRY_BASE_DELAY_MS: integerVar(1000, 1, 86_400_000),
  RETRY_MAX_DELAY_MS: integerVar(600_000, 1, 86_400_000),
  /** Quorum queues only: deliveries of one message before the broker dead-letters it. */
  QUORUM_DELIVERY_LIMIT: integerVar(20, 1, 10_000),
  LOG_LEVEL: picklistVar(["debug", "info", "warn", "error"], "info"),
}

export type BrokerConfig = v.InferOutput<v.ObjectSchema<typeof BrokerEnv, undefined>>

/** The broker addresses to connect to, in order of preference. */
export function brokerUrls(config: Pick<BrokerConfig, "AMQP_URL" | "AMQP_URLS">): string[] {
  return config.AMQP_URLS ?? config.AMQP_URL ?? [DEFAULT_AMQP_URL]
}

/** Two places for one list would leave a reader guessing which one the service used. */
const oneBrokerList = (config: Record<string, unknown>) =>
  config.AMQP_URL === undefined || config.AMQP_URLS === undefined

export class ConfigError extends Error {
  override name = "ConfigError"
}

/** Parse the environment against a schema; a bad value stops start-up with every problem named. */
export function loadConfig<TEntries extends v.ObjectEntries>(
  entries: TEntries,
  env: Record<string, string | undefined> = process.env,
): v.InferOutput<v.ObjectSchema<TEntries, undefined>> {
  const result = v.safeParse(v.object(entries), env)
  if (!result.success) throw new ConfigError(`invalid configuration: ${explainIssues(result.issues)}`)
  if (!oneBrokerList(result.output))
    throw new ConfigError(
      "invalid configuration: AMQP_URL and AMQP_URLS are both set: set one, with every address",
    )
  return result.output
}

/** Warn about settings that are fine on a laptop and risky anywhere else. */
export function productionRisks(amqpUrl: string): string[] {
  const url = new URL(amqpUrl)
  const local = ["127.0.0.1", "localhost", "::1", "[::1]"].includes(url.hostname)
  return !local && url.username === "guest" ? ["guest credentials on a non-local broker"] : []
}

// Environment parsing: each service declares a valibot schema over process.env, built from these pieces.
import * as v from "valibot"
import { explainIssues } from "./contracts.ts"

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

/** What every service needs to reach the broker and name its topology. */
export const BrokerEnv = {
  AMQP_URL: v.pipe(
    stringVar("amqp://guest:guest@127.0.0.1:5672"),
    v.url("must be an amqp:// or amqps:// URL"),
  ),
  AMQP_PREFIX: v.pipe(
    v.optional(v.string(), "sentiment."),
    v.regex(/^[\w.-]*$/, "may hold only letters, digits, '.', '_' and '-'"),
  ),
  AMQP_HEARTBEAT_SECONDS: integerVar(10, 0, 600),
  QUEUE_TYPE: picklistVar(["classic", "quorum"], "classic"),
  TASK_QUEUE_MAX_LENGTH: integerVar(1_000_000, 1),
  /** Retries after a failed attempt (Celery's max_retries); 0 disables retries. */
  MAX_RETRIES: integerVar(5, 0, 50),
  /** Wait before the first retry; each later retry waits twice as long, up to RETRY_MAX_DELAY_MS. */
  RETRY_BASE_DELAY_MS: integerVar(1000, 1, 86_400_000),
  RETRY_MAX_DELAY_MS: integerVar(600_000, 1, 86_400_000),
  /** Quorum queues only: deliveries of one message before the broker dead-letters it. */
  QUORUM_DELIVERY_LIMIT: integerVar(20, 1, 10_000),
  LOG_LEVEL: picklistVar(["debug", "info", "warn", "error"], "info"),
}

export type BrokerConfig = v.InferOutput<v.ObjectSchema<typeof BrokerEnv, undefined>>

export class ConfigError extends Error {
  override name = "ConfigError"
}

/** Parse the environment against a schema; a bad value stops start-up with every problem named. */
export function loadConfig<TEntries extends v.ObjectEntries>(
  entries: TEntries,
  env: Record<string, string | undefined> = process.env,
): v.InferOutput<v.ObjectSchema<TEntries, undefined>> {
  const result = v.safeParse(v.object(entries), env)
  if (result.success) return result.output
  throw new ConfigError(`invalid configuration: ${explainIssues(result.issues)}`)
}

/** Warn about settings that are fine on a laptop and risky anywhere else. */
export function productionRisks(amqpUrl: string): string[] {
  const url = new URL(amqpUrl)
  const local = ["127.0.0.1", "localhost", "::1", "[::1]"].includes(url.hostname)
  return !local && url.username === "guest" ? ["guest credentials on a non-local broker"] : []
}

// Periodic schedules: whether a definition is one (croner reads the cron expressions), when its occurrences fall,
// what a firing does about occurrences it missed, and the task id of each occurrence. The gateway checks the
// schedules it is given; the status store, which fires them, checks what it merges and computes the rest.
import { createHash } from "node:crypto"
import { Cron } from "croner"
import type { ScheduleDefinition, ScheduleInput, SchedulePatch } from "./contracts.ts"

const UTC = "UTC"

/** Why a definition is not a schedule, naming the field, or null when it is one. */
export function scheduleProblem(definition: ScheduleDefinition): string | null {
  const { cron, timezone, every } = definition
  if (cron !== null && every !== null) return "give cron or every, not both"
  if (cron === null && every === null) {
    return "a schedule needs cron (a cron expression, with an optional timezone) or every (seconds)"
  }
  if (timezone !== null && cron === null) return "timezone: a timezone goes with cron, not with every"
  if (cron === null) return null
  if (timezone !== null && !isTimeZone(timezone)) {
    return `timezone: "${timezone}" is not an IANA time zone, such as "UTC" or "Europe/Berlin"`
  }
  let parsed: Cron
  try {
    parsed = cronOf(cron, timezone)
  } catch (err) {
    const reason = (err as Error).message.replace(/^CronPattern: /, "")
    return `cron: "${cron}" is not a cron expression: ${reason}`
  }
  if (parsed.nextRun() === null) return `cron: "${cron}" never fires`
  return null
}

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: name })
    return true
  } catch {
    return false
  }
}

function cronOf(cron: string, timezone: string | null): Cron {
  return new Cron(cron, { timezone: timezone ?? UTC, paused: true })
}

/** A new schedule's definition from its POST body: the defaults made explicit. */
export function definitionOf(input: ScheduleInput): ScheduleDefinition {
  return {
    cron: input.cron ?? null,
    timezone: input.cron !== undefined ? (input.timezone ?? UTC) : (input.timezone ?? null),
    every: input.every ?? null,
    missed: input.missed ?? "skip",
    task: input.task,
  }
}

/** A definition with a patch applied: a new cron replaces every, and the other way round. */
export function patchDefinition(definition: ScheduleDefinition, patch: SchedulePatch): ScheduleDefinition {
  const next = { ...definition }
  if (patch.every !== undefined) Object.assign(next, { every: patch.every, cron: null, timezone: null })
  if (patch.cron !== undefined) Object.assign(next, { cron: patch.cron, every: null })
  if (patch.cron !== undefined && next.timezone === null) next.timezone = UTC
  if (patch.timezone !== undefined) next.timezone = patch.timezone
  if (patch.missed !== undefined) next.missed = patch.missed
  if (patch.task !== undefined) next.task = patch.task
  return next
}

/** The first occurrence after `after` (milliseconds since the epoch), or null for a cron that fires no more. */
export function nextOccurrence(definition: ScheduleDefinition, after: number): number | null {
  if (definition.every !== null) {
    const periodMs = definition.every * 1000
    return (Math.floor(after / periodMs) + 1) * periodMs
  }
  const next = cronOf(definition.cron ?? "", definition.timezone).nextRun(new Date(after))
  return next ? next.getTime() : null
}

/** The last occurrence at or before `at`, or null when there is none. */
export function latestOccurrence(definition: ScheduleDefinition, at: number): number | null {
  if (definition.every !== null) {
    const periodMs = definition.every * 1000
    return Math.floor(at / periodMs) * periodMs
  }
  // croner counts in whole seconds and looks strictly before its reference: the second after `at` takes `at` in.
  const [latest] = cronOf(definition.cron ?? "", definition.timezone).previousRuns(1, new Date(at + 1000))
  return latest && latest.getTime() <= at ? latest.getTime() : null
}

export interface RunPlan {
  /** The occurrence to fire now, if any. */
  fire: number | null
  /** Occurrences passed over without a run. */
  missed: number
  /** The schedule's next occurrence after this firing. */
  next: number | null
}

/**
 * What a schedule due at `dueAt` does at `now`. Only its latest occurrence may fire: it fires if it is at most
 * `graceMs` late, or, late or not, under `run_once`; every earlier one (the store was down, or busy) is missed.
 */
export function planRun(
  definition: ScheduleDefinition,
  dueAt: number,
  now: number,
  graceMs: number,
): RunPlan {
  const latest = Math.max(dueAt, latestOccurrence(definition, now) ?? dueAt)
  const fires = now - latest <= graceMs || definition.missed === "run_once"
  let missed = fires ? 0 : 1
  for (let at = dueAt; at < latest && missed < 1000; at = nextOccurrence(definition, at) ?? latest) missed++
  return { fire: fires ? latest : null, missed, next: nextOccurrence(definition, latest) }
}

/**
 * The task id of an occurrence: the same on every replica, so that an occurrence is one task however many
 * replicas fire it. Shaped as a UUIDv7 whose time is the occurrence (task lists sort by it); the rest is a hash
 * of the schedule, its creation (a schedule deleted and made again under its id gets new ids) and the occurrence.
 */
export function occurrenceTaskId(scheduleId: string, createdAt: number, occurrence: number): string {
  const bytes = new Uint8Array(16)
  bytes.set(
    createHash("sha256").update(`${scheduleId}\n${createdAt}\n${occurrence}`).digest().subarray(0, 10),
    6,
  )
  for (let i = 5, time = occurrence; i >= 0; i--, time = Math.floor(time / 256)) bytes[i] = time % 256
  bytes[6] = 0x70 | ((bytes[6] ?? 0) & 0x0f)
  bytes[8] = 0x80 | ((bytes[8] ?? 0) & 0x3f)
  const hex = Buffer.from(bytes).toString("hex")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

// A task's row as a monotonic state machine over its events, and how a row reads as the API's records. Pure:
// every backend applies the same `mergeEvent`, under a lock on the row, so that any order of the same events,
// on any replica, converges on the same row.
import {
  FINAL_STATUSES,
  type GroupRecord,
  MAX_RETRIES_PER_RUN,
  TASK_STATUSES,
  type TaskEvent,
  type TaskKind,
  type TaskProgress,
  type TaskRecord,
  type TaskStatus,
} from "../../shared/contracts.ts"

export interface TaskRow {
  task_id: string
  kind: string | null
  status: TaskStatus
  /** Orders a task's events (run, attempt, stage): an event applies only over a lower rank. -1: no event yet. */
  rank: number
  attempts: number
  input: string | null
  result: string | null
  error: string | null
  group_id: string | null
  group_index: number | null
  submitted_at: number | null
  started_at: number | null
  finished_at: number | null
  /** The latest progress report of the task's current run, as JSON (a TaskProgress); null when none. */
  progress_report: string | null
  /** The API key's name that submitted it (from its PENDING event); null when the API was open. */
  owner: string | null
  /** When a delayed task is due; null for one due at once. */
  eta: number | null
  /** Where its record is POSTed once it is final (a completion webhook); null for none. */
  callback_url: string | null
}

/** The columns of a task row, in the order every backend writes them. */
export const TASK_COLUMNS = [
  "task_id",
  "kind",
  "status",
  "rank",
  "attempts",
  "input",
  "result",
  "error",
  "group_id",
  "group_index",
  "submitted_at",
  "started_at",
  "finished_at",
  "progress_report",
  "owner",
  "eta",
  "callback_url",
] as const satisfies readonly (keyof TaskRow)[]

export interface GroupRow {
  group_id: string
  size: number
  submitted_at: number
  owner: string | null
}

/**
 * What a caller may see: everything without an `owner` (an admin, the dashboard, an open API), else only what
 * that key submitted. Anything else reads as absent, so another key's task is a 404 like a task never submitted.
 */
export function visibleTo<TRow extends { owner: string | null }>(
  row: TRow | null,
  owner: string | undefined,
): TRow | null {
  return row && (owner === undefined || row.owner === owner) ? row : null
}

const inFlight = (row: TaskRow | null): row is TaskRow & { owner: string } =>
  row !== null && row.owner !== null && !FINAL_STATUSES.has(row.status)

/**
 * How the events changed each owner's tasks in flight (not final): a task counts for its owner from its PENDING
 * until its final state, whatever order the events came in. Only the owners whose count changed are listed.
 */
export function inFlightDeltas(applied: Applied[]): Map<string, number> {
  const deltas = new Map<string, number>()
  const add = (owner: string, delta: number) => deltas.set(owner, (deltas.get(owner) ?? 0) + delta)
  for (const { before, after } of applied) {
    if (inFlight(before)) add(before.owner, -1)
    if (inFlight(after)) add(after.owner, 1)
  }
  for (const [owner, delta] of deltas) if (delta === 0) deltas.delete(owner)
  return deltas
}

/** An event new to the inbox, with the task's row before it (null: the task's first event) and after it. */
export interface Applied {
  event: TaskEvent
  before: TaskRow | null
  after: TaskRow
}

// Rank orders events within a task: by run (a replay starts a new one), then by attempt and stage.
// Within a run the final states absorb everything after them, and REVOKED outranks the others: a worker that ran
// a task before it heard of the revoke, or whose terminated attempt ended after all, cannot overwrite it, whatever
// order the events arrive in.
const RUN_SPAN = 1_000_000
// A delayed task's PENDING event makes it SCHEDULED, at PENDING's rank: only the clock moves it on to PENDING.
const STAGE: Record<TaskStatus, number> = {
  SCHEDULED: 0,
  PENDING: 0,
  STARTED: 1,
  RETRY: 2,
  SUCCESS: RUN_SPAN - 2,
  FAILURE: RUN_SPAN - 2,
  EXPIRED: RUN_SPAN - 2,
  REVOKED: RUN_SPAN - 1,
}

/** The run a row is in: a replay starts a new one. */
export function currentRun(row: Pick<TaskRow, "rank">): number {
  return Math.floor(row.rank / RUN_SPAN)
}

export function rankOf(event: TaskEvent): number {
  const withinRun = FINAL_STATUSES.has(event.state)
    ? STAGE[event.state]
    : event.attempt * 4 + STAGE[event.state]
  return event.run * RUN_SPAN + withinRun
}

/** The row of a task before its first event. */
export function emptyRow(taskId: string): TaskRow {
  return {
    task_id: taskId,
    kind: null,
    status: "PENDING",
    rank: -1,
    attempts: 0,
    input: null,
    result: null,
    error: null,
    group_id: null,
    group_index: null,
    submitted_at: null,
    started_at: null,
    finished_at: null,
    progress_report: null,
    owner: null,
    eta: null,
    callback_url: null,
  }
}

function neverStarted(event: TaskEvent) {
  return { attempts: event.attempt, result: null, started_at: null, finished_at: event.at }
}

/** The row after `event`: monotonic, so redelivered and reordered events converge on the same row. */
export function mergeEvent(row: TaskRow | null, event: TaskEvent): TaskRow {
  const current = row ?? emptyRow(event.task_id)
  const next = { ...current }
  if (event.state === "PENDING") {
    // The submission may arrive after the worker's events; it only fills in what it knows.
    next.kind ??= event.kind
    next.input ??= JSON.stringify(event.input)
    next.group_id ??= event.group?.group_id ?? null
    next.group_index ??= event.group?.index ?? null
    // The first submission's owner stays: a replay's or a retry's PENDING carries none.
    next.owner ??= event.owner ?? null
    next.eta ??= event.eta ?? null
    next.callback_url ??= typeof event.input.callback_url === "string" ? event.input.callback_url : null
    if (event.run === 1) next.submitted_at = event.at
  }
  const rank = rankOf(event)
  if (rank <= current.rank) return next
  if (Math.floor(rank / RUN_SPAN) > Math.floor(current.rank / RUN_SPAN)) {
    const cleared = { result: null, error: null, started_at: null, finished_at: null, progress_report: null }
    Object.assign(next, cleared)
  }
  next.status = event.state === "PENDING" && event.eta !== undefined ? "SCHEDULED" : event.state
  next.rank = rank
  next.attempts = Math.max(current.attempts, event.attempt)
  switch (event.state) {
    case "STARTED":
      next.started_at = event.at
      break
    case "RETRY":
      Object.assign(next, { started_at: event.started_at, error: event.error })
      break
    case "SUCCESS":
      Object.assign(next, {
        started_at: event.started_at,
        finished_at: event.at,
        result: JSON.stringify(event.result),
        error: null,
      })
      break
    case "FAILURE":
      // From the final event alone (null when no attempt started), so that any order gives the same row.
      Object.assign(next, { started_at: event.started_at, finished_at: event.at, error: event.error })
      break
    // These two say everything about the row themselves, so that a worker's events of the same run, which
    // they outrank, leave no trace whichever order they come in.
    case "EXPIRED":
      Object.assign(next, {
        ...neverStarted(event),
        error: `expired at ${new Date(event.expires_at).toISOString()} before attempt ${event.attempt + 1} started`,
      })
      break
    case "REVOKED":
      Object.assign(next, {
        ...neverStarted(event),
        started_at: event.started_at ?? null,
        error: event.reason ?? "revoked before it started",
      })
      break
  }
  return next
}

/**
 * Whether an event may change its task now. `apply`: its causes are known. `hold`: not yet (a worker's outcome
 * often overtakes the gateway's PENDING by a moment); the store keeps it aside and asks again whenever another
 * event of the task is applied, and dead-letters it after EVENT_HOLD_SECONDS. `refuse`: never, whatever comes
 * later. So a task exists only from its submission, a run only from its PENDING, an attempt only from the
 * failure of the one before, and nothing undoes a success.
 */
export type Admission =
  | { verdict: "apply" }
  | { verdict: "hold"; waitingFor: string }
  | { verdict: "refuse"; reason: string }

const RETRYABLE_ENDS: ReadonlySet<TaskStatus> = new Set(["FAILURE", "EXPIRED", "REVOKED"])

/** What a store knows of the tasks whose results expired, as admission asks it of a task it does not hold. */
export interface Expiries {
  /** The expiry horizon (`expiredBy`), null before any expiry settled. */
  horizon: number | null
  /**
   * Whether the task expired in a batch that has not settled yet: the horizon does not cover it until then, so
   * the store keeps its id.
   */
  lately(taskId: string): boolean
}

const NONE_EXPIRED: Expiries = { horizon: null, lately: () => false }

/**
 * `seen(eventId)`: whether the inbox holds that event (applied before). The row is the task's before the event
 * (null when unknown). `expiries`: what the store knows of expired tasks. Pure, so that every backend admits the
 * same events in the same state.
 */
export function admit(
  row: TaskRow | null,
  event: TaskEvent,
  seen: (eventId: string) => boolean,
  expiries: Expiries = NONE_EXPIRED,
): Admission {
  const { task_id: taskId, run, attempt, state } = event
  const refuse = (reason: string): Admission => ({ verdict: "refuse", reason })
  const hold = (waitingFor: string): Admission => ({ verdict: "hold", waitingFor })
  if (state === "REVOKED")
    return refuse("a REVOKED comes from the status store alone, which applies it itself")
  // A late copy of an expired task's event (its inbox rows went with it) must not bring the task back: a PENDING
  // would make a row that never ends, as no worker runs the task again.
  if (!row && expiredBy(taskId, expiries.horizon))
    return refuse("its task is not held and was submitted before results that have expired: it expired too")
  if (!row && expiries.lately(taskId))
    return refuse(
      "its task's result expired moments ago (RESULT_EXPIRES): a late copy does not bring it back",
    )
  if (state === "PENDING") {
    if (attempt !== run - 1) return refuse(`a PENDING of run ${run} has attempt ${run - 1}, not ${attempt}`)
    if (run === 1) return { verdict: "apply" }
    if (!row?.kind) return hold("the task's submission (its first PENDING)")
    const current = currentRun(row)
    if (run <= current) return { verdict: "apply" }
    if (row.status === "SUCCESS") return refuse(`the task succeeded in run ${current}: no run comes after`)
    if (!RETRYABLE_ENDS.has(row.status)) return hold(`the end of run ${current}`)
    const next = Math.max(row.attempts, current) + 1
    return run <= next ? { verdict: "apply" } : hold(`run ${next} before run ${run}`)
  }
  // An attempt ran (attempt ≥ run), or the run ended before its next attempt started: EXPIRED, or the FAILURE
  // of a task the broker refused (attempt run - 1).
  const between = state === "EXPIRED" || (state === "FAILURE" && attempt === run - 1)
  if (attempt < (between ? run - 1 : run)) return refuse(`attempt ${attempt} comes before run ${run} began`)
  if (attempt > run + MAX_RETRIES_PER_RUN) return refuse(`attempt ${attempt} is more retries than a run has`)
  if (!row?.kind) return hold("the task's submission (its PENDING)")
  if (run > currentRun(row)) return hold(`the PENDING of run ${run}`)
  // Attempt n + 1 follows the RETRY of attempt n; an EXPIRED of n + 1 (attempt = n: n ran) follows it too.
  const previous = between ? attempt : attempt - 1
  if (previous >= run && !seen(`${taskId}:RETRY:${previous}`)) return hold(`the RETRY of attempt ${previous}`)
  return { verdict: "apply" }
}

/**
 * When an id was minted, from the time a UUIDv7 carries in its first 48 bits (the gateway mints task and group ids
 * at submission, the scheduler at the occurrence); null for an id of another version, which tells nothing.
 */
export function mintedAt(id: string): number | null {
  return id[14] === "7" ? Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16) : null
}

/**
 * Whether an id the store does not hold is of a task whose result expired. The horizon is the latest mint time
 * among the tasks deleted so far (null: none yet). Every task minted by then was submitted long before the ones
 * that expired were done with, so one the store still does not hold has expired too: not one whose submission is
 * merely late, however far behind the events queue is. An id of another version is never taken for expired.
 */
export function expiredBy(id: string, horizon: number | null): boolean {
  return horizon !== null && (mintedAt(id) ?? Number.POSITIVE_INFINITY) <= horizon
}

/** The horizon after these ids expired: the latest mint time among them and the horizon before. */
export function horizonAfter(horizon: number | null, expiredIds: string[]): number | null {
  return expiredIds.reduce<number | null>((latest, id) => {
    const minted = mintedAt(id)
    return minted === null || (latest !== null && latest >= minted) ? latest : minted
  }, horizon)
}

export type RevokeOutcome = "revoked" | "not_found" | "started" | "final"

/**
 * Whether the task may be revoked now: SCHEDULED, PENDING, or RETRY (waiting for its next attempt), and STARTED
 * too with `terminate` (Celery's `revoke(terminate=True)`). The REVOKED event to apply when it may; the backend
 * decides and writes under one lock on the row.
 */
export function revokeOf(
  row: TaskRow | null,
  at: number,
  terminate = false,
): { outcome: RevokeOutcome; event?: TaskEvent } {
  if (!row) return { outcome: "not_found" }
  if (FINAL_STATUSES.has(row.status)) return { outcome: "final" }
  const base = { task_id: row.task_id, state: "REVOKED", run: currentRun(row), at } as const
  if (row.status !== "STARTED") return { outcome: "revoked", event: { ...base, attempt: row.attempts } }
  if (!terminate) return { outcome: "started" }
  // The running attempt counts as one that ran, as a FAILURE would count it.
  const reason = `terminated while running attempt ${row.attempts}`
  const started = row.started_at === null ? {} : { started_at: row.started_at }
  const event = { ...base, attempt: row.attempts, terminate: true, reason, ...started } as const
  return { outcome: "revoked", event }
}

/** Whether `report` is newer than the one a row holds (as JSON): a later run, a later attempt, or sent later. */
export function supersedes(report: TaskProgress, held: string | null): boolean {
  if (held === null) return true
  const { run, attempt, at } = JSON.parse(held) as TaskProgress
  if (report.run !== run) return report.run > run
  return report.attempt !== attempt ? report.attempt > attempt : report.at > at
}

const iso = (millis: number | null) => (millis === null ? null : new Date(millis).toISOString())

/**
 * The progress to show: only while an attempt may be running (STARTED, or PENDING when the worker does not
 * report starts), and only a report of that run and of an attempt no older than the row's.
 */
function shownProgress(row: TaskRow): TaskRecord["progress"] {
  if (row.progress_report === null || (row.status !== "STARTED" && row.status !== "PENDING")) return undefined
  const report = JSON.parse(row.progress_report) as TaskProgress
  if (report.run !== Math.max(1, currentRun(row)) || report.attempt < row.attempts) return undefined
  return { ...report.progress, at: iso(report.at) ?? "" }
}

/** SCHEDULED until its eta, whether or not the store has moved it on to PENDING yet (it does every second). */
function statusNow(row: TaskRow): TaskStatus {
  return row.status === "SCHEDULED" && row.eta !== null && row.eta <= Date.now() ? "PENDING" : row.status
}

/**
 * Times as the API shows them. They come from the clocks of different processes, possibly of different hosts,
 * so a worker's clock a little behind the gateway's could show a task started before it was submitted: each time
 * is shown no earlier than the one before it.
 */
export function toRecord(row: TaskRow): TaskRecord {
  const progress = shownProgress(row)
  const startedAt = row.started_at === null ? null : Math.max(row.started_at, row.submitted_at ?? 0)
  const finishedAt =
    row.finished_at === null ? null : Math.max(row.finished_at, startedAt ?? row.submitted_at ?? 0)
  return {
    task_id: row.task_id,
    kind: row.kind as TaskKind | null,
    status: statusNow(row),
    result: row.result === null ? null : JSON.parse(row.result),
    error: row.error,
    attempts: row.attempts,
    group_id: row.group_id,
    submitted_at: iso(row.submitted_at),
    ...(row.eta !== null && { eta: iso(row.eta) ?? "" }),
    started_at: iso(startedAt),
    finished_at: iso(finishedAt),
    ...(progress && { progress }),
  }
}

/** What a group's tasks add up to; a task whose PENDING has not arrived yet counts as PENDING. */
export function toGroupRecord({ group, members }: { group: GroupRow; members: TaskRow[] }): GroupRecord {
  const counts = Object.fromEntries(TASK_STATUSES.map((status) => [status, 0])) as Record<TaskStatus, number>
  for (const member of members) counts[statusNow(member)]++
  counts.PENDING += group.size - members.length
  const final = members.length === group.size && members.every((member) => FINAL_STATUSES.has(member.status))
  const status = final
    ? counts.SUCCESS === group.size
      ? "SUCCESS"
      : "FAILURE"
    : counts.SCHEDULED === group.size
      ? "SCHEDULED"
      : counts.SCHEDULED + counts.PENDING === group.size
        ? "PENDING"
        : "STARTED"
  return {
    group_id: group.group_id,
    status,
    size: group.size,
    counts,
    task_ids: members.map((member) => member.task_id),
    results: final ? members.map(toRecord) : null,
    submitted_at: iso(group.submitted_at),
  }
}

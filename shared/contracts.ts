// Every body that crosses the broker or the HTTP API, as a valibot schema with a same-named type.
import * as v from "valibot"

/** Valibot issues as one readable line: `path: message; path: message`. */
export function explainIssues(issues: readonly v.BaseIssue<unknown>[]): string {
  return issues
    .map((issue) => {
      const path = v.getDotPath(issue)
      return path ? `${path}: ${issue.message}` : issue.message
    })
    .join("; ")
}

/** Celery's state names, which our users know; EXPIRED and REVOKED end a task that never ran. */
export const TASK_STATUSES = [
  "PENDING",
  "STARTED",
  "RETRY",
  "SUCCESS",
  "FAILURE",
  "EXPIRED",
  "REVOKED",
] as const
export const TaskStatus = v.picklist(
  TASK_STATUSES,
  (issue) => `status must be one of ${TASK_STATUSES.join(", ")}, not ${issue.received}`,
)
export type TaskStatus = v.InferOutput<typeof TaskStatus>

export const FINAL_STATUSES: ReadonlySet<TaskStatus> = new Set(["SUCCESS", "FAILURE", "EXPIRED", "REVOKED"])

export const MAX_REVIEW_LENGTH = 10_000

export const TaskId = v.pipe(v.string(), v.uuid("must be a UUID"))

/** Milliseconds since the epoch: cheap to write and compare on the wire; the API turns them into ISO strings. */
const EpochMillis = v.pipe(v.number(), v.integer(), v.minValue(0))
const Attempt = v.pipe(v.number(), v.integer(), v.minValue(0))

export const Review = v.pipe(
  v.string("review must be a string"),
  v.trim(),
  v.nonEmpty("review must not be empty"),
  v.maxLength(MAX_REVIEW_LENGTH, `review must be at most ${MAX_REVIEW_LENGTH} characters`),
  v.description(`The review, 1–${MAX_REVIEW_LENGTH} characters after trimming white space.`),
)

const LANGUAGES = ["en", "ru"] as const

/** The languages the worker scores. Any other is refused, never scored 0 as if it were English. */
export const Language = v.picklist(
  LANGUAGES,
  (issue) =>
    `language must be one of ${LANGUAGES.map((code) => `"${code}"`).join(", ")}, not ${issue.received}`,
)
export type Language = v.InferOutput<typeof Language>

/** POST /polarities body. Without a language the worker detects it from the review. */
export const SubmitReview = v.object(
  {
    review: Review,
    language: v.optional(
      v.pipe(Language, v.description("Score in this language; without it, detected from the review.")),
    ),
  },
  'the body must be a JSON object with a "review" string',
)
export type SubmitReview = v.InferOutput<typeof SubmitReview>

// Tasks on the work queues. `attempt` counts from 1 and goes on counting when an operator replays a task
// that ended FAILURE; `run` is the attempt its current run began with (1, or the first attempt of a replay).
// Retries are counted within a run, and a replay's events outrank the final state of the run before.
const Run = v.optional(v.pipe(v.number(), v.integer(), v.minValue(1)), 1)
const TaskBase = {
  task_id: TaskId,
  submitted_at: EpochMillis,
  attempt: v.pipe(Attempt, v.minValue(1)),
  run: Run,
}

export const ReviewTask = v.object({
  ...TaskBase,
  kind: v.literal("polarity:review"),
  review: Review,
  language: v.optional(Language),
})
export type ReviewTask = v.InferOutput<typeof ReviewTask>

/**
 * Test-only (accepted where ENABLE_TEST_TASKS=true), to make retries, dead-lettering and crash recovery
 * testable for real: fails its first `fail_times` attempts (with NonRetryableError when `non_retryable`);
 * `crash_worker` kills the worker on every delivery; `crash_before_ack` kills it once, after the outcome
 * is confirmed and before the ack.
 */
export const FlakyTaskInput = v.object({
  fail_times: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(100)), 0),
  non_retryable: v.optional(v.boolean(), false),
  crash_worker: v.optional(v.boolean(), false),
  crash_before_ack: v.optional(v.boolean(), false),
})
export const FlakyTask = v.object({ ...TaskBase, kind: v.literal("test:flaky"), ...FlakyTaskInput.entries })
export type FlakyTask = v.InferOutput<typeof FlakyTask>

export const Task = v.variant("kind", [ReviewTask, FlakyTask])
export type Task = v.InferOutput<typeof Task>
export type TaskKind = Task["kind"]
export const TASK_KINDS = ["polarity:review", "test:flaky"] as const satisfies readonly TaskKind[]

export const PolarityResult = v.object({
  score: v.number(),
  comparative: v.number(),
  polarity: v.picklist(["positive", "negative", "neutral"]),
  positive: v.array(v.string()),
  negative: v.array(v.string()),
  /** The language the review was scored in: the one asked for, else the one detected. */
  language: Language,
})
export type PolarityResult = v.InferOutput<typeof PolarityResult>

export const FlakyResult = v.object({ succeeded_on_attempt: v.number() })

export const TaskResult = v.union([PolarityResult, FlakyResult])
export type TaskResult = v.InferOutput<typeof TaskResult>

// Task events. `at` is when the state was entered; later events repeat `started_at`
// so that a consumer never needs the STARTED event to fill in the timeline.
const EventBase = { task_id: TaskId, attempt: Attempt, run: Run, at: EpochMillis }

/** Accepted (attempt 0, run 1), or re-opened by a replay (run = its first attempt, attempt = run - 1). */
export const PendingEvent = v.object({
  ...EventBase,
  state: v.literal("PENDING"),
  kind: v.picklist(TASK_KINDS),
  input: v.record(v.string(), v.unknown()),
})
export const StartedEvent = v.object({ ...EventBase, state: v.literal("STARTED"), worker: v.string() })
/** Attempt `attempt` failed; attempt + 1 runs at `retry_at`. */
export const RetryEvent = v.object({
  ...EventBase,
  state: v.literal("RETRY"),
  started_at: EpochMillis,
  error: v.string(),
  retry_at: EpochMillis,
})
export const SuccessEvent = v.object({
  ...EventBase,
  state: v.literal("SUCCESS"),
  started_at: EpochMillis,
  result: TaskResult,
})
export const FailureEvent = v.object({
  ...EventBase,
  state: v.literal("FAILURE"),
  started_at: v.nullable(EpochMillis),
  error: v.string(),
})

// EXPIRED and REVOKED end a task between attempts, like PENDING: `attempt` counts the attempts that ran.
/** A worker took the task after its `expires_at`: it ends without running, is not retried or dead-lettered. */
export const ExpiredEvent = v.object({ ...EventBase, state: v.literal("EXPIRED"), expires_at: EpochMillis })
/** The status store revoked a task that had not started (DELETE); workers skip it when it reaches them. */
export const RevokedEvent = v.object({ ...EventBase, state: v.literal("REVOKED") })

export const TaskEvent = v.variant("state", [
  PendingEvent,
  StartedEvent,
  RetryEvent,
  SuccessEvent,
  FailureEvent,
  ExpiredEvent,
  RevokedEvent,
])
export type TaskEvent = v.InferOutput<typeof TaskEvent>

/** Deterministic, so that a redelivered or re-sent event is recognised and applied once. */
export function eventId(event: TaskEvent): string {
  return `${event.task_id}:${event.state}:${event.attempt}`
}

/** Events travel in batches of one state: a busy worker or gateway coalesces them into one message. */
export const TaskEventBatch = v.object({ events: v.pipe(v.array(TaskEvent), v.minLength(1)) })
export type TaskEventBatch = v.InferOutput<typeof TaskEventBatch>

/** A marker the status store sends through its own event queue to know it has read everything before it. */
export const Barrier = v.object({ barrier_id: v.string() })
export type Barrier = v.InferOutput<typeof Barrier>

export const MAX_WAIT_MS = 30_000

/** RPC request to the status store. `wait_ms` holds the reply until the task is final or the time is up. */
export const StatusQuery = v.variant("op", [
  v.object({
    op: v.literal("get"),
    task_id: TaskId,
    wait_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_WAIT_MS))),
  }),
])
export type StatusQuery = v.InferOutput<typeof StatusQuery>

const IsoTime = v.nullable(v.pipe(v.string(), v.isoTimestamp()))

/** A task as the API shows it. */
export const TaskRecord = v.object({
  task_id: TaskId,
  status: TaskStatus,
  result: v.nullable(TaskResult),
  error: v.nullable(v.string()),
  attempts: Attempt,
  submitted_at: IsoTime,
  started_at: IsoTime,
  finished_at: IsoTime,
})
export type TaskRecord = v.InferOutput<typeof TaskRecord>

export const StatusReply = v.union([
  v.object({ task: v.nullable(TaskRecord) }),
  v.object({ error: v.string() }),
])
export type StatusReply = v.InferOutput<typeof StatusReply>

/** AMQP `type` property of each message, so a queue that carries two contracts can tell them apart. */
export const MessageType = {
  task: "task",
  taskEvents: "task-events",
  barrier: "barrier",
  statusQuery: "status-query",
  statusReply: "status-reply",
} as const

// --- HTTP-only bodies: what the API answers besides task records.

/** An error as every service answers it: application/problem+json (RFC 9457). */
export const ProblemDetails = v.object({
  type: v.string(),
  title: v.string(),
  status: v.pipe(v.number(), v.integer()),
  detail: v.string(),
})
export type ProblemDetails = v.InferOutput<typeof ProblemDetails>

/** 202 to a submission: the task is on its queue and the status store knows it. */
export const TaskAccepted = v.object({ task_id: TaskId, status: TaskStatus })
export type TaskAccepted = v.InferOutput<typeof TaskAccepted>

export const Health = v.object({
  status: v.picklist(["ok", "degraded"]),
  broker: v.picklist(["connected", "disconnected"]),
})

export const DeadLetterListing = v.object({
  queue: v.string(),
  messages: v.array(
    v.object({
      message_id: v.nullable(v.string()),
      reason: v.nullable(v.unknown()),
      original_queue: v.nullable(v.unknown()),
      dead_lettered_at: v.nullable(v.unknown()),
      body: v.pipe(v.string(), v.description("The message body, cut at 2,048 characters.")),
    }),
  ),
})

export const ReplayResult = v.object({ replayed: v.number(), task_ids: v.array(TaskId) })

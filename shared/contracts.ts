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

/** Celery's state names, which our users know. */
export const TaskStatus = v.picklist(["PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE"])
export type TaskStatus = v.InferOutput<typeof TaskStatus>

export const FINAL_STATUSES: ReadonlySet<TaskStatus> = new Set(["SUCCESS", "FAILURE"])

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
  { review: Review, language: v.optional(Language) },
  'the body must be a JSON object with a "review" string',
)
export type SubmitReview = v.InferOutput<typeof SubmitReview>

/** A task on the work queue. `attempt` counts from 1. */
export const ReviewTask = v.object({
  task_id: TaskId,
  kind: v.literal("polarity:review"),
  review: Review,
  language: v.optional(Language),
  submitted_at: EpochMillis,
  attempt: v.pipe(Attempt, v.minValue(1)),
})
export type ReviewTask = v.InferOutput<typeof ReviewTask>

export const Task = v.variant("kind", [ReviewTask])
export type Task = v.InferOutput<typeof Task>
export type TaskKind = Task["kind"]

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

// Task events. `at` is when the state was entered; final events repeat `started_at`
// so that a consumer never needs the STARTED event to fill in the timeline.
const EventBase = { task_id: TaskId, attempt: Attempt, at: EpochMillis }

export const PendingEvent = v.object({
  ...EventBase,
  state: v.literal("PENDING"),
  kind: v.picklist(["polarity:review"]),
  input: v.object({ review: Review, language: v.optional(Language) }),
})
export const StartedEvent = v.object({ ...EventBase, state: v.literal("STARTED"), worker: v.string() })
export const SuccessEvent = v.object({
  ...EventBase,
  state: v.literal("SUCCESS"),
  started_at: EpochMillis,
  result: PolarityResult,
})
export const FailureEvent = v.object({
  ...EventBase,
  state: v.literal("FAILURE"),
  started_at: v.nullable(EpochMillis),
  error: v.string(),
})

export const TaskEvent = v.variant("state", [PendingEvent, StartedEvent, SuccessEvent, FailureEvent])
export type TaskEvent = v.InferOutput<typeof TaskEvent>

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
  result: v.nullable(PolarityResult),
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

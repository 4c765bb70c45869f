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

/**
 * Celery's state names, which our users know; EXPIRED and REVOKED end a task that never ran. SCHEDULED is a
 * delayed task (`countdown`, `eta`) before it is due; it becomes PENDING then.
 */
export const TASK_STATUSES = [
  "SCHEDULED",
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
export const MAX_BATCH_SIZE = 1000

export const TaskId = v.pipe(v.string(), v.uuid("must be a UUID"))

/** The last millisecond of year 9999: an ISO 8601 time of four-digit years, as the API shows them. */
export const MAX_EPOCH_MILLIS = 253_402_300_799_999

/** Milliseconds since the epoch: cheap to write and compare on the wire; the API turns them into ISO strings. */
const EpochMillis = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_EPOCH_MILLIS))

/**
 * Attempts of one task across all its runs. A task replayed or retried past this is a loop, not work; the bound
 * keeps the event rank (run, attempt and stage in one number: task-state.ts) exact and in order.
 */
export const MAX_ATTEMPT = 100_000
/** The most retries a run may have (MAX_RETRIES' upper bound): how far past its run an attempt can be. */
export const MAX_RETRIES_PER_RUN = 50
const Attempt = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_ATTEMPT))

/** A count on the wire: a whole number JSON and JavaScript hold exactly. */
const Count = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER))
/** A score or a ratio: JSON's 1e400 parses as Infinity, which JSON cannot write back. */
const Finite = v.pipe(v.number(), v.finite())

/** The text of an error in an event: workers cut theirs to this many characters. */
export const MAX_ERROR_LENGTH = 2000
const ErrorText = v.pipe(v.string(), v.maxLength(MAX_ERROR_LENGTH))
/**
 * A worker's id, `host:pid` unless WORKER_NAME says otherwise (Celery's `name@host` too): shown on the dashboard
 * and in routing keys, so letters, digits and `.`, `_`, `-`, `:`, `@` only: nothing HTML or a routing key reads.
 */
export const WorkerId = v.pipe(
  v.string(),
  v.regex(
    /^[A-Za-z0-9._:@-]{1,300}$/,
    "a worker id is 1 to 300 letters, digits, '.', '_', '-', ':' or '@', such as host:pid",
  ),
)

/** What the API shows for a time: ISO 8601 UTC, or null. */
const IsoTime = v.nullable(v.pipe(v.string(), v.isoTimestamp()))

/**
 * Text a person wrote: well-formed Unicode (a lone surrogate has no UTF-8 form, and no meaning) without NUL, which
 * PostgreSQL's text cannot hold and no review needs.
 */
const plainText = (name: string) =>
  v.check<string, string>(
    (text) => text.isWellFormed() && !text.includes("\0"),
    `${name} must be well-formed Unicode text without NUL characters`,
  )

export const Review = v.pipe(
  v.string("review must be a string"),
  plainText("review"),
  v.trim(),
  v.nonEmpty("review must not be empty"),
  v.maxLength(MAX_REVIEW_LENGTH, `review must be at most ${MAX_REVIEW_LENGTH} characters`),
  v.description(
    `The review, 1–${MAX_REVIEW_LENGTH} characters after trimming white space; well-formed Unicode, no NUL.`,
  ),
)

const LANGUAGES = ["en", "ru"] as const

/** The languages the worker scores. Any other is refused, never scored 0 as if it were English. */
export const Language = v.picklist(
  LANGUAGES,
  (issue) =>
    `language must be one of ${LANGUAGES.map((code) => `"${code}"`).join(", ")}, not ${issue.received}`,
)
export type Language = v.InferOutput<typeof Language>

export const MAX_DOCUMENT_LENGTH = 20_000

export const Document = v.pipe(
  v.string("document must be a string"),
  plainText("document"),
  v.trim(),
  v.nonEmpty("document must not be empty"),
  v.maxLength(MAX_DOCUMENT_LENGTH, `document must be at most ${MAX_DOCUMENT_LENGTH} characters`),
  v.description(
    `Text of one or more sentences, 1–${MAX_DOCUMENT_LENGTH} characters after trimming white space; well-formed Unicode, no NUL.`,
  ),
)

/** Longest `expires_in`: a week. A task that may wait longer has no deadline worth the name. */
export const MAX_EXPIRES_IN_SECONDS = 7 * 24 * 3600
/** Longest `time_limit` of one attempt: an hour. */
export const MAX_TIME_LIMIT_SECONDS = 3600

function seconds(name: string, max: number, description: string) {
  const message = `${name} must be a number of seconds above 0 and at most ${max}`
  return v.optional(
    v.pipe(v.number(message), v.gtValue(0, message), v.maxValue(max, message), v.description(description)),
  )
}

/** Deadlines every submission may carry. */
const Deadlines = {
  expires_in: seconds(
    "expires_in",
    MAX_EXPIRES_IN_SECONDS,
    "Seconds from submission (fractions allowed): a task that has not started by then ends EXPIRED without running, and so does a retry due after it.",
  ),
  time_limit: seconds(
    "time_limit",
    MAX_TIME_LIMIT_SECONDS,
    "Seconds one attempt may run (fractions allowed); an attempt that runs past it fails with TimeLimitExceeded and is retried like any failure.",
  ),
}
export type Deadlines = { expires_in?: number; time_limit?: number }

/** The longest delay (`countdown`, `eta`) a submission may ask for: 30 days. */
export const MAX_DELAY_MS = 30 * 24 * 3600 * 1000
const MAX_DELAY_SECONDS = MAX_DELAY_MS / 1000
const delayMessage = `countdown must be a number of seconds above 0 and at most ${MAX_DELAY_SECONDS} (30 days)`

/**
 * When a submission's tasks are due: `countdown` seconds from now, or at `eta`; neither means now. The broker holds
 * the delay (shared/topology.ts, the delay ladder); whether an `eta` lies ahead is checked against the clock when the
 * submission arrives, not here.
 */
const Delay = {
  countdown: v.optional(
    v.pipe(
      v.number(delayMessage),
      v.gtValue(0, delayMessage),
      v.maxValue(MAX_DELAY_SECONDS, delayMessage),
      v.description(
        `Run the task this many seconds from now (fractions allowed, up to ${MAX_DELAY_SECONDS} = 30 days), rounded up to a tenth of a second. The task is SCHEDULED until then.`,
      ),
    ),
  ),
  eta: v.optional(
    v.pipe(
      v.string("eta must be an RFC 3339 time string"),
      v.isoTimestamp('eta must be an RFC 3339 time with a time zone, such as "2030-01-01T09:00:00Z"'),
      v.description(
        "Run the task at this time (RFC 3339 with a time zone), at most 30 days ahead. Give countdown or eta, not both.",
      ),
    ),
  ),
}
export type Delay = { countdown?: number; eta?: string }

/** RabbitMQ's message priorities, 0–9: the work queues are declared with `x-max-priority` 9. */
export const MAX_PRIORITY = 9
const priorityMessage = `priority must be a whole number from 0 to ${MAX_PRIORITY}`
const PriorityValue = v.pipe(
  v.number(priorityMessage),
  v.integer(priorityMessage),
  v.minValue(0, priorityMessage),
  v.maxValue(MAX_PRIORITY, priorityMessage),
)

/** Where a task stands among those waiting in its queue; unset is 0, the lowest. */
const Priority = {
  priority: v.optional(
    v.pipe(
      PriorityValue,
      v.description(
        `0–${MAX_PRIORITY}, higher first: among the tasks waiting in the broker for a queue, a higher one is delivered first (unset is 0). Tasks a worker has already taken (up to WORKER_PREFETCH) are not overtaken. A 422 where QUEUE_TYPE=quorum: quorum queues have no priorities.`,
      ),
    ),
  ),
}

/**
 * Where to POST the task's record once it is final (a completion webhook, signed with WEBHOOK_SECRET). Checked
 * against private and loopback addresses when the task is submitted (by its host) and each time it is called (by
 * the addresses its name resolves to).
 */
const Notify = {
  callback_url: v.optional(
    v.pipe(
      v.string("callback_url must be a string"),
      v.maxLength(2048, "callback_url must be at most 2,048 characters"),
      v.url("callback_url must be an absolute http:// or https:// URL"),
      v.description(
        "When the task is final, its record is POSTed here, signed (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature) and retried with backoff until a 2xx or WEBHOOK_MAX_ATTEMPTS.",
      ),
    ),
  ),
}

const languageOf = (what: string) =>
  v.optional(
    v.pipe(Language, v.description(`Score in this language; without it, detected from the ${what}.`)),
  )

/** POST /polarities body. Without a language the worker detects it from the review. */
export const SubmitReview = v.object(
  { review: Review, language: languageOf("review"), ...Deadlines, ...Delay, ...Priority, ...Notify },
  'the body must be a JSON object with a "review" string',
)
export type SubmitReview = v.InferOutput<typeof SubmitReview>

/** POST /polarities/batch body: one `polarity:review` task per review, followed as one group. */
export const SubmitBatch = v.object(
  {
    reviews: v.pipe(
      v.array(Review, "reviews must be an array of review strings"),
      v.minLength(1, "reviews must hold at least one review"),
      v.maxLength(MAX_BATCH_SIZE, `reviews must hold at most ${MAX_BATCH_SIZE} reviews`),
      v.description(`1–${MAX_BATCH_SIZE} reviews; the group keeps their order.`),
    ),
    language: v.optional(
      v.pipe(
        Language,
        v.description("Score every review in this language; without it, detected per review."),
      ),
    ),
    ...Deadlines,
    ...Delay,
    ...Priority,
    ...Notify,
  },
  'the body must be a JSON object with a "reviews" array',
)
export type SubmitBatch = v.InferOutput<typeof SubmitBatch>

/** POST /polarities/tasks/lookup body: many tasks' states in one request, as Celery's `ResultSet` reads them. */
export const LookupTasks = v.object(
  {
    task_ids: v.pipe(
      v.array(TaskId, "task_ids must be an array of task ids"),
      v.minLength(1, "task_ids must hold at least one id"),
      v.maxLength(MAX_BATCH_SIZE, `task_ids must hold at most ${MAX_BATCH_SIZE} ids`),
      v.rawCheck(({ dataset, addIssue }) => {
        if (!dataset.typed) return
        const seen = new Set<string>()
        for (const [index, taskId] of dataset.value.entries()) {
          if (seen.has(taskId)) {
            addIssue({ message: `task_ids.${index}: ${taskId} is asked for twice; ask for each task once` })
            return
          }
          seen.add(taskId)
        }
      }),
      v.metadata({
        description: `1–${MAX_BATCH_SIZE} different task ids; the answer keeps their order.`,
        uniqueItems: true,
      }),
    ),
  },
  'the body must be a JSON object with a "task_ids" array',
)
export type LookupTasks = v.InferOutput<typeof LookupTasks>

/** POST /polarities/documents body: scored sentence by sentence. */
export const SubmitDocument = v.object(
  { document: Document, language: languageOf("document"), ...Deadlines, ...Delay, ...Priority, ...Notify },
  'the body must be a JSON object with a "document" string',
)
export type SubmitDocument = v.InferOutput<typeof SubmitDocument>

/** An API key's name: it owns what the key submits (services/gateway/api-keys.ts). */
export const OwnerName = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9_.-]{1,64}$/, "an owner is an API key's name: 1-64 letters, digits, '_', '.', '-'"),
)

/** The windows a polarity report may cover: the hour or the day before it was submitted. */
export const REPORT_WINDOWS = ["hour", "day"] as const
/** The longest range (`from` to `to`) a polarity report may cover: 31 days. */
export const MAX_REPORT_RANGE_MS = 31 * 24 * 3600 * 1000

const reportTime = (name: string) =>
  v.optional(
    v.pipe(
      v.string(`${name} must be an RFC 3339 time string`),
      v.isoTimestamp(`${name} must be an RFC 3339 time with a time zone, such as "2030-01-01T09:00:00Z"`),
      v.description(
        `With ${name === "from" ? "to" : "from"}: the report covers the tasks submitted from \`from\` until \`to\`.`,
      ),
    ),
  )

/** What a polarity report covers: `window`, or `from` and `to` (checked together by the gateway). */
export const ReportWindow = {
  window: v.optional(
    v.pipe(
      v.picklist(REPORT_WINDOWS, (issue) => `window must be "hour" or "day", not ${issue.received}`),
      v.description("The hour or the day before the report task was submitted."),
    ),
  ),
  from: reportTime("from"),
  to: reportTime("to"),
}

/** POST /polarities/reports body. */
export const SubmitReport = v.object(
  { ...ReportWindow, ...Deadlines, ...Delay, ...Priority, ...Notify },
  'the body must be a JSON object with "window", or "from" and "to"',
)
export type SubmitReport = v.InferOutput<typeof SubmitReport>

// Tasks on the work queues. `attempt` counts from 1 and goes on counting when an operator replays a task
// that ended FAILURE; `run` is the attempt its current run began with (1, or the first attempt of a replay).
// Retries are counted within a run, and a replay's events outrank the final state of the run before.
// `expires_at` and `time_limit_ms` are the submission's deadlines, fixed by the gateway; `eta` is when a delayed
// task is due (it came through the delay ladder).
const Run = v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_ATTEMPT)), 1)
const TaskBase = {
  task_id: TaskId,
  submitted_at: EpochMillis,
  attempt: v.pipe(Attempt, v.minValue(1)),
  run: Run,
  expires_at: v.optional(EpochMillis),
  time_limit_ms: v.optional(
    v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_TIME_LIMIT_SECONDS * 1000)),
  ),
  eta: v.optional(EpochMillis),
  /** Its message's AMQP priority, kept so that a retry or a quarantined copy goes back with it. */
  priority: v.optional(PriorityValue),
  callback_url: v.optional(v.string()),
}

export const ReviewTask = v.object({
  ...TaskBase,
  kind: v.literal("polarity:review"),
  review: Review,
  language: v.optional(Language),
})
export type ReviewTask = v.InferOutput<typeof ReviewTask>

/** A document, scored sentence by sentence; routed to the `default` queue. */
export const DocumentTask = v.object({
  ...TaskBase,
  kind: v.literal("document:sentences"),
  document: Document,
  language: v.optional(Language),
})
export type DocumentTask = v.InferOutput<typeof DocumentTask>

/**
 * Test-only (accepted where ENABLE_TEST_TASKS=true), to make retries, dead-lettering, crash recovery and
 * deadlines testable for real: sleeps `sleep_ms` (asynchronously, as I/O would), then fails its first
 * `fail_times` attempts (with NonRetryableError when `non_retryable`); `crash_worker` kills the worker on
 * every delivery; `crash_before_ack` kills it once, after the outcome is confirmed and before the ack;
 * `ignore_abort` sleeps deaf to its abort signal, as task code that never checks it would.
 */
const FlakyEntries = {
  fail_times: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(100)), 0),
  non_retryable: v.optional(v.boolean(), false),
  crash_worker: v.optional(v.boolean(), false),
  crash_before_ack: v.optional(v.boolean(), false),
  sleep_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(60_000)), 0),
  ignore_abort: v.optional(v.boolean(), false),
}
export const FlakyTaskInput = v.object({ ...FlakyEntries, ...Deadlines, ...Delay, ...Priority, ...Notify })
export const FlakyTask = v.object({ ...TaskBase, kind: v.literal("test:flaky"), ...FlakyEntries })
export type FlakyTask = v.InferOutput<typeof FlakyTask>

/**
 * A polarity report: what the reviews and documents that succeeded in a window add up to (the worker asks the
 * status store). `from` and `to` in milliseconds, or a `window` before the task's submission; `owner` is the API
 * key's name it was submitted under, whose tasks it covers (all when absent).
 */
export const ReportTask = v.object({
  ...TaskBase,
  kind: v.literal("report:polarity"),
  window: v.optional(v.picklist(REPORT_WINDOWS)),
  from: v.optional(EpochMillis),
  to: v.optional(EpochMillis),
  owner: v.optional(OwnerName),
})
export type ReportTask = v.InferOutput<typeof ReportTask>

export const Task = v.variant("kind", [ReviewTask, DocumentTask, FlakyTask, ReportTask])
export type Task = v.InferOutput<typeof Task>
export type TaskKind = Task["kind"]

/**
 * A work-queue message: the tasks a gateway accepted in one turn for that queue (one, when it is not busy).
 * Each task is checked on its own, so that one malformed task is dead-lettered without the others.
 */
export const TaskBatch = v.object({ tasks: v.pipe(v.array(v.unknown()), v.minLength(1)) })
export type TaskBatch = v.InferOutput<typeof TaskBatch>
export const TASK_KINDS = [
  "polarity:review",
  "document:sentences",
  "test:flaky",
  "report:polarity",
] as const satisfies readonly TaskKind[]

export const PolarityResult = v.object({
  score: Finite,
  comparative: Finite,
  polarity: v.picklist(["positive", "negative", "neutral"]),
  positive: v.array(v.string()),
  negative: v.array(v.string()),
  /** The language the review was scored in: the one asked for, else the one detected. */
  language: Language,
})
export type PolarityResult = v.InferOutput<typeof PolarityResult>

/** One sentence of a document: its text and its score, as a review would have (the language is the document's). */
export const SentenceResult = v.object({ text: v.string(), ...v.omit(PolarityResult, ["language"]).entries })
export type SentenceResult = v.InferOutput<typeof SentenceResult>

export const DocumentResult = v.object({
  /** The sentences' scores added up; its sign gives `polarity`. */
  score: Finite,
  polarity: PolarityResult.entries.polarity,
  /** How many sentences are positive, negative and neutral. */
  sentence_counts: v.object({ positive: Count, negative: Count, neutral: Count }),
  /** The document's language, asked for or detected from the whole text; every sentence is scored in it. */
  language: Language,
  sentences: v.array(SentenceResult),
})
export type DocumentResult = v.InferOutput<typeof DocumentResult>

export const FlakyResult = v.object({ succeeded_on_attempt: Count })

const PolarityCounts = v.object({ positive: v.number(), negative: v.number(), neutral: v.number() })
const WordCounts = v.array(v.object({ word: v.string(), count: v.number() }))

/**
 * A polarity report: over the reviews and documents that succeeded among the tasks submitted from `from` until
 * `to`, how many of each polarity, per language too, their mean score (null without any), and the ten most
 * frequent positive and negative words (a document's, sentence by sentence), most frequent first.
 */
export const PolarityReport = v.object({
  from: v.pipe(v.string(), v.isoTimestamp()),
  to: v.pipe(v.string(), v.isoTimestamp()),
  tasks: v.number(),
  counts: PolarityCounts,
  languages: v.record(v.string(), PolarityCounts),
  mean_score: v.nullable(v.number()),
  top_positive: WordCounts,
  top_negative: WordCounts,
})
export type PolarityReport = v.InferOutput<typeof PolarityReport>

// Tried in order, and an object keeps only its own keys: a document result is no review result (it has no
// `positive` word list), so the order cannot turn one into the other.
export const TaskResult = v.union([PolarityResult, DocumentResult, PolarityReport, FlakyResult])
export type TaskResult = v.InferOutput<typeof TaskResult>

// Task events. `at` is when the state was entered; later events repeat `started_at`
// so that a consumer never needs the STARTED event to fill in the timeline.
const EventBase = { task_id: TaskId, attempt: Attempt, run: Run, at: EpochMillis }

/**
 * Accepted (attempt 0, run 1), or re-opened by a replay (run = its first attempt, attempt = run - 1).
 * A task of a batch carries its group: the group's id, its place in the batch and the batch's size.
 * A delayed task carries its `eta`: the store shows it SCHEDULED until then.
 */
export const PendingEvent = v.object({
  ...EventBase,
  state: v.literal("PENDING"),
  kind: v.picklist(TASK_KINDS),
  input: v.record(v.string(), v.unknown()),
  /** The API key's name that submitted it; absent when the API is open, and on a replay's or retry's PENDING. */
  owner: v.optional(OwnerName),
  eta: v.optional(EpochMillis),
  group: v.optional(
    v.object({
      group_id: TaskId,
      index: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_BATCH_SIZE - 1)),
      size: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_BATCH_SIZE)),
    }),
  ),
})
export const StartedEvent = v.object({ ...EventBase, state: v.literal("STARTED"), worker: WorkerId })
/** Attempt `attempt` failed; attempt + 1 runs at `retry_at`. */
export const RetryEvent = v.object({
  ...EventBase,
  state: v.literal("RETRY"),
  started_at: EpochMillis,
  error: ErrorText,
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
  error: ErrorText,
})

// EXPIRED and REVOKED end a task between attempts, like PENDING: `attempt` counts the attempts that ran.
/** A worker took the task after its `expires_at`: it ends without running, is not retried or dead-lettered. */
export const ExpiredEvent = v.object({ ...EventBase, state: v.literal("EXPIRED"), expires_at: EpochMillis })
/**
 * The status store revoked a task (DELETE): workers skip it when it reaches them. With `terminate`, the run's
 * attempt was running: the worker that runs it aborts it, and nothing it reports afterwards counts.
 */
export const RevokedEvent = v.object({
  ...EventBase,
  state: v.literal("REVOKED"),
  terminate: v.optional(v.literal(true)),
  /** Why, as the task's `error` shows it; "revoked before it started" when absent. */
  reason: v.optional(ErrorText),
  /** A terminated attempt's start. */
  started_at: v.optional(EpochMillis),
})

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

/**
 * How far a running attempt has got, as its task code reports it (Celery's `update_state(state="PROGRESS",
 * meta=…)`): `done` of `total` (any unit: sentences, bytes, steps), and a short message.
 */
export const Progress = v.pipe(
  v.object({
    done: v.pipe(v.number("done must be a number"), v.finite(), v.minValue(0, "done must be at least 0")),
    total: v.pipe(v.number("total must be a number"), v.finite(), v.gtValue(0, "total must be above 0")),
    message: v.optional(v.pipe(v.string(), v.maxLength(200, "message must be at most 200 characters"))),
  }),
  v.check((progress) => progress.done <= progress.total, "done must not exceed total"),
)
export type Progress = v.InferOutput<typeof Progress>

/**
 * A progress report, on the events exchange under a routing key of its own (`progress`), so that what consumes
 * task events (`task.#`) never sees one. Not a state: it never changes a task's status.
 */
export const TaskProgress = v.object({
  task_id: TaskId,
  attempt: v.pipe(Attempt, v.minValue(1)),
  run: Run,
  at: EpochMillis,
  progress: Progress,
})
export type TaskProgress = v.InferOutput<typeof TaskProgress>

/** The progress reports of one turn of one worker, in one message. */
export const TaskProgressBatch = v.object({ reports: v.pipe(v.array(TaskProgress), v.minLength(1)) })
export type TaskProgressBatch = v.InferOutput<typeof TaskProgressBatch>

/** Deterministic, so that a redelivered or re-sent event is recognised and applied once. */
export function eventId(event: TaskEvent): string {
  return `${event.task_id}:${event.state}:${event.attempt}`
}

/** Events travel in batches of one state: a busy worker or gateway coalesces them into one message. */
export const TaskEventBatch = v.object({ events: v.pipe(v.array(TaskEvent), v.minLength(1)) })
export type TaskEventBatch = v.InferOutput<typeof TaskEventBatch>

/** The longest heartbeat interval (WORKER_HEARTBEAT_MS' upper bound): ten minutes. */
export const MAX_HEARTBEAT_INTERVAL_MS = 600_000

/** An autoscaled pool, as its supervisor describes it: its bounds and the processes it runs now. */
export const PoolInfo = v.object({
  min: v.pipe(v.number(), v.integer(), v.minValue(0)),
  max: v.pipe(v.number(), v.integer(), v.minValue(1)),
  /** The worker ids of its processes. */
  processes: v.array(WorkerId),
})
export type PoolInfo = v.InferOutput<typeof PoolInfo>

/**
 * What a worker publishes every few seconds on the events exchange (routing key `worker.heartbeat`), and once
 * more as `offline` when it stops. Counts are since the worker process started. The supervisor of an autoscaled
 * pool sends its own, with `pool`, and its processes send theirs, with `supervisor`.
 */
export const WorkerHeartbeat = v.object({
  /** `host:pid`, as in STARTED events. */
  worker: WorkerId,
  host: v.pipe(
    v.string(),
    v.regex(/^[A-Za-z0-9._-]{0,253}$/, "a host name is letters, digits, '.', '_' and '-'"),
  ),
  pid: v.pipe(Count, v.maxValue(2 ** 32 - 1)),
  state: v.picklist(["online", "offline"]),
  /** The work queues (routes) it consumes; absent from workers older than WORKER_QUEUES. */
  queues: v.optional(v.pipe(v.array(v.pipe(v.string(), v.regex(/^[\w.-]{1,100}$/))), v.maxLength(64))),
  /** A process of an autoscaled pool: its supervisor's worker id. */
  supervisor: v.optional(WorkerId),
  /** The supervisor of an autoscaled pool (it runs no task itself; `in_hand` is its processes'). */
  pool: v.optional(PoolInfo),
  /** Tasks per work queue delivered before any is acked. */
  prefetch: v.pipe(Count, v.maxValue(65_535)),
  in_hand: Count,
  succeeded: Count,
  failed: Count,
  retried: Count,
  started_at: EpochMillis,
  sent_at: EpochMillis,
  /** How often this worker sends one: the store calls it lost after a few missed. */
  interval_ms: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_HEARTBEAT_INTERVAL_MS)),
})
export type WorkerHeartbeat = v.InferOutput<typeof WorkerHeartbeat>

/**
 * A remote-control command (Celery's `inspect` and `control`), published on the control exchange to one worker
 * (`worker.<id>`) or to all (`worker.all`), with a reply-to and an expiration: a worker that has not read it in
 * time never acts on it.
 */
export const ControlCommand = v.variant("command", [
  /** Who is there, and how it is doing: answered with a heartbeat, fresh. */
  v.object({ command: v.literal("ping") }),
  /** The attempts running now and the tasks in hand waiting to run. */
  v.object({ command: v.literal("active") }),
  /** Stop taking tasks, finish those in hand, then exit (a pool: every process, then the supervisor). */
  v.object({ command: v.literal("shutdown") }),
  /** An autoscaled pool only: start `n` processes now, up to its maximum. */
  v.object({
    command: v.literal("pool_grow"),
    n: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100)),
  }),
  /** An autoscaled pool only: stop `n` processes now (each drains first), down to its minimum. */
  v.object({
    command: v.literal("pool_shrink"),
    n: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100)),
  }),
])
export type ControlCommand = v.InferOutput<typeof ControlCommand>

/** An attempt a worker is running, or a task it holds that waits to run (a rate limit). */
export const ActiveTask = v.object({
  task_id: TaskId,
  kind: v.picklist(TASK_KINDS),
  attempt: v.pipe(v.number(), v.integer(), v.minValue(1)),
  run: v.pipe(v.number(), v.integer(), v.minValue(1)),
  /** The work queue (route) it came from. */
  queue: v.string(),
  /** Null while it waits in hand. */
  started_at: IsoTime,
  /** How long it has run, in milliseconds; null while it waits. */
  running_ms: v.nullable(v.number()),
})
export type ActiveTask = v.InferOutput<typeof ActiveTask>

/** A worker's answer to a command. `refused` says why a command does not apply (a pool command to a plain worker). */
export const ControlReply = v.variant("reply", [
  v.object({ reply: v.literal("pong"), heartbeat: WorkerHeartbeat }),
  v.object({ reply: v.literal("active"), worker: WorkerId, tasks: v.array(ActiveTask) }),
  v.object({ reply: v.literal("shutting_down"), worker: WorkerId }),
  v.object({ reply: v.literal("pool"), worker: WorkerId, pool: PoolInfo }),
  v.object({ reply: v.literal("refused"), worker: WorkerId, error: v.string() }),
])
export type ControlReply = v.InferOutput<typeof ControlReply>

/** A marker the status store sends through its own event queue to know it has read everything before it. */
export const Barrier = v.object({ barrier_id: v.pipe(v.string(), v.maxLength(100)) })
export type Barrier = v.InferOutput<typeof Barrier>

export const MAX_WAIT_MS = 30_000
export const MAX_PAGE_SIZE = 100

/** The latest progress a running task reported, as the API shows it. */
export const ProgressView = v.object({
  done: v.number(),
  total: v.number(),
  message: v.optional(v.string()),
  /** When the worker sent it. */
  at: v.pipe(v.string(), v.isoTimestamp()),
})
export type ProgressView = v.InferOutput<typeof ProgressView>

/** A task as the API shows it. */
export const TaskRecord = v.object({
  task_id: TaskId,
  /** Null only for the moment a worker's event is known and the submission's is not yet. */
  kind: v.nullable(v.picklist(TASK_KINDS)),
  status: TaskStatus,
  result: v.nullable(TaskResult),
  error: v.nullable(v.string()),
  attempts: Attempt,
  /** The batch the task was submitted in, if any. */
  group_id: v.nullable(TaskId),
  submitted_at: IsoTime,
  /** When a delayed task is (or was) due; absent for a task that was due at once. */
  eta: v.optional(v.pipe(v.string(), v.isoTimestamp())),
  started_at: IsoTime,
  finished_at: IsoTime,
  /**
   * Present only while an attempt runs (STARTED, or PENDING when TRACK_STARTED is off) and has reported
   * progress; gone once the task ends or waits for a retry.
   */
  progress: v.optional(ProgressView),
})
export type TaskRecord = v.InferOutput<typeof TaskRecord>

/** A page of tasks, newest first; `next_cursor` asks for the page after it, null on the last page. */
export const TaskPage = v.object({ tasks: v.array(TaskRecord), next_cursor: v.nullable(v.string()) })
export type TaskPage = v.InferOutput<typeof TaskPage>

/** The answer to a lookup: the record of each id asked for, in the same order; null for an id never submitted. */
/** `expired`: those of the ids answered null whose results expired (RESULT_EXPIRES), when any did. */
export const TaskLookup = v.object({
  tasks: v.array(v.nullable(TaskRecord)),
  expired: v.optional(v.array(TaskId)),
})
export type TaskLookup = v.InferOutput<typeof TaskLookup>

/**
 * A batch as the API shows it. `status` sums up its tasks: SCHEDULED while every task is SCHEDULED, PENDING while
 * every task is SCHEDULED or PENDING, STARTED once
 * any has moved on and until all are final, then SUCCESS if every task succeeded, else FAILURE. `results`
 * holds the task records in input order once the group is final, null before.
 */
export const GroupRecord = v.object({
  group_id: TaskId,
  status: v.picklist(["SCHEDULED", "PENDING", "STARTED", "SUCCESS", "FAILURE"]),
  size: v.pipe(v.number(), v.integer()),
  counts: v.object(
    Object.fromEntries(TASK_STATUSES.map((status) => [status, v.number()])) as Record<
      TaskStatus,
      v.NumberSchema<undefined>
    >,
  ),
  task_ids: v.array(TaskId),
  results: v.nullable(v.array(TaskRecord)),
  submitted_at: IsoTime,
})
export type GroupRecord = v.InferOutput<typeof GroupRecord>

const StatusCounts = v.object(
  Object.fromEntries(TASK_STATUSES.map((status) => [status, Count])) as Record<TaskStatus, typeof Count>,
)

export const LATENCY_PHASES = ["wait", "run", "total"] as const

/** Milliseconds, estimated from a histogram whose buckets are 19 % wide; null when no task ended in the window. */
const Percentiles = v.nullable(v.object({ count: Count, p50: v.number(), p90: v.number(), p99: v.number() }))

/**
 * The dashboard's figures, kept by the store as events arrive (nothing is counted by scanning tasks).
 * `rates` are per second over the last `window_s` whole seconds; `latency` is of the tasks that ended SUCCESS
 * or FAILURE in the last `window_s` seconds: submitted → started (wait), started → finished (run), and in all.
 * `series` has one entry per second that saw any of it (seconds since the epoch, oldest first).
 */
export const DashboardStats = v.object({
  at: v.pipe(v.string(), v.isoTimestamp()),
  counts: StatusCounts,
  rates: v.object({
    window_s: Count,
    submitted: v.number(),
    succeeded: v.number(),
    failed: v.number(),
    retried: v.number(),
  }),
  latency: v.object({ window_s: Count, wait: Percentiles, run: Percentiles, total: Percentiles }),
  series: v.object({
    t: v.array(Count),
    submitted: v.array(Count),
    succeeded: v.array(Count),
    failed: v.array(Count),
    retried: v.array(Count),
  }),
})
export type DashboardStats = v.InferOutput<typeof DashboardStats>

/**
 * A worker as its last heartbeat described it. `status`: `online`; `lost` after WORKER_LOST_AFTER_MISSED
 * heartbeats did not come; `offline` when it said it was stopping.
 */
export const WorkerRecord = v.object({
  ...v.omit(WorkerHeartbeat, ["state", "started_at", "sent_at"]).entries,
  status: v.picklist(["online", "lost", "offline"]),
  started_at: v.pipe(v.string(), v.isoTimestamp()),
  last_heartbeat_at: v.pipe(v.string(), v.isoTimestamp()),
})
export type WorkerRecord = v.InferOutput<typeof WorkerRecord>

/** One event of a task's history as the store applied it. */
export const TimelineEntry = v.object({
  at: v.pipe(v.string(), v.isoTimestamp()),
  state: TaskStatus,
  attempt: Count,
  run: v.pipe(v.number(), v.integer(), v.minValue(1)),
  worker: v.nullable(v.string()),
  error: v.nullable(v.string()),
  started_at: IsoTime,
  retry_at: IsoTime,
})

export const WEBHOOK_OUTCOMES = ["delivered", "failed", "gave_up"] as const

/**
 * One attempt at a completion webhook, as the worker that made it reports it (events exchange, routing key
 * `webhook.attempt`): `failed` is tried again at `next_attempt_at`; `gave_up` is the last (out of attempts, or a URL
 * that may not be called).
 */
export const WebhookAttempt = v.object({
  delivery_id: v.pipe(v.string(), v.nonEmpty(), v.maxLength(100)),
  task_id: TaskId,
  attempt: v.pipe(v.number(), v.integer(), v.minValue(1)),
  at: EpochMillis,
  outcome: v.picklist(WEBHOOK_OUTCOMES),
  status_code: v.nullable(v.pipe(v.number(), v.integer())),
  error: v.nullable(v.pipe(v.string(), v.maxLength(2000))),
  next_attempt_at: v.nullable(EpochMillis),
})
export type WebhookAttempt = v.InferOutput<typeof WebhookAttempt>

/** A completion webhook on the webhook queue: the task's final record and where it goes, at its nth attempt. */
export const WebhookDelivery = v.object({
  delivery_id: WebhookAttempt.entries.delivery_id,
  task_id: TaskId,
  url: v.pipe(v.string(), v.maxLength(2048)),
  attempt: WebhookAttempt.entries.attempt,
  record: TaskRecord,
})
export type WebhookDelivery = v.InferOutput<typeof WebhookDelivery>

/** A webhook attempt of a task: its detail lists them after the timeline of its states. */
export const WebhookTimelineEntry = v.object({
  at: v.pipe(v.string(), v.isoTimestamp()),
  webhook: v.object({
    delivery_id: v.string(),
    attempt: Count,
    outcome: v.picklist(WEBHOOK_OUTCOMES),
    status_code: v.nullable(v.number()),
    error: v.nullable(v.string()),
    next_attempt_at: IsoTime,
  }),
})

/** A task with what it was asked to do (`input`: the review or document and its options) and its history. */
export const TaskDetail = v.object({
  task: TaskRecord,
  input: v.nullable(v.record(v.string(), v.unknown())),
  /** The run the task is in: 1, or the first attempt of its latest replay or retry. */
  run: v.pipe(v.number(), v.integer(), v.minValue(1)),
  timeline: v.array(TimelineEntry),
  /** A task with a callback_url: the attempts at delivering it, by time (the dashboard shows them in the timeline). */
  webhooks: v.optional(v.array(WebhookTimelineEntry)),
})
export type TaskDetail = v.InferOutput<typeof TaskDetail>

/** 202 to a batch: every task is on its queue and the status store knows them. */
export const BatchAccepted = v.object({
  group_id: TaskId,
  status: GroupRecord.entries.status,
  task_ids: v.array(TaskId),
})

/** The Idempotency-Key header: 1–255 visible ASCII characters, chosen by the client (a UUID is a good one). */
export const IdempotencyKey = v.pipe(
  v.string(),
  v.regex(/^[\x21-\x7e]{1,255}$/, "Idempotency-Key must be 1 to 255 visible ASCII characters"),
  v.description(
    "Repeating a request with the same key and body answers the same task (or group) instead of a new one; the same key with another body is a 422. Kept 24 hours.",
  ),
)

/** The longest history the dashboard's series and percentiles cover: an hour. */
export const MAX_SERIES_SECONDS = 3600

export const TaskIdPrefix = v.pipe(
  v.string(),
  v.regex(/^[0-9a-f-]{1,36}$/, "an id prefix is 1 to 36 lower-case hex digits and dashes"),
)

// --- Periodic schedules (shared/schedules.ts computes their occurrences).

export const ScheduleId = v.pipe(
  v.string("id must be a string"),
  v.regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
    "id must be 1 to 64 letters, digits, '.', '_' or '-', and start with a letter or a digit",
  ),
  v.description("The schedule's id: given when it is created, or a UUID chosen for it."),
)

/** What a schedule does about occurrences it missed (the store was down): drop them, or run once for them all. */
export const MISSED_POLICIES = ["skip", "run_once"] as const

/** The longest `every`: a year. */
export const MAX_EVERY_SECONDS = 366 * 24 * 3600

const everyMessage = `every must be a whole number of seconds from 1 to ${MAX_EVERY_SECONDS}`

/** A schedule's task: what its endpoint's body would ask for, with its kind, and no delay. */
export const ScheduledTask = v.variant(
  "kind",
  [
    v.object({ kind: v.literal("polarity:review"), ...v.omit(SubmitReview, ["countdown", "eta"]).entries }),
    v.object({
      kind: v.literal("document:sentences"),
      ...v.omit(SubmitDocument, ["countdown", "eta"]).entries,
    }),
    v.object({
      kind: v.literal("report:polarity"),
      window: v.picklist(REPORT_WINDOWS, (issue) => `window must be "hour" or "day", not ${issue.received}`),
      ...Deadlines,
      ...Notify,
    }),
  ],
  (issue) =>
    `kind must be "polarity:review", "document:sentences" or "report:polarity", not ${issue.received}`,
)
export type ScheduledTask = v.InferOutput<typeof ScheduledTask>

/** When a schedule fires and what it does; `cron` and `timezone` or `every`, which shared/schedules.ts checks. */
const ScheduleTiming = {
  cron: v.optional(
    v.pipe(
      v.string("cron must be a string"),
      v.trim(),
      v.nonEmpty("cron must not be empty"),
      v.maxLength(200, "cron must be at most 200 characters"),
      v.description(
        'A cron expression of 5 fields (minute hour day month weekday), or 6 with seconds first, as croner reads it: "0 * * * *" is every hour on the hour.',
      ),
    ),
  ),
  timezone: v.optional(
    v.pipe(
      v.string("timezone must be a string"),
      v.maxLength(100, "timezone must be at most 100 characters"),
      v.description('The IANA time zone the cron expression is read in, "UTC" by default.'),
    ),
  ),
  every: v.optional(
    v.pipe(
      v.number(everyMessage),
      v.integer(everyMessage),
      v.minValue(1, everyMessage),
      v.maxValue(MAX_EVERY_SECONDS, everyMessage),
      v.description(
        "Instead of cron: every this many seconds, on the multiples of it since 1970-01-01T00:00:00Z (every 3600 fires on the hour, UTC).",
      ),
    ),
  ),
  missed: v.optional(
    v.picklist(MISSED_POLICIES, (issue) => `missed must be "skip" or "run_once", not ${issue.received}`),
  ),
  task: ScheduledTask,
}

/** POST /schedules body. */
export const ScheduleInput = v.object(
  {
    id: v.optional(ScheduleId),
    ...ScheduleTiming,
    paused: v.optional(v.boolean("paused must be true or false")),
  },
  'the body must be a JSON object with "cron" or "every", and a "task"',
)
export type ScheduleInput = v.InferOutput<typeof ScheduleInput>

/** PATCH /schedules/{id} body: the fields to change; `cron` and `every` replace each other. */
export const SchedulePatch = v.object(
  {
    cron: ScheduleTiming.cron,
    timezone: ScheduleTiming.timezone,
    every: ScheduleTiming.every,
    missed: ScheduleTiming.missed,
    task: v.optional(ScheduledTask),
    paused: v.optional(v.boolean("paused must be true or false")),
  },
  "the body must be a JSON object of the fields to change",
)
export type SchedulePatch = v.InferOutput<typeof SchedulePatch>

/** A schedule as the store keeps it, without its state. */
export const ScheduleDefinition = v.object({
  cron: v.nullable(v.string()),
  timezone: v.nullable(v.string()),
  every: v.nullable(v.number()),
  missed: v.picklist(MISSED_POLICIES),
  task: ScheduledTask,
})
export type ScheduleDefinition = v.InferOutput<typeof ScheduleDefinition>

/** A schedule as the API shows it: its definition, whether it is paused, and its last and next run. */
export const ScheduleRecord = v.object({
  id: v.string(),
  ...ScheduleDefinition.entries,
  paused: v.boolean(),
  /** Defined in SCHEDULES_FILE, which the store loads at start: a change made through the API lasts until then. */
  from_file: v.boolean(),
  created_at: v.pipe(v.string(), v.isoTimestamp()),
  updated_at: v.pipe(v.string(), v.isoTimestamp()),
  /** The occurrence last fired, and its task. */
  last_run_at: IsoTime,
  last_task_id: v.nullable(TaskId),
  /** The next occurrence; null while paused, or for a cron expression that will not fire again. */
  next_run_at: IsoTime,
})
export type ScheduleRecord = v.InferOutput<typeof ScheduleRecord>

export const ScheduleList = v.object({ schedules: v.array(ScheduleRecord) })

const WaitMs = v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_WAIT_MS)))

/** Only what this API key submitted; absent: everything (an admin key, the dashboard, an open API). */
const Owner = v.optional(OwnerName)

/** The work queues, by route: a task's kind picks its route (shared/topology.ts names the queues). */
export const TASK_ROUTES = ["polarity", "default"] as const
export type TaskRoute = (typeof TASK_ROUTES)[number]
export const TaskRoute = v.picklist(
  TASK_ROUTES,
  (issue) => `the queue must be one of ${TASK_ROUTES.join(", ")}, not ${issue.received}`,
)

/**
 * Whether a work queue is paused (no worker consumes it), as the status store keeps it and announces it on the
 * events exchange. `changed_at` only grows: a worker applies a notice or an answer only when it is newer than
 * what it has, so a late answer never undoes a later change.
 */
export const QueuePause = v.object({ queue: TaskRoute, paused: v.boolean(), changed_at: EpochMillis })
export type QueuePause = v.InferOutput<typeof QueuePause>

/**
 * RPC request to the status store. `owner` limits a query to what that key submitted: anything else reads as
 * absent. `wait_ms` holds the reply until the task is final or the time is up;
 * `catch_up` first reads every event already queued, as a query for an unknown id always does.
 * `list` pages newest first: `after` is the last task id of the page before. `lookup` reads many tasks at once,
 * and with `wait_ms` holds the reply until every one it knows is final.
 */
export const StatusQuery = v.variant("op", [
  v.object({
    op: v.literal("get"),
    task_id: TaskId,
    wait_ms: WaitMs,
    catch_up: v.optional(v.boolean()),
    owner: Owner,
  }),
  v.object({
    op: v.literal("list"),
    owner: Owner,
    status: v.optional(TaskStatus),
    kind: v.optional(v.picklist(TASK_KINDS)),
    /** Task ids that start with this (lower-case hex and dashes). */
    id_prefix: v.optional(TaskIdPrefix),
    limit: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_PAGE_SIZE)),
    after: v.optional(TaskId),
  }),
  v.object({
    op: v.literal("stats"),
    /** Seconds of `series`, up to now. */
    series_s: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_SERIES_SECONDS)),
    /** Seconds the latency percentiles cover. */
    window_s: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_SERIES_SECONDS)),
  }),
  v.object({ op: v.literal("workers") }),
  v.object({ op: v.literal("detail"), task_id: TaskId, owner: Owner }),
  /** `terminate`: a running task is revoked too, and its attempt aborted (else a running task is `started`). */
  v.object({ op: v.literal("revoke"), task_id: TaskId, owner: Owner, terminate: v.optional(v.boolean()) }),
  /**
   * The broker refused (a full queue), or did not confirm (a node died), a task whose PENDING it took: the store
   * ends that run FAILURE if it is still PENDING, as only a worker may publish a FAILURE event.
   */
  v.object({
    op: v.literal("refused"),
    task_id: TaskId,
    run: Run,
    error: v.pipe(v.string(), v.maxLength(1000)),
  }),
  /** The `limit` most recently revoked tasks and their runs: what a worker that was away did not hear. */
  v.object({ op: v.literal("revoked"), limit: v.pipe(v.number(), v.integer(), v.minValue(1)) }),
  v.object({ op: v.literal("group"), group_id: TaskId, wait_ms: WaitMs, owner: Owner }),
  v.object({
    op: v.literal("lookup"),
    task_ids: LookupTasks.entries.task_ids,
    wait_ms: WaitMs,
    /** The largest answer the caller takes: past it the store answers `too_large` instead of the tasks. */
    max_bytes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
    owner: Owner,
  }),
  /** How many of this key's tasks are in flight (submitted, not final): its quota's measure. */
  v.object({ op: v.literal("in_flight"), owner: OwnerName }),
  v.object({
    op: v.literal("claim"),
    key: IdempotencyKey,
    /** A hash of the request: the same key with another request is refused. */
    fingerprint: v.string(),
    task_ids: v.pipe(v.array(TaskId), v.minLength(1), v.maxLength(MAX_BATCH_SIZE)),
    group_id: v.optional(TaskId),
    /** How long the claimer may take to publish before another request with the key takes over. */
    lease_ms: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(600_000)),
    /** Keys are namespaced per owner: two API keys may use the same Idempotency-Key for different requests. */
    owner: Owner,
  }),
  /** A new schedule (an id taken already is refused), the gateway having checked its definition. */
  v.object({
    op: v.literal("schedule_create"),
    id: ScheduleId,
    definition: ScheduleDefinition,
    paused: v.boolean(),
    /** The API key's name that creates it: its tasks will belong to it. */
    owner: v.nullable(OwnerName),
  }),
  v.object({ op: v.literal("schedule_get"), id: ScheduleId, owner: Owner }),
  v.object({ op: v.literal("schedule_list"), owner: Owner }),
  /** Merged into the schedule by the store, which checks the result; pause and resume are patches too. */
  v.object({ op: v.literal("schedule_update"), id: ScheduleId, patch: SchedulePatch, owner: Owner }),
  v.object({ op: v.literal("schedule_delete"), id: ScheduleId, owner: Owner }),
  /** Add up the reviews and documents that succeeded among the tasks submitted in [from, to). */
  v.object({ op: v.literal("polarity_report"), from: EpochMillis, to: EpochMillis, owner: Owner }),
  /** Every work queue that was ever paused or resumed, and whether it is paused now. */
  v.object({ op: v.literal("queue_pauses") }),
  v.object({ op: v.literal("pause_queue"), queue: TaskRoute, paused: v.boolean() }),
  /**
   * End REVOKED ("purged") every task of the queue's route that has not started (SCHEDULED, PENDING, RETRY),
   * after reading every event already queued. The caller has purged the queue's messages first.
   */
  v.object({ op: v.literal("purge_queue"), queue: TaskRoute }),
])
export type StatusQuery = v.InferOutput<typeof StatusQuery>

/** On a null: the id's task was held once, and its result expired (RESULT_EXPIRES); the API answers 410. */
const Expired = v.optional(v.literal(true))
export const TaskReply = v.object({ task: v.nullable(TaskRecord), expired: Expired })
export const TaskPageReply = v.object({ tasks: v.array(TaskRecord), next_after: v.nullable(TaskId) })
/** `revoked` (the task is now REVOKED), or why not: `not_found`, `started` (running), `final` (finished). */
export const RevokeReply = v.object({
  revoke: v.picklist(["revoked", "not_found", "started", "final"]),
  task: v.nullable(TaskRecord),
  expired: Expired,
})
/** Newest first. */
export const RevokedReply = v.object({
  revoked: v.array(v.object({ task_id: TaskId, run: v.pipe(v.number(), v.integer(), v.minValue(1)) })),
})
export const GroupReply = v.object({ group: v.nullable(GroupRecord), expired: Expired })
export const QueuePausesReply = v.object({ queue_pauses: v.array(QueuePause) })
export const QueuePauseReply = v.object({ queue_pause: QueuePause })
export const PurgeReply = v.object({ revoked: Count })
/**
 * `claimed`: publish these ids (new ones, or a takeover's: the same ids again); `existing`: they were
 * published, answer them; `mismatch`: the key belongs to another request.
 */
export const ClaimReply = v.object({
  claim: v.picklist(["claimed", "existing", "mismatch"]),
  task_ids: v.array(TaskId),
  group_id: v.nullable(TaskId),
})
/** A lookup whose answer would pass its `max_bytes`: how many of its tasks, from the first, would fit. */
export const LookupTooLarge = v.object({
  too_large: v.object({ max_bytes: v.number(), fit: v.pipe(v.number(), v.integer(), v.minValue(0)) }),
})
export const StatsReply = v.object({ stats: DashboardStats })
export const InFlightReply = v.object({ in_flight: Count })
export const WorkersReply = v.object({ workers: v.array(WorkerRecord) })
export const DetailReply = v.object({ detail: v.nullable(TaskDetail), expired: Expired })
export const ErrorReply = v.object({ error: v.string() })
/**
 * A schedule op's answer: the schedule (null: no such id), or why not: `conflict` (the id is taken), `invalid`
 * (the patched schedule is not one: the reason).
 */
export const ScheduleReply = v.object({
  schedule: v.nullable(ScheduleRecord),
  conflict: v.optional(v.literal(true)),
  invalid: v.optional(v.string()),
})
export const ScheduleListReply = ScheduleList
export const PolarityReportReply = v.object({ report: PolarityReport })
export const StatusReply = v.union([
  PolarityReportReply,
  ScheduleReply,
  ScheduleListReply,
  StatsReply,
  InFlightReply,
  WorkersReply,
  DetailReply,
  TaskReply,
  TaskPageReply,
  TaskLookup,
  LookupTooLarge,
  RevokeReply,
  RevokedReply,
  GroupReply,
  ClaimReply,
  QueuePausesReply,
  QueuePauseReply,
  PurgeReply,
  ErrorReply,
])
export type StatusReply = v.InferOutput<typeof StatusReply>

/**
 * What travels on the RPC queue: a gateway sends every quick query of one event-loop turn as one request,
 * and the store answers them in one reply, in the same order. Queries that hold their reply travel alone.
 */
/** Queries one request carries at most: the store answers them all at once, so their number is bounded. */
export const MAX_QUERIES_PER_REQUEST = 1000
export const StatusQueryBatch = v.object({
  queries: v.pipe(v.array(StatusQuery), v.minLength(1), v.maxLength(MAX_QUERIES_PER_REQUEST)),
})
export type StatusQueryBatch = v.InferOutput<typeof StatusQueryBatch>
export const StatusReplyBatch = v.object({ replies: v.array(v.unknown()) })

/** AMQP `type` property of each message, so a queue that carries two contracts can tell them apart. */
export const MessageType = {
  task: "task",
  taskEvents: "task-events",
  barrier: "barrier",
  statusQuery: "status-query",
  statusReply: "status-reply",
  workerHeartbeat: "worker-heartbeat",
  taskProgress: "task-progress",
  controlCommand: "control-command",
  controlReply: "control-reply",
  webhookDelivery: "webhook-delivery",
  webhookAttempt: "webhook-attempt",
  queuePause: "queue-pause",
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

/**
 * A worker as `GET /admin/workers` shows it: its last heartbeat, or the fresher one it answered the ping with,
 * and how long that answer took (null: it did not answer in time, or it is not online).
 */
export const WorkerStatus = v.object({
  ...WorkerRecord.entries,
  ping_ms: v.nullable(v.number()),
})
export type WorkerStatus = v.InferOutput<typeof WorkerStatus>
export const WorkerList = v.object({ workers: v.array(WorkerStatus) })

/** `GET /admin/workers/{id}/active`: what the worker holds now, running attempts first. */
export const ActiveTasks = v.object({ worker: WorkerId, tasks: v.array(ActiveTask) })

/** `POST /admin/workers/{id}/shutdown`: the worker took the command; it stops once its tasks in hand are done. */
export const ShutdownAccepted = v.object({ worker: WorkerId, status: v.literal("shutting_down") })

/** `POST /admin/workers/{id}/pool/grow|shrink`: the pool as its supervisor runs it after the change. */
export const PoolSize = v.object({ worker: WorkerId, pool: PoolInfo })

/**
 * Every queue of the prefix as the broker reports it. Depth and consumers come from passive declares. The rates
 * (messages per second) come from the management API when RABBITMQ_MANAGEMENT_URL is set (`source:
 * "management"`: `publish_rate` in, `deliver_rate` out); otherwise only `net_rate`, the change in depth per
 * second between two samples (`source: "depth"`). A queue that does not exist (yet) is left out.
 */
export const QueueReport = v.object({
  at: v.pipe(v.string(), v.isoTimestamp()),
  source: v.picklist(["management", "depth"]),
  queues: v.array(
    v.object({
      name: v.string(),
      messages: Count,
      consumers: Count,
      /** A dead-letter queue: its depth is work that needs a person. */
      dead_letter: v.boolean(),
      publish_rate: v.nullable(v.number()),
      deliver_rate: v.nullable(v.number()),
      net_rate: v.nullable(v.number()),
    }),
  ),
})
export type QueueReport = v.InferOutput<typeof QueueReport>

/** Everything the dashboard shows beside the task table, at once. */
/** A work queue as an operator pauses, resumes and purges it. */
export const TaskQueueState = v.object({
  queue: TaskRoute,
  /** The broker's name of its work queue (its quarantine queue is paused and purged with it). */
  work_queue: v.string(),
  paused: v.boolean(),
  /** When it was last paused or resumed; null if never. */
  changed_at: v.nullable(v.pipe(v.string(), v.isoTimestamp())),
})
export type TaskQueueState = v.InferOutput<typeof TaskQueueState>

export const TaskQueueList = v.object({
  queues: v.array(
    v.object({
      ...TaskQueueState.entries,
      /** Tasks' messages waiting in the work queue and its quarantine queue; null when the broker did not say. */
      messages: v.nullable(Count),
      consumers: v.nullable(Count),
    }),
  ),
})
export type TaskQueueList = v.InferOutput<typeof TaskQueueList>

export const PurgeResult = v.object({
  queue: TaskRoute,
  /** Messages removed from the work queue and its quarantine queue (each holds 1–100 tasks). */
  messages_purged: Count,
  /** Tasks of the queue that had not started and are now REVOKED ("purged"), delayed and retrying ones included. */
  tasks_revoked: Count,
})
export type PurgeResult = v.InferOutput<typeof PurgeResult>

export const DashboardOverview = v.object({
  stats: DashboardStats,
  workers: v.array(WorkerRecord),
  queues: QueueReport,
  task_queues: v.array(TaskQueueState),
})
export type DashboardOverview = v.InferOutput<typeof DashboardOverview>

// How the gateway reads a request: its JSON body, its query string and its path parameters, each against the
// valibot schema that also documents it; anything else is a problem+json answer.
import { createHash } from "node:crypto"
import type { Context } from "hono"
import * as v from "valibot"
import { explainIssues, MAX_PAGE_SIZE, MAX_WAIT_MS, TaskId, TaskStatus } from "../../shared/contracts.ts"
import { Problem } from "../../shared/http.ts"

/** JSON is UTF-8 (RFC 8259): bytes that are not are refused, never replaced with U+FFFD and accepted. */
const UTF8 = new TextDecoder("utf-8", { fatal: true })

const JSON_CONTENT_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i

export async function readJson<TSchema extends v.GenericSchema>(
  c: Context,
  schema: TSchema,
): Promise<v.InferOutput<TSchema>> {
  const contentType = c.req.header("content-type") ?? ""
  if (!JSON_CONTENT_TYPE.test(contentType)) {
    throw new Problem(
      415,
      `send the body as application/json, not ${contentType || "without a content type"}`,
    )
  }
  let text: string
  try {
    text = UTF8.decode(await c.req.arrayBuffer())
  } catch {
    throw new Problem(400, "the body is not valid UTF-8")
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new Problem(400, `the body is not valid JSON: ${(err as Error).message}`)
  }
  const result = v.safeParse(schema, json)
  if (!result.success) throw new Problem(422, explainIssues(result.issues))
  return result.output
}

/** Parse the query string against its schema: the same schema documents the parameters. */
export function readQuery<TSchema extends v.GenericSchema>(
  c: Context,
  schema: TSchema,
): v.InferOutput<TSchema> {
  const result = v.safeParse(schema, c.req.query())
  if (!result.success) throw new Problem(422, explainIssues(result.issues))
  return result.output
}

const isWaitSeconds = (raw: string) =>
  raw.trim() !== "" && Number(raw) >= 0 && Number(raw) * 1000 <= MAX_WAIT_MS

/** `?wait=<seconds>`, in milliseconds; absent means do not wait. */
export const WaitQuery = v.object({
  wait: v.pipe(
    v.optional(v.string(), "0"),
    v.check(
      isWaitSeconds,
      (issue) => `wait must be a number of seconds from 0 to ${MAX_WAIT_MS / 1000}, not "${issue.input}"`,
    ),
    v.transform((raw) => Math.round(Number(raw) * 1000)),
    v.number(),
    v.minValue(0),
    v.maxValue(MAX_WAIT_MS),
    v.metadata({
      description: `Seconds (0–${MAX_WAIT_MS / 1000}, fractions allowed) to hold the answer until the work is final. The wait is held by the status store, never by a worker.`,
      minimum: 0,
      maximum: MAX_WAIT_MS / 1000,
    }),
  ),
})

/** A whole-number query parameter from 1 to `max`. */
export function limitParam(max: number, fallback: number) {
  return v.pipe(
    v.optional(v.string(), String(fallback)),
    v.regex(/^\d+$/, `limit must be a whole number from 1 to ${max}`),
    v.transform(Number),
    v.number(),
    v.integer(),
    v.minValue(1, `limit must be a whole number from 1 to ${max}`),
    v.maxValue(max, `limit must be a whole number from 1 to ${max}`),
    v.metadata({ description: `How many to return, 1–${max}; ${fallback} by default.`, default: fallback }),
  )
}

export const AdminLimitQuery = v.object({ limit: limitParam(1000, 100) })

/** `DELETE /polarities/tasks/{id}?terminate=true`: Celery's `revoke(terminate=True)`. */
export const RevokeQuery = v.object({
  terminate: v.pipe(
    v.optional(v.picklist(["true", "false"], "terminate must be true or false"), "false"),
    v.transform((raw) => raw === "true"),
    v.boolean(),
    v.metadata({
      description:
        "Also stop a running task: its attempt is aborted, and it ends REVOKED, not retried or dead-lettered.",
      default: false,
    }),
  ),
})

export const ListQuery = v.object({
  status: v.optional(v.pipe(TaskStatus, v.description("Only tasks in this status."))),
  limit: limitParam(MAX_PAGE_SIZE, 20),
  cursor: v.optional(
    v.pipe(v.string(), v.description("The `next_cursor` of the page before; none for the first page.")),
  ),
})

// Opaque to clients, so that what it holds can change; today the last task id of the page before.
export const encodeCursor = (taskId: string) => Buffer.from(`after:${taskId}`).toString("base64url")

export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined
  const taskId = Buffer.from(cursor, "base64url")
    .toString()
    .replace(/^after:/, "")
  if (!v.is(TaskId, taskId)) throw new Problem(422, `cursor: "${cursor}" is not a cursor this API gave out`)
  return taskId
}

export const TaskIdParam = v.pipe(TaskId, v.description("The task id the submission answered (a UUID)."))

export function parseTaskId(raw: string): string {
  if (!v.is(TaskId, raw)) throw new Problem(404, `no task "${raw}": task ids are UUIDs`)
  return raw
}

/** What makes two requests with one Idempotency-Key the same request: the route and the checked body. */
export function requestFingerprint(routePath: string, body: unknown): string {
  return createHash("sha256")
    .update(JSON.stringify([routePath, body]))
    .digest("hex")
}

/** RabbitMQ 3.10's quorum queues have no priorities: a priority they would ignore is refused, not dropped. */
export function checkPriority(priority: number | undefined, queueType: "classic" | "quorum"): void {
  if (priority !== undefined && queueType === "quorum") {
    throw new Problem(
      422,
      "priority: this deployment's work queues are quorum queues (QUEUE_TYPE=quorum), which have no priorities in RabbitMQ 3.10; submit without priority",
    )
  }
}

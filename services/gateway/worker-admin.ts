// Remote control of the workers over HTTP (Flower's worker pages, Celery's `inspect` and `control`): the list of
// workers with a ping, one worker's tasks in hand, a graceful shutdown, and growing or shrinking an autoscaled
// pool. Served under /admin (the admin check) and again under /dashboard/api for the dashboard's buttons (the
// dashboard's credentials). An unknown worker is a 404, a worker that does not answer in time a 504.
import type { Context } from "hono"
import * as v from "valibot"
import {
  ActiveTasks,
  type ControlCommand,
  type ControlReply,
  PoolSize,
  ShutdownAccepted,
  WorkerId,
  WorkerList,
  type WorkerRecord,
  type WorkerStatus,
} from "../../shared/contracts.ts"
import { Problem } from "../../shared/http.ts"
import { NoAnswer, type TimedReply, UnknownWorker, type WorkerControl } from "../../shared/worker-control.ts"
import type { Route } from "./openapi.ts"
import { readQuery } from "./requests.ts"
import type { StatusStoreClient } from "./status-store-client.ts"

export const WORKER_ADMIN_SCHEMAS = { WorkerList, ActiveTasks, ShutdownAccepted, PoolSize }

const WorkerIdParam = v.pipe(
  WorkerId,
  v.description("The worker's id, `host:pid`, as GET /admin/workers lists it."),
)

const PoolQuery = v.object({
  n: v.pipe(
    v.optional(v.string(), "1"),
    v.regex(/^\d+$/, "n must be a whole number from 1 to 100"),
    v.transform(Number),
    v.number(),
    v.minValue(1, "n must be a whole number from 1 to 100"),
    v.maxValue(100, "n must be a whole number from 1 to 100"),
    v.metadata({ description: "How many processes, 1–100; 1 by default.", default: 1 }),
  ),
})

interface WorkerAdminDeps {
  control: WorkerControl
  store: StatusStoreClient
  /** How long a worker has to answer. */
  timeoutMs: number
}

const iso = (millis: number) => new Date(millis).toISOString()

/** A ping's answer as a listed worker: the heartbeat it answered with, fresh. */
function fromPong({ reply, ms }: TimedReply): WorkerStatus | undefined {
  if (reply.reply !== "pong") return undefined
  const { state: _state, started_at, sent_at, ...fields } = reply.heartbeat
  return {
    ...fields,
    status: "online",
    started_at: iso(started_at),
    last_heartbeat_at: iso(sent_at),
    ping_ms: Math.round(ms * 10) / 10,
  }
}

/** Every worker the store has heard from, with the answer of those online to a ping sent to all. */
async function listWorkers({ control, store, timeoutMs }: WorkerAdminDeps): Promise<WorkerStatus[]> {
  // Without the store, the ping alone still says who is there.
  const known: WorkerRecord[] = await store.workers().catch(() => [])
  const online = known.filter((worker) => worker.status === "online").length
  const replies = await control.broadcast({ command: "ping" }, timeoutMs, online || undefined)
  const answered = new Map(replies.flatMap((reply) => fromPong(reply) ?? []).map((w) => [w.worker, w]))
  const listed = known.map((worker) => answered.get(worker.worker) ?? { ...worker, ping_ms: null })
  const unheard = [...answered.values()].filter((worker) => !known.some((k) => k.worker === worker.worker))
  return [...listed, ...unheard].sort((a, b) => a.worker.localeCompare(b.worker))
}

function workerIdOf(c: Context): string {
  const workerId = c.req.param("workerId") ?? ""
  if (!v.is(WorkerId, workerId)) throw new Problem(404, `no worker "${workerId}": worker ids are host:pid`)
  return workerId
}

/** One worker's reply; 404 when it is unknown, 504 when it is silent, 409 when the command does not apply. */
async function ask(deps: WorkerAdminDeps, workerId: string, command: ControlCommand): Promise<ControlReply> {
  let answer: TimedReply
  try {
    answer = await deps.control.ask(workerId, command, deps.timeoutMs)
  } catch (err) {
    if (err instanceof UnknownWorker) throw new Problem(404, `no worker ${workerId} is connected`)
    if (err instanceof NoAnswer) {
      throw new Problem(
        504,
        `worker ${workerId} did not answer within ${deps.timeoutMs} ms: it may be busy with a task that does not yield, or stopping`,
      )
    }
    throw err
  }
  if (answer.reply.reply === "refused") throw new Problem(409, answer.reply.error)
  return answer.reply
}

/** The routes under `prefix` (/admin or /dashboard/api), documented under `tag`. */
export function mountWorkerAdmin(
  route: Route<"WorkerList" | "ActiveTasks" | "ShutdownAccepted" | "PoolSize">,
  prefix: string,
  tag: string,
  deps: WorkerAdminDeps,
): void {
  const problems = [401, 403, 404, 503, 504]
  const path = { workerId: WorkerIdParam }
  route(
    "get",
    `${prefix}/workers`,
    {
      summary: "Every worker, pinged: its last heartbeat and how long its answer took",
      description: `Workers the status store has heard from (online, lost or offline), with a ping sent to all on the control exchange; the answer waits until every online worker has answered, or CONTROL_TIMEOUT_MS. A worker that answers shows the heartbeat it answered with; \`ping_ms\` is null for one that did not.`,
      tag,
      responses: { 200: { description: "The workers", schema: "WorkerList" } },
      problems: [401, 403, 503],
    },
    async (c) => c.json({ workers: await listWorkers(deps) }),
  )
  route(
    "get",
    `${prefix}/workers/:workerId/active`,
    {
      summary: "A worker's tasks in hand: running attempts with their run time, then those waiting to run",
      tag,
      path,
      responses: { 200: { description: "The tasks", schema: "ActiveTasks" } },
      problems,
    },
    async (c) => {
      const reply = await ask(deps, workerIdOf(c), { command: "active" })
      if (reply.reply !== "active") throw new Problem(502, "the worker answered something else")
      return c.json({ worker: reply.worker, tasks: reply.tasks })
    },
  )
  route(
    "post",
    `${prefix}/workers/:workerId/shutdown`,
    {
      summary: "Stop a worker gracefully: it takes no more tasks, finishes those in hand, and exits",
      description:
        "For the supervisor of an autoscaled pool: every process drains and stops, then the supervisor. A process of a pool stops alone, and its supervisor does not replace it unless the pool is below its minimum.",
      tag,
      path,
      responses: { 202: { description: "The worker is stopping", schema: "ShutdownAccepted" } },
      problems,
    },
    async (c) => {
      const reply = await ask(deps, workerIdOf(c), { command: "shutdown" })
      return c.json(
        { worker: "worker" in reply ? reply.worker : workerIdOf(c), status: "shutting_down" },
        202,
      )
    },
  )
  for (const change of ["grow", "shrink"] as const) {
    route(
      "post",
      `${prefix}/workers/:workerId/pool/${change}`,
      {
        summary:
          change === "grow"
            ? "An autoscaled pool: start n more processes now (up to its maximum)"
            : "An autoscaled pool: stop n processes now, each after it has drained (down to its minimum)",
        description:
          "The id is the pool supervisor's. A worker that is not one answers 409. The autoscaler goes on: a pool grown by hand shrinks again after it has been idle.",
        tag,
        path,
        query: PoolQuery,
        responses: { 200: { description: "The pool after the change", schema: "PoolSize" } },
        problems: [...problems, 409, 422],
      },
      async (c) => {
        const { n } = readQuery(c, PoolQuery)
        const reply = await ask(deps, workerIdOf(c), { command: `pool_${change}`, n })
        if (reply.reply !== "pool") throw new Problem(502, "the worker answered something else")
        return c.json({ worker: reply.worker, pool: reply.pool })
      },
    )
  }
}

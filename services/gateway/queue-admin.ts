// Pausing, resuming and purging a work queue, as Flower and Bull Board let an operator. Served under /admin (the
// admin check) and again under /dashboard/api for the dashboard's buttons (the dashboard's credentials). Pause and
// resume go to the status store, which keeps the paused set and tells every worker; a purge empties the queue's
// messages on the broker, then has the store end REVOKED ("purged") every task of the queue that had not started.
import type { Context } from "hono"
import * as v from "valibot"
import type { Broker } from "../../shared/amqp.ts"
import {
  PurgeResult,
  type QueuePause,
  TASK_ROUTES,
  TaskQueueList,
  TaskQueueState,
  TaskRoute,
} from "../../shared/contracts.ts"
import { Problem } from "../../shared/http.ts"
import type { Route } from "./openapi.ts"
import type { QueueStats } from "./queue-stats.ts"
import type { StatusStoreClient } from "./status-store-client.ts"

export const QUEUE_ADMIN_SCHEMAS = { TaskQueueList, TaskQueueState, PurgeResult }

/** A purge may revoke a great many tasks, a thousand a transaction: the store gets this long on top of RPC_TIMEOUT_MS. */
const PURGE_EXTRA_MS = 120_000

interface QueueAdminDeps {
  broker: Broker
  store: StatusStoreClient
  queues: QueueStats
}

const QueueParam = v.pipe(
  TaskRoute,
  v.description("The queue: `polarity` (reviews) or `default` (the rest)."),
)

/** Every work queue, paused or not; one never paused or resumed is not paused. */
export function taskQueueStates(broker: Broker, pauses: QueuePause[]): TaskQueueState[] {
  return TASK_ROUTES.map((queue) => {
    const pause = pauses.find((p) => p.queue === queue)
    return {
      queue,
      work_queue: broker.names.taskQueues[queue],
      paused: pause?.paused ?? false,
      changed_at: pause ? new Date(pause.changed_at).toISOString() : null,
    }
  })
}

function queueOf(c: Context): TaskRoute {
  const queue = c.req.param("queue") ?? ""
  if (!v.is(TaskRoute, queue)) {
    throw new Problem(404, `no queue "${queue}": the work queues are ${TASK_ROUTES.join(" and ")}`)
  }
  return queue
}

async function listQueues({ broker, store, queues }: QueueAdminDeps): Promise<TaskQueueList> {
  const [pauses, report] = await Promise.all([store.queuePauses(), queues.sample()])
  const depth = (name: string) => report.queues.find((row) => row.name === name)
  return {
    queues: taskQueueStates(broker, pauses).map((state) => {
      const work = depth(state.work_queue)
      const quarantine = depth(broker.names.quarantineQueues[state.queue])
      return {
        ...state,
        messages: work && quarantine ? work.messages + quarantine.messages : null,
        consumers: work?.consumers ?? null,
      }
    }),
  }
}

/**
 * The broker first, then the store: a task whose message the purge removed has its PENDING in the store (or in
 * the store's queue, which it reads first), so none is left PENDING. The other order would lose the tasks
 * submitted in between. What the purge cannot reach (the delay ladder, the retry waits, tasks a worker holds
 * unstarted) is revoked in the store, so workers skip it when it reaches them.
 */
async function purgeQueue({ broker, store }: QueueAdminDeps, queue: TaskRoute): Promise<PurgeResult> {
  const purged =
    (await broker.purge(broker.names.taskQueues[queue])) +
    (await broker.purge(broker.names.quarantineQueues[queue]))
  try {
    return { queue, messages_purged: purged, tasks_revoked: await store.purgeQueue(queue, PURGE_EXTRA_MS) }
  } catch (err) {
    throw new Problem(
      503,
      `${purged} messages of queue ${queue} were purged, but the status store did not mark their tasks REVOKED (${(err as Error).message}): purge again to finish`,
    )
  }
}

/** The routes under `prefix` (/admin or /dashboard/api), documented under `tag`. */
export function mountQueueAdmin(
  route: Route<"TaskQueueList" | "TaskQueueState" | "PurgeResult">,
  prefix: string,
  tag: string,
  deps: QueueAdminDeps,
): void {
  const path = { queue: QueueParam }
  const problems = [401, 403, 404, 503]
  route(
    "get",
    `${prefix}/queues`,
    {
      summary: "The work queues: paused or not, their waiting messages and their consumers",
      description:
        "`messages` counts the messages (each of 1–100 tasks) waiting in the work queue and its quarantine queue; `consumers` the work queue's consumers, 0 while it is paused.",
      tag,
      responses: { 200: { description: "The work queues", schema: "TaskQueueList" } },
      problems: [401, 403, 503],
    },
    async (c) => c.json(await listQueues(deps)),
  )
  for (const change of ["pause", "resume"] as const) {
    route(
      "post",
      `${prefix}/queues/:queue/${change}`,
      {
        summary:
          change === "pause"
            ? "Pause a work queue: every worker stops consuming it (and its quarantine queue), restarted ones too"
            : "Resume a paused work queue: its workers consume it again",
        description:
          "The status store keeps the paused set and tells every worker; a worker that starts asks it first. Tasks go on being accepted and wait in the queue; those a worker already holds (up to WORKER_PREFETCH) finish. Pausing a paused queue, or resuming a running one, changes nothing and answers 200.",
        tag,
        path,
        responses: { 200: { description: "The queue now", schema: "TaskQueueState" } },
        problems,
      },
      async (c) => {
        const pause = await deps.store.pauseQueue(queueOf(c), change === "pause")
        const [state] = taskQueueStates(deps.broker, [pause]).filter((s) => s.queue === pause.queue)
        return c.json(state)
      },
    )
  }
  route(
    "post",
    `${prefix}/queues/:queue/purge`,
    {
      summary: "Purge a work queue: its waiting tasks end REVOKED (purged), none is left PENDING",
      description:
        "Removes the messages waiting in the work queue and its quarantine queue, then the status store ends REVOKED, with the error `purged`, every task of the queue that has not started: those whose messages were removed, and those waiting in the delay ladder (SCHEDULED), for a retry (RETRY) or in a worker's hand unstarted, which workers then skip. Running tasks are not touched. Pause the queue first so that no worker takes tasks meanwhile.",
      tag,
      path,
      responses: { 200: { description: "What was purged", schema: "PurgeResult" } },
      problems,
    },
    async (c) => c.json(await purgeQueue(deps, queueOf(c))),
  )
}

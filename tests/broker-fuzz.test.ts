// Hostile messages into every queue the services consume (work queues, quarantines, the store's events and
// requests, the webhook deliveries, the failed queue an operator replays, the listeners' exchanges: task events,
// revoke notices, remote control): each is dead-lettered with its reason or ignored, no task's state changes,
// and every service is healthy afterwards. A table of known attacks (issue 13's reproductions among them), then a
// seeded random part; BROKER_FUZZ_SEED=<n> replays a run.
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { AMQPMessage } from "@cloudamqp/amqp-client"
import type { TaskRecord } from "../shared/contracts.ts"
import {
  CONTROL_BROADCAST_KEY,
  DEAD_LETTER_KEYS,
  delayEntryExchange,
  delayRoutingKey,
  quarantineRoutingKey,
  statusRpcKey,
  type Topology,
} from "../shared/topology.ts"
import { mulberry32, pick as pickFrom } from "./random.ts"
import { postReview, rawChannel, type Stack, startStack, taskBody } from "./support.ts"

const ADMIN_TOKEN = "f".repeat(40)
const T0 = 1_700_000_000_000

let stack: Stack
let amqp: Awaited<ReturnType<typeof rawChannel>>
/** Every dead letter of the run, as it arrives. */
const deadLetters: AMQPMessage[] = []
/** Tasks that ended before the fuzz began: nothing sent afterwards may change them. */
let finished: TaskRecord[] = []
let succeeded: TaskRecord

beforeAll(async () => {
  stack = await startStack("broker-fuzz", { EVENT_HOLD_SECONDS: "1", ADMIN_TOKEN, WORKER_PREFETCH: "8" })
  amqp = await rawChannel()
  // Each publish resolves once the broker holds the message: the replay below must find the failed letters there.
  await amqp.channel.confirmSelect()
  await amqp.channel.basicConsume(
    stack.names.poisonQueue,
    { noAck: true },
    (msg) => void deadLetters.push(msg),
  )
  // Direct reply-to: requests with a valid reply-to need this channel to consume it; the replies are not read.
  await amqp.channel.basicConsume("amq.rabbitmq.reply-to", { noAck: true }, () => {})
  const review = await taskBody(await postReview(stack, "lovely and kind", "?wait=10"))
  const document = await taskBody(
    await fetch(stack.url("/polarities/documents?wait=10"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ document: "Great phone. Awful battery." }),
    }),
  )
  finished = [review, document]
  succeeded = review
  for (const task of finished) expect(task.status).toBe("SUCCESS")
})

afterAll(async () => {
  await amqp?.[Symbol.asyncDispose]()
  await stack?.[Symbol.asyncDispose]()
})

type Body = string | Uint8Array | object
interface Hostile {
  label: string
  exchange: (names: Topology) => string
  key: (names: Topology) => string
  body: Body
  properties?: Record<string, unknown>
  /** The dead letters it must cause, each by a reason; none: it is ignored. */
  reasons: RegExp[]
}

const encode = (body: Body) =>
  typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body)

async function send({ exchange, key, body, properties }: Hostile, tag: string): Promise<void> {
  await amqp.channel.basicPublish(exchange(stack.names), key(stack.names), encode(body), {
    deliveryMode: 2,
    messageId: tag,
    ...properties,
  })
}

const events = (n: Topology) => n.eventsExchange
const tasks = (n: Topology) => n.tasksExchange
const rpc = (n: Topology) => n.rpcExchange
const control = (n: Topology) => n.controlExchange
const ladder = (n: Topology) => delayEntryExchange(n)
/** The delay ladder's key of a webhook due at once. */
const webhookNow = delayRoutingKey(0, "webhook")
const key = (k: string) => () => k
const newId = () => crypto.randomUUID()

const success = (taskId: string, fields: Record<string, unknown> = {}) => ({
  task_id: taskId,
  state: "SUCCESS",
  attempt: 1,
  run: 1,
  at: T0,
  started_at: T0,
  result: {
    score: 99,
    comparative: 9,
    polarity: "positive",
    positive: ["forged"],
    negative: [],
    language: "en",
  },
  ...fields,
})
const reviewTask = (taskId: string, fields: Record<string, unknown> = {}) => ({
  task_id: taskId,
  kind: "polarity:review",
  review: "forged",
  submitted_at: T0,
  attempt: 1,
  run: 1,
  ...fields,
})
const heartbeat = (fields: Record<string, unknown> = {}) => ({
  worker: "fake:1",
  host: "fake",
  pid: 1,
  state: "online",
  prefetch: 1,
  in_hand: 0,
  succeeded: 0,
  failed: 0,
  retried: 0,
  started_at: T0,
  sent_at: T0,
  interval_ms: 1000,
  ...fields,
})
const directReplyTo = { replyTo: "amq.rabbitmq.reply-to", correlationId: "1" }
const held = /held 1 s waiting for /

/** Each case carries a fresh task id or message id, by which its dead letters are found. */
function table(): Hostile[] {
  const done = succeeded.task_id
  return [
    // The status store's event queue.
    { label: "not JSON", exchange: events, key: key("task.success"), body: "{", reasons: [/not JSON/] },
    {
      label: "not UTF-8",
      exchange: events,
      key: key("task.success"),
      body: new Uint8Array([0x7b, 0xff]),
      reasons: [/UTF-8/],
    },
    {
      label: "an empty body",
      exchange: events,
      key: key("task.success"),
      body: new Uint8Array(),
      reasons: [/empty body/],
    },
    {
      label: "2 MiB",
      exchange: events,
      key: key("task.success"),
      body: "x".repeat(2 << 20),
      reasons: [/exceeds 1048576/],
    },
    {
      label: "an array",
      exchange: events,
      key: key("task.success"),
      body: [],
      reasons: [/not a valid TaskEventBatch/],
    },
    {
      label: "no events",
      exchange: events,
      key: key("task.success"),
      body: { events: [] },
      reasons: [/not a valid/],
    },
    {
      label: "a wrong type",
      exchange: events,
      key: key("task.success"),
      body: { events: [success(newId(), { attempt: "1" })] },
      reasons: [/not a valid TaskEventBatch/],
    },
    {
      label: "issue 13: a REVOKED of run 9007199254",
      exchange: events,
      key: key("task.revoked"),
      body: { events: [{ task_id: done, state: "REVOKED", attempt: 9007199253, run: 9007199254, at: T0 }] },
      reasons: [/not a valid TaskEventBatch: events\.0\.attempt/],
    },
    {
      label: "a time past year 9999",
      exchange: events,
      key: key("task.success"),
      body: { events: [success(newId(), { at: 1e300 })] },
      reasons: [/not a valid/],
    },
    {
      label: "an infinite score",
      exchange: events,
      key: key("task.success"),
      body: JSON.stringify({ events: [success(newId())] }).replace('"score":99', '"score":1e400'),
      reasons: [/not a valid/],
    },
    {
      label: "prototype keys around the events",
      exchange: events,
      key: key("task.success"),
      body: `{"__proto__": {"events": [${JSON.stringify(success(newId()))}]}}`,
      reasons: [/not a valid TaskEventBatch/],
    },
    {
      label: "prototype keys inside an event of a task never submitted",
      exchange: events,
      key: key("task.success"),
      body: `{"events": [{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}, ${JSON.stringify(success(newId())).slice(1)}]}`,
      reasons: [held],
    },
    {
      label: "a SUCCESS under task.pending",
      exchange: events,
      key: key("task.pending"),
      body: { events: [success(newId())] },
      reasons: [/a SUCCESS event under routing key task\.pending/],
    },
    {
      label: "an unknown routing key",
      exchange: events,
      key: key("task.mixed"),
      body: { events: [success(newId())] },
      reasons: [/carries nothing the store takes/],
    },
    {
      label: "issue 13: a worker named with HTML",
      exchange: events,
      key: key("worker.heartbeat"),
      body: heartbeat({ worker: "<img src=x onerror=alert(1)>" }),
      reasons: [/not a valid WorkerHeartbeat: worker/],
    },
    {
      label: "a heartbeat every 30 years",
      exchange: events,
      key: key("worker.heartbeat"),
      body: heartbeat({ interval_ms: 1e12 }),
      reasons: [/not a valid WorkerHeartbeat/],
    },
    {
      label: "a barrier of 10 KB",
      exchange: events,
      key: key("status-store.barrier"),
      body: { barrier_id: "b".repeat(10_000) },
      reasons: [/not a valid Barrier/],
    },
    {
      label: "progress past its total",
      exchange: events,
      key: key("progress"),
      body: { reports: [{ task_id: newId(), attempt: 1, run: 1, at: T0, progress: { done: 5, total: 1 } }] },
      reasons: [/not a valid TaskProgressBatch/],
    },
    {
      label: "progress of a task never submitted",
      exchange: events,
      key: key("progress"),
      body: { reports: [{ task_id: newId(), attempt: 1, run: 1, at: T0, progress: { done: 1, total: 2 } }] },
      reasons: [],
    },
    {
      label: "issue 13: an event of a task never submitted",
      exchange: events,
      key: key("task.success"),
      body: { events: [success(newId())] },
      reasons: [held],
    },
    {
      label: "issue 13: a PENDING of run 2 on a success",
      exchange: events,
      key: key("task.pending"),
      body: {
        events: [
          { task_id: done, state: "PENDING", attempt: 1, run: 2, at: T0, kind: "polarity:review", input: {} },
        ],
      },
      reasons: [/the task succeeded in run 1: no run comes after/],
    },
    {
      label: "issue 13: a SUCCESS of run 2 replacing a result",
      exchange: events,
      key: key("task.success"),
      body: { events: [success(done, { run: 2, attempt: 2 })] },
      reasons: [/waiting for the PENDING of run 2/],
    },
    {
      label: "the same SUCCESS again, forged",
      exchange: events,
      key: key("task.success"),
      body: { events: [success(done)] },
      reasons: [],
    },
    {
      label: "a SUCCESS of an attempt that never started",
      exchange: events,
      key: key("task.success"),
      body: { events: [success(done, { attempt: 3 })] },
      reasons: [/waiting for the RETRY of attempt 2/],
    },
    {
      label: "a REVOKED the store never made",
      exchange: events,
      key: key("task.revoked"),
      body: { events: [{ task_id: done, state: "REVOKED", attempt: 1, run: 1, at: T0 }] },
      reasons: [/a REVOKED comes from the status store alone/],
    },
    {
      label: "a PENDING whose attempt is not its run - 1",
      exchange: events,
      key: key("task.pending"),
      body: {
        events: [
          {
            task_id: newId(),
            state: "PENDING",
            attempt: 5,
            run: 1,
            at: T0,
            kind: "polarity:review",
            input: {},
          },
        ],
      },
      reasons: [/has attempt 0, not 5/],
    },
    {
      label: "straight into the store's queue",
      exchange: () => "",
      key: (n) => n.statusEventsQueue,
      body: { events: [success(newId())] },
      reasons: [/came through the default exchange/],
    },
    // The status store's requests.
    {
      label: "a request without reply-to",
      exchange: rpc,
      key: key(statusRpcKey("gateway")),
      body: { queries: [{ op: "workers" }] },
      reasons: [/reply-to is not a direct reply-to/],
    },
    {
      label: "issue 13: a reply-to naming a work queue",
      exchange: rpc,
      key: key(statusRpcKey("gateway")),
      body: { queries: [{ op: "workers" }] },
      properties: { replyTo: stack.names.taskQueues.polarity },
      reasons: [/reply-to is not a direct reply-to/],
    },
    {
      label: "a worker revoking",
      exchange: rpc,
      key: key(statusRpcKey("polarity-worker")),
      body: { queries: [{ op: "revoke", task_id: done }] },
      properties: directReplyTo,
      reasons: [/a polarity-worker may not ask revoke/],
    },
    {
      label: "a caller nobody knows",
      exchange: rpc,
      key: key("status-store.nobody"),
      body: { queries: [{ op: "workers" }] },
      properties: directReplyTo,
      reasons: [/names no caller/],
    },
    {
      label: "a request that is not JSON",
      exchange: rpc,
      key: key(statusRpcKey("gateway")),
      body: "][",
      properties: directReplyTo,
      reasons: [/not JSON/],
    },
    {
      label: "a query named __proto__",
      exchange: rpc,
      key: key(statusRpcKey("gateway")),
      body: { queries: [{ op: "__proto__" }] },
      properties: directReplyTo,
      reasons: [/not a valid StatusQueryBatch/],
    },
    {
      label: "1,001 queries in one request",
      exchange: rpc,
      key: key(statusRpcKey("gateway")),
      body: { queries: Array.from({ length: 1001 }, () => ({ op: "workers" })) },
      properties: directReplyTo,
      reasons: [/not a valid StatusQueryBatch/],
    },
    // Remote control, on each worker's own listener: a command it cannot read is dropped, and it answers a
    // direct reply-to only, never a queue the command names. (A forged `shutdown` is stopped by permissions
    // alone: only the gateway's user may publish commands.)
    {
      label: "a command that is not JSON",
      exchange: control,
      key: key(CONTROL_BROADCAST_KEY),
      body: "{",
      reasons: [],
    },
    {
      label: "a ping whose reply-to names a work queue",
      exchange: control,
      key: key(CONTROL_BROADCAST_KEY),
      body: { command: "ping" },
      properties: { replyTo: stack.names.taskQueues.polarity, correlationId: "1" },
      reasons: [],
    },
    {
      label: "an unknown command",
      exchange: control,
      key: key(CONTROL_BROADCAST_KEY),
      body: { command: "__proto__" },
      reasons: [],
    },
    // Completion webhooks, which leave the delay ladder for the workers.
    {
      label: "a webhook delivery that is not JSON",
      exchange: ladder,
      key: () => webhookNow,
      body: "x",
      reasons: [/not JSON/],
    },
    {
      label: "a webhook delivery of another shape",
      exchange: ladder,
      key: () => webhookNow,
      body: { delivery_id: newId(), url: 42 },
      reasons: [/not a valid WebhookDelivery/],
    },
    {
      label: "a webhook to the cloud's metadata address, of a task that succeeded",
      exchange: ladder,
      key: () => webhookNow,
      body: {
        delivery_id: newId(),
        task_id: done,
        url: "http://169.254.169.254/latest",
        attempt: 1,
        record: succeeded,
      },
      reasons: [],
    },
    // The work queues and the quarantines.
    {
      label: "a task batch that is not JSON",
      exchange: tasks,
      key: key("polarity"),
      body: "nope",
      reasons: [/not JSON/],
    },
    {
      label: "no tasks",
      exchange: tasks,
      key: key("default"),
      body: { tasks: [] },
      reasons: [/not a valid TaskBatch/],
    },
    {
      // Headers and a reason that quotes the field: together more than one 8 KiB frame holds.
      label: "a task whose invalid field and headers are 5,000 characters each",
      exchange: tasks,
      key: key("polarity"),
      body: { tasks: [reviewTask(newId(), { review: 7, language: "x".repeat(5000) })] },
      properties: { headers: { "x-redeliveries": "x".repeat(5000) } },
      reasons: [/^not a valid Task: review: review must be a string; .*x… \(\d+ characters\)$/],
    },
    {
      label: "an attempt past MAX_ATTEMPT",
      exchange: tasks,
      key: key("polarity"),
      body: { tasks: [reviewTask(newId(), { attempt: 1e6 })] },
      reasons: [/not a valid Task/],
    },
    {
      label: "a time limit of 30 years",
      exchange: tasks,
      key: key("polarity"),
      body: { tasks: [reviewTask(newId(), { time_limit_ms: 1e12 })] },
      reasons: [/not a valid Task/],
    },
    {
      label: "a forged task runs, but its events never apply",
      exchange: tasks,
      key: key("polarity"),
      body: { tasks: [reviewTask(newId())] },
      reasons: [held],
    },
    {
      label: "a test task that would crash its worker, where test tasks are off",
      exchange: tasks,
      key: key("default"),
      body: { tasks: [{ ...reviewTask(newId()), kind: "test:flaky", crash_worker: true }] },
      reasons: [held],
    },
    {
      label: "a task straight into a work queue",
      exchange: () => "",
      key: (n) => n.taskQueues.default,
      body: { tasks: [reviewTask(newId())] },
      reasons: [/came through the default exchange/],
    },
    {
      label: "a quarantined batch that is not JSON",
      exchange: tasks,
      key: key(quarantineRoutingKey("polarity")),
      body: "{{",
      reasons: [/not JSON/],
    },
    {
      label: "a quarantined task with a hostile redelivery count",
      exchange: tasks,
      key: key(quarantineRoutingKey("default")),
      body: {
        tasks: [reviewTask(newId(), { kind: "document:sentences", review: undefined, document: "Fine." })],
      },
      properties: { headers: { "x-redeliveries": "NaN" } },
      reasons: [held],
    },
  ]
}

/** The dead letters of a case: of its whole message (by its id), or of its events or tasks (by their id). */
const lettersOf = ({ messageId, tag }: { messageId: string; tag: string }) =>
  deadLetters.filter((m) => m.properties.messageId === messageId || (m.bodyString() ?? "").includes(tag))
const reasonOf = (m: AMQPMessage) => String(m.properties.headers?.["x-dead-letter-reason"] ?? "")

async function until(done: () => boolean | Promise<boolean>, what: () => string, timeoutMs = 20_000) {
  for (const deadline = Date.now() + timeoutMs; !(await done()); await Bun.sleep(20)) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`)
  }
}

/** A case's message id, and the task id its body names (by which event-level dead letters are found). */
function idsOf(hostile: Hostile, index: number) {
  const messageId = `fuzz-case-${index}`
  const taskId = encode(hostile.body)
    .toString()
    .match(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/)
  return { messageId, tag: taskId?.[0] ?? messageId }
}

async function servicesHealthy(): Promise<void> {
  for (const service of [stack.gateway, stack.worker, stack.store]) {
    expect((await fetch(`${service.url}/healthz`)).status).toBe(200)
  }
  const res = await postReview(stack, "still working after all that", "?wait=10")
  expect((await taskBody(res)).status).toBe("SUCCESS")
}

async function unchanged(): Promise<void> {
  for (const task of finished) {
    expect(await taskBody(await fetch(stack.url(`/polarities/tasks/${task.task_id}`)))).toEqual(task)
  }
  expect(({} as Record<string, unknown>).polluted).toBeUndefined()
}

describe("hostile messages from a table", () => {
  const cases = () => table().map((hostile, i) => ({ hostile, ...idsOf(hostile, i) }))

  test("each is dead-lettered with its reason, or ignored, and no task changes", async () => {
    const all = cases()
    for (const { hostile, messageId } of all) await send(hostile, messageId)
    // The failed queue, which an operator replays: not JSON, and a forged replay of a task that succeeded.
    const failed = (body: Body) =>
      amqp.channel.basicPublish(stack.names.deadLetterExchange, DEAD_LETTER_KEYS.failed, encode(body), {
        deliveryMode: 2,
        messageId: "fuzz-failed-not-json",
      })
    await failed("not json")
    await failed({ tasks: [reviewTask(succeeded.task_id)] })
    const replay = await fetch(stack.url("/admin/dead-letters/failed/replay"), {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    })
    expect(replay.status).toBe(200)
    const expected = [
      ...all.flatMap(({ hostile, messageId, tag }) =>
        hostile.reasons.map((reason) => ({ label: hostile.label, messageId, tag, reason })),
      ),
      {
        label: "a failed letter that is not JSON",
        messageId: "fuzz-failed-not-json",
        tag: "-",
        reason: /not JSON/,
      },
      {
        label: "a replay of a task that succeeded",
        messageId: "-",
        tag: succeeded.task_id,
        reason: /the task succeeded in run 1/,
      },
    ]
    // Several cases may name one task for the same reason: each needs a dead letter of its own.
    const missing = () =>
      expected.filter((wanted) => {
        const alike = expected.filter(
          (e) => e.tag === wanted.tag && String(e.reason) === String(wanted.reason),
        )
        const found = lettersOf(wanted).filter((letter) => wanted.reason.test(reasonOf(letter)))
        return found.length < alike.length
      })
    await until(
      () => missing().length === 0,
      () =>
        `no dead letter for ${missing()
          .map((m) => `${m.label} (${m.reason})`)
          .join(", ")}`,
    )
    // Ignored: the same SUCCESS again, progress of an unknown task. Nothing of theirs reaches the poison queue.
    for (const { hostile, messageId } of all.filter(({ hostile }) => hostile.reasons.length === 0)) {
      expect({
        label: hostile.label,
        letters: deadLetters.filter((m) => m.properties.messageId === messageId),
      }).toEqual({
        label: hostile.label,
        letters: [],
      })
    }
    // No reply went anywhere but to a direct reply-to: nothing reached the work queue as a message of its own.
    const replies = deadLetters.filter((m) =>
      ["status-reply", "control-reply"].includes(m.properties.type ?? ""),
    )
    expect(replies).toEqual([])
    await unchanged()
    await servicesHealthy()
  })
})

describe("random hostile messages", () => {
  const seed = Number(process.env.BROKER_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
  const COUNT = 300

  test(`are dead-lettered or ignored, and no task changes (seed ${seed})`, async () => {
    console.log(`[broker-fuzz] seed ${seed} (BROKER_FUZZ_SEED=${seed} replays it)`)
    const next = mulberry32(seed)
    const pick = <T>(items: readonly T[]): T => pickFrom(next, items)
    const hostileValues = [
      null,
      true,
      -1,
      0,
      1.5,
      2 ** 53,
      1e300,
      "",
      "<img src=x onerror=alert(1)>",
      "\u0000",
      "\ud800",
      "x".repeat(5000),
      [],
      {},
      { __proto__: { polluted: true } },
      [[[[[[[[[[]]]]]]]]]],
      crypto.randomUUID(),
      succeeded.task_id,
    ]
    const templates = [
      () => ({ events: [success(pick([crypto.randomUUID(), succeeded.task_id]))] }),
      () => ({ tasks: [reviewTask(crypto.randomUUID())] }),
      () => heartbeat(),
      () => ({
        queries: [
          {
            op: pick(["get", "detail", "revoke", "revoked", "lookup", "list", "claim"]),
            task_id: succeeded.task_id,
          },
        ],
      }),
      () => ({
        reports: [
          { task_id: crypto.randomUUID(), attempt: 1, run: 1, at: T0, progress: { done: 1, total: 2 } },
        ],
      }),
      // Never `shutdown` or a pool command: those stop the worker, which only permissions prevent.
      () => ({ command: pick(["ping", "active"]) }),
      () => ({
        delivery_id: crypto.randomUUID(),
        task_id: succeeded.task_id,
        url: "http://127.0.0.1:9/hook",
        attempt: 1,
        record: succeeded,
      }),
    ]
    /** A valid-looking body with one field of one object changed to something hostile (or removed). */
    const mutate = (value: unknown, depth = 0): unknown => {
      if (Array.isArray(value)) return value.map((item) => mutate(item, depth + 1))
      if (value === null || typeof value !== "object") return value
      const entries = Object.entries(value)
      const target = next() < 0.7 ? pick(entries)?.[0] : undefined
      return Object.fromEntries(
        entries.flatMap(([k, v]) => {
          if (k !== target) return [[k, depth < 3 ? mutate(v, depth + 1) : v]]
          return next() < 0.15 ? [] : [[k, pick(hostileValues)]]
        }),
      )
    }
    const routes: [string, (n: Topology) => string, (n: Topology) => string][] = [
      [
        "events",
        events,
        () =>
          pick([
            "task.success",
            "task.pending",
            "task.revoked",
            "task.started",
            "task.retry",
            "worker.heartbeat",
            "progress",
            "status-store.barrier",
            "task.failure",
            "task.expired",
          ]),
      ],
      ["rpc", rpc, () => pick([statusRpcKey("gateway"), statusRpcKey("polarity-worker"), "status-store.x"])],
      ["control", control, () => pick([CONTROL_BROADCAST_KEY, "worker.nobody"])],
      ["webhooks", ladder, () => webhookNow],
      [
        "tasks",
        tasks,
        () =>
          pick(["polarity", "default", quarantineRoutingKey("polarity"), quarantineRoutingKey("default")]),
      ],
      [
        "default exchange",
        () => "",
        (n) => pick([n.statusEventsQueue, n.statusRpcQueue, n.taskQueues.polarity]),
      ],
    ]
    const before = deadLetters.length
    for (let i = 0; i < COUNT; i++) {
      const [, exchange, routingKey] = pick(routes)
      const raw =
        next() < 0.1
          ? pick(["{", "null", "[]", '{"__proto__":{}}', "\u0000", "x".repeat((1 << 20) + 1)])
          : undefined
      const body = raw ?? JSON.stringify(mutate(pick(templates)()))
      const properties = pick([
        {},
        directReplyTo,
        { replyTo: stack.names.taskQueues.default },
        { type: "barrier" },
        { headers: { "x-redeliveries": pick(hostileValues) } },
      ])
      await amqp.channel.basicPublish(exchange(stack.names), routingKey(stack.names), body, {
        deliveryMode: 2,
        messageId: `fuzz-random-${i}`,
        ...(properties as object),
      })
    }
    // The services still serve, and the consumed queues drain: no message is stuck or going round forever.
    await servicesHealthy()
    const consumed = [
      stack.names.statusEventsQueue,
      stack.names.statusRpcQueue,
      ...Object.values(stack.names.taskQueues),
      ...Object.values(stack.names.quarantineQueues),
    ]
    for (const queue of consumed) {
      let depth = Number.NaN
      const drained = async () => {
        depth = (await amqp.channel.queueDeclare(queue, { passive: true })).messageCount
        return depth === 0
      }
      await until(drained, () => `${queue} still holds ${depth} messages`)
    }
    // Every dead letter says why.
    for (const letter of deadLetters.slice(before)) expect(reasonOf(letter)).not.toBe("")
    await unchanged()
  })
})

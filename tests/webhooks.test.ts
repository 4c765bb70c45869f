import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { createHmac } from "node:crypto"
import { hostname } from "node:os"
import type { TaskDetail, TaskRecord } from "../shared/contracts.ts"
import { STORE_BACKENDS } from "./store-backends.ts"
import { expectProblem, postBody, type Stack, startStack, taskBody, waitForFinal } from "./support.ts"

const SECRET = "whsec_dGVzdC1zZWNyZXQtb2YtdGhlLXdlYmhvb2tz"
const MAX_ATTEMPTS = 3
/**
 * The receiver is reached at a loopback address of its own, which the allow list names; 127.0.0.1, which this
 * machine's name resolves to, is not named, so a callback by that name must be refused.
 */
const RECEIVER_ADDRESS = "127.0.0.2"

interface Received {
  path: string
  headers: Record<string, string>
  body: string
}

/** A receiver on this machine: what `answers` says for each path, in turn (the last one ever after). */
function startReceiver(answers: Record<string, number[]>) {
  const received: Received[] = []
  const served = new Map<string, number>()
  const server = Bun.serve({
    port: 0,
    hostname: "0.0.0.0",
    async fetch(req) {
      const path = new URL(req.url).pathname
      received.push({ path, headers: Object.fromEntries(req.headers), body: await req.text() })
      const turn = served.get(path) ?? 0
      served.set(path, turn + 1)
      const statuses = answers[path] ?? [404]
      return new Response("", { status: statuses[Math.min(turn, statuses.length - 1)] })
    },
  })
  return {
    received,
    url: (path: string) => `http://${RECEIVER_ADDRESS}:${server.port}${path}`,
    port: server.port,
    stop: () => server.stop(true),
  }
}

/** The stack and receiver of the backend whose tests are running (each backend's describe starts its own). */
let stack: Stack
let receiver: ReturnType<typeof startReceiver>

/** Verify a delivery as a receiver would: the Standard Webhooks signature over id, timestamp and body. */
function verify({ headers, body }: Received): boolean {
  const key = Buffer.from(SECRET.slice("whsec_".length), "base64")
  const signed = `${headers["webhook-id"]}.${headers["webhook-timestamp"]}.${body}`
  const expected = `v1,${createHmac("sha256", key).update(signed).digest("base64")}`
  const fresh = Math.abs(Date.now() / 1000 - Number(headers["webhook-timestamp"])) < 300
  return headers["webhook-signature"] === expected && fresh
}

type WebhookEntry = {
  at: string
  webhook: {
    delivery_id: string
    attempt: number
    outcome: string
    status_code: number | null
    error: string | null
    next_attempt_at: string | null
  }
}

/** The task's webhook attempts in its timeline, once `done` holds for them. */
async function attemptsOf(
  taskId: string,
  done: (entries: WebhookEntry[]) => boolean,
): Promise<WebhookEntry[]> {
  for (const deadline = Date.now() + 20_000; ; await Bun.sleep(50)) {
    const detail = (await fetch(stack.url(`/dashboard/api/tasks/${taskId}`)).then((r) =>
      r.json(),
    )) as TaskDetail
    const entries = (detail.webhooks ?? []) as WebhookEntry[]
    if (done(entries)) return entries
    if (Date.now() > deadline) throw new Error(`webhook attempts of ${taskId}: ${JSON.stringify(entries)}`)
  }
}

async function submitWith(path: string): Promise<TaskRecord> {
  const res = await postBody(stack, { review: "A lovely day", callback_url: receiver.url(path) })
  expect(res.status).toBe(202)
  return waitForFinal(stack, (await taskBody(res)).task_id)
}

describe.each(STORE_BACKENDS)("on each store backend (%s)", (backend) => {
  beforeAll(async () => {
    receiver = startReceiver({ "/ok": [200], "/flaky": [500, 204], "/down": [500] })
    const env = {
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_ALLOW_HOSTS: RECEIVER_ADDRESS,
      WEBHOOK_MAX_ATTEMPTS: String(MAX_ATTEMPTS),
      WEBHOOK_RETRY_BASE_MS: "200",
    }
    stack = await startStack(`webhooks-${backend}`, env, {}, { backend })
  })
  afterAll(async () => {
    await stack?.[Symbol.asyncDispose]()
    receiver?.stop()
  })

  describe("completion webhooks", () => {
    test("the final record is POSTed to callback_url, signed, and the attempt shows in the timeline", async () => {
      const task = await submitWith("/ok")
      const [entry] = await attemptsOf(task.task_id, (entries) => entries.length === 1)
      expect(entry?.webhook).toEqual({
        delivery_id: `${task.task_id}.1`,
        attempt: 1,
        outcome: "delivered",
        status_code: 200,
        error: null,
        next_attempt_at: null,
      })
      const deliveries = receiver.received.filter((r) => r.path === "/ok")
      expect(deliveries).toHaveLength(1)
      const [delivery] = deliveries
      if (!delivery) throw new Error("no delivery")
      expect(verify(delivery)).toBe(true)
      expect(verify({ ...delivery, body: delivery.body.replace("SUCCESS", "FAILURE") })).toBe(false)
      expect(delivery.headers["webhook-id"]).toBe(`${task.task_id}.1`)
      expect(delivery.headers["content-type"]).toBe("application/json")
      expect(JSON.parse(delivery.body)).toEqual(task)
    })

    test("a receiver's 500 is retried with backoff under the same delivery id, until it takes it", async () => {
      const task = await submitWith("/flaky")
      const entries = await attemptsOf(task.task_id, (all) =>
        all.some((e) => e.webhook.outcome === "delivered"),
      )
      expect(entries.map((e) => [e.webhook.attempt, e.webhook.outcome, e.webhook.status_code])).toEqual([
        [1, "failed", 500],
        [2, "delivered", 204],
      ])
      const first = entries[0]?.webhook
      expect(Date.parse(first?.next_attempt_at ?? "")).toBeGreaterThan(Date.parse(entries[0]?.at ?? ""))
      const deliveries = receiver.received.filter((r) => r.path === "/flaky")
      expect(deliveries.map((d) => d.headers["webhook-id"])).toEqual([
        `${task.task_id}.1`,
        `${task.task_id}.1`,
      ])
      expect(deliveries.every(verify)).toBe(true)
    })

    test(`a receiver that keeps failing is given up after ${MAX_ATTEMPTS} attempts`, async () => {
      const task = await submitWith("/down")
      const entries = await attemptsOf(task.task_id, (all) =>
        all.some((e) => e.webhook.outcome === "gave_up"),
      )
      expect(entries.map((e) => [e.webhook.attempt, e.webhook.outcome])).toEqual([
        [1, "failed"],
        [2, "failed"],
        [3, "gave_up"],
      ])
      expect(entries.at(-1)?.webhook.next_attempt_at).toBeNull()
      expect(receiver.received.filter((r) => r.path === "/down")).toHaveLength(MAX_ATTEMPTS)
    })

    test("a host name that resolves to a loopback address is refused at delivery: never called, given up at once", async () => {
      const sneaky = `http://${hostname()}:${receiver.port}/ok?sneaky`
      const res = await postBody(stack, { review: "Fine", callback_url: sneaky })
      expect(res.status).toBe(202)
      const task = await waitForFinal(stack, (await taskBody(res)).task_id)
      const [entry] = await attemptsOf(task.task_id, (entries) => entries.length === 1)
      expect(entry?.webhook.outcome).toBe("gave_up")
      expect(entry?.webhook.error).toMatch(
        /resolves to .+, a loopback or private address; WEBHOOK_ALLOW_HOSTS must name it/,
      )
      expect(receiver.received.filter((r) => r.path === "/ok")).toHaveLength(1)
    })

    describe("a callback URL that may not be called is a 422 problem at submission", () => {
      const cases: [string, string, string][] = [
        [
          "a private address",
          "http://10.1.2.3/hook",
          "callback_url: 10.1.2.3 is a loopback or private address; WEBHOOK_ALLOW_HOSTS must name it to be called",
        ],
        [
          "localhost, which the allow list does not name",
          "http://localhost:9/hook",
          "callback_url: localhost is a loopback or private address; WEBHOOK_ALLOW_HOSTS must name it to be called",
        ],
        [
          "the metadata address",
          "http://169.254.169.254/latest",
          "callback_url: 169.254.169.254 is a loopback or private address; WEBHOOK_ALLOW_HOSTS must name it to be called",
        ],
        [
          "an IPv6 loopback",
          "http://[::1]:9/hook",
          "callback_url: ::1 is a loopback or private address; WEBHOOK_ALLOW_HOSTS must name it to be called",
        ],
        ["another scheme", "ftp://example.com/hook", "callback_url: ftp: is not http: or https:"],
        [
          "credentials in the URL",
          "https://user:pw@example.com/hook",
          "callback_url: a callback URL must not hold credentials",
        ],
        ["not a URL", "hook", "callback_url: callback_url must be an absolute http:// or https:// URL"],
      ]
      for (const [what, url, detail] of cases) {
        test(what, async () => {
          await expectProblem(await postBody(stack, { review: "x", callback_url: url }), 422, detail)
        })
      }
    })
  })
})

describe("completion webhooks with two store replicas on PostgreSQL", () => {
  test("each task's record is POSTed once, by the replica whose commit made it due", async () => {
    const receiver = startReceiver({ "/replicas": [200] })
    try {
      await using replicated = await startStack(
        "webhooks-replicas",
        { WEBHOOK_SECRET: SECRET, WEBHOOK_ALLOW_HOSTS: RECEIVER_ADDRESS },
        {},
        { backend: "postgres", storeReplicas: 2 },
      )
      const submitted = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          postBody(replicated, { review: `lovely ${i}`, callback_url: receiver.url("/replicas") }),
        ),
      )
      const taskIds = await Promise.all(submitted.map(async (res) => (await taskBody(res)).task_id))
      await Promise.all(taskIds.map((id) => waitForFinal(replicated, id)))
      const deliveryIds = () => receiver.received.map((r) => r.headers["webhook-id"])
      for (const deadline = Date.now() + 20_000; deliveryIds().length < taskIds.length; await Bun.sleep(50)) {
        if (Date.now() > deadline) throw new Error(`${deliveryIds().length} of ${taskIds.length} delivered`)
      }
      // Past a sweep of both replicas (5 s): a second copy of any delivery would have come by now.
      await Bun.sleep(6000)
      expect(deliveryIds().toSorted()).toEqual(taskIds.map((id) => `${id}.1`).toSorted())
    } finally {
      receiver.stop()
    }
  })
})

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { requestFingerprint } from "../services/gateway/requests.ts"
import { StatusStoreClient } from "../services/gateway/status-store-client.ts"
import { Broker, brokerOptions } from "../shared/amqp.ts"
import { BrokerEnv, loadConfig } from "../shared/config.ts"
import type { GroupRecord, TaskAccepted } from "../shared/contracts.ts"
import { createLogger } from "../shared/log.ts"
import { STORE_BACKENDS } from "./store-backends.ts"
import { expectProblem, type Stack, startStack, taskBody, waitForFinal, watchEvents } from "./support.ts"

const KEY_TTL_SECONDS = 2

/** The stack of the backend whose tests are running (each backend's describe starts its own). */
let stack: Stack

const post = (path: string, body: unknown, key?: string) =>
  fetch(stack.url(path), {
    method: "POST",
    headers: { "content-type": "application/json", ...(key !== undefined && { "idempotency-key": key }) },
    body: JSON.stringify(body),
  })

const newKey = () => `key-${crypto.randomUUID()}`

describe.each(STORE_BACKENDS)("on each store backend (%s)", (backend) => {
  beforeAll(async () => {
    const env = { IDEMPOTENCY_KEY_TTL_SECONDS: String(KEY_TTL_SECONDS) }
    stack = await startStack(`idempotency-${backend}`, env, {}, { backend })
  })
  afterAll(async () => {
    await stack?.[Symbol.asyncDispose]()
  })

  describe("Idempotency-Key: repeating a submission answers the same task", () => {
    test("the same key and body twice: one task, the repeat marked as replayed", async () => {
      await using watch = await watchEvents(stack)
      const key = newKey()
      const first = await post("/polarities", { review: "lovely" }, key)
      const again = await post("/polarities", { review: "  lovely  " }, key)
      expect([first.status, again.status]).toEqual([202, 202])
      const [a, b] = [(await first.json()) as TaskAccepted, (await again.json()) as TaskAccepted]
      expect(b.task_id).toBe(a.task_id)
      expect(first.headers.get("idempotent-replayed")).toBeNull()
      expect(again.headers.get("idempotent-replayed")).toBe("true")
      expect(again.headers.get("location")).toBe(`/polarities/tasks/${a.task_id}`)
      await waitForFinal(stack, a.task_id)
      const pending = watch.events.filter((e) => e.state === "PENDING" && e.task_id === a.task_id)
      expect(pending).toHaveLength(1)
      expect(watch.events.filter((e) => e.state === "PENDING")).toHaveLength(1)
    })

    test("a repeat with ?wait= answers the finished task", async () => {
      const key = newKey()
      const { task_id } = await taskBody(await post("/polarities", { review: "awful" }, key))
      const res = await post("/polarities?wait=10", { review: "awful" }, key)
      expect(res.status).toBe(200)
      expect(await taskBody(res)).toMatchObject({ task_id, status: "SUCCESS" })
    })

    test("concurrent requests with one key make one task", async () => {
      await using watch = await watchEvents(stack)
      const key = newKey()
      const answers = await Promise.all(
        Array.from({ length: 10 }, () => post("/polarities", { review: "same" }, key).then(taskBody)),
      )
      const ids = new Set(answers.map((answer) => answer.task_id))
      expect(ids.size).toBe(1)
      await waitForFinal(stack, [...ids][0] ?? "")
      expect(watch.events.filter((e) => e.state === "PENDING")).toHaveLength(1)
    })

    test("a batch repeated with its key answers the same group and tasks", async () => {
      const key = newKey()
      const reviews = ["good", "bad"]
      const first = (await (await post("/polarities/batch", { reviews }, key)).json()) as GroupRecord
      const again = await post("/polarities/batch?wait=10", { reviews }, key)
      expect(again.status).toBe(200)
      expect(again.headers.get("idempotent-replayed")).toBe("true")
      const group = (await again.json()) as GroupRecord
      expect([group.group_id, group.task_ids, group.status]).toEqual([
        first.group_id,
        first.task_ids,
        "SUCCESS",
      ])
    })

    test("a request that claimed a key and died before publishing holds it only for its lease", async () => {
      // What a gateway that crashed right after claiming leaves behind: a claim and nothing published.
      const config = loadConfig(BrokerEnv, stack.env)
      const broker = await Broker.connect(
        brokerOptions("idempotency-test", config, createLogger("test", "error")),
      )
      try {
        const key = newKey()
        const body = { review: "orphaned" }
        const orphan = Bun.randomUUIDv7()
        const fingerprint = requestFingerprint("/polarities", { kind: "polarity:review", ...body })
        const client = new StatusStoreClient(broker, 5000)
        const claim = await client.claim({ op: "claim", key, fingerprint, task_ids: [orphan], lease_ms: 300 })
        expect(claim).toEqual({ claim: "claimed", task_ids: [orphan], group_id: null })

        const startedAt = Date.now()
        const res = await post("/polarities?wait=10", body, key)
        expect(res.status).toBe(200)
        expect(await taskBody(res)).toMatchObject({ task_id: orphan, status: "SUCCESS" })
        expect(Date.now() - startedAt).toBeGreaterThanOrEqual(250)
      } finally {
        await broker.close()
      }
    })

    test("a key is forgotten after its retention, and then makes a new task", async () => {
      const key = newKey()
      const { task_id } = await taskBody(await post("/polarities", { review: "first" }, key))
      const until = Date.now() + KEY_TTL_SECONDS * 1000 + 50
      while (Date.now() < until) await Bun.sleep(50)
      const later = await post("/polarities", { review: "second" }, key)
      expect(later.status).toBe(202)
      expect((await taskBody(later)).task_id).not.toBe(task_id)
    })
  })

  describe("Idempotency-Key refuses what it cannot repeat", () => {
    test("the same key with another body is a 422 problem, and nothing is published", async () => {
      const key = newKey()
      await post("/polarities", { review: "first" }, key)
      await expectProblem(
        await post("/polarities", { review: "second" }, key),
        422,
        `Idempotency-Key "${key}" was used with another request; use a new key for a new request`,
      )
    })

    test("the same key on another endpoint is a 422 problem", async () => {
      const key = newKey()
      await post("/polarities", { review: "Fine." }, key)
      const res = await post("/polarities/documents", { document: "Fine." }, key)
      expect(res.status).toBe(422)
    })

    test("a key that is too long or has spaces is a 422 problem", async () => {
      for (const key of ["x".repeat(256), "two words"]) {
        await expectProblem(
          await post("/polarities", { review: "fine" }, key),
          422,
          "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
      }
    })
  })
})

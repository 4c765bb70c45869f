import { describe, expect, test } from "bun:test"
import postgres from "postgres"
import {
  CHANGES_CHANNEL,
  type ChangeListener,
  type Changes,
  fromPayload,
  inProcessFeed,
  MAX_PAYLOAD_BYTES,
  postgresFeed,
  toPayloads,
} from "../services/status-store/change-feed.ts"
import { createLogger } from "../shared/log.ts"
import { createTestDatabase } from "./postgres.ts"

const log = createLogger("status-store", "error")
const ids = (n: number, tag: string) => Array.from({ length: n }, () => `${tag}-${crypto.randomUUID()}`)

/** Every notice a listener was told, with whether it came from its own replica, and each time it missed some. */
function recorder() {
  const told: { changes: Changes; here: boolean }[] = []
  let missed = 0
  let arrived = Promise.withResolvers<void>()
  const listener: ChangeListener = {
    changed(changes, here) {
      told.push({ changes, here })
      arrived.resolve()
      arrived = Promise.withResolvers()
    },
    missed() {
      missed++
      arrived.resolve()
      arrived = Promise.withResolvers()
    },
  }
  return {
    listener,
    told,
    missed: () => missed,
    /** Wait until `done()` holds (a notice crosses the database in milliseconds; 10 s is only a bound). */
    async until(done: () => boolean) {
      const deadline = Date.now() + 10_000
      while (!done()) {
        if (Date.now() > deadline) throw new Error(`not told in time: ${JSON.stringify(told)}`)
        await Promise.race([arrived.promise, Bun.sleep(100)])
      }
    },
  }
}

describe("notice payloads", () => {
  test("a commit's changes split into payloads under PostgreSQL's 8000 bytes, and read back whole", () => {
    const changes = { ended: ids(500, "t"), groups: ids(40, "g"), passed: ids(3, "p"), flushed: ids(2, "f") }
    const payloads = toPayloads("replica-1", changes)
    expect(payloads.length).toBeGreaterThan(1)
    for (const payload of payloads) expect(Buffer.byteLength(payload)).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES)
    const back = payloads.map(fromPayload)
    expect(back.every((notice) => notice?.replica === "replica-1")).toBe(true)
    expect({
      ended: back.flatMap((notice) => notice?.changes.ended ?? []),
      groups: back.flatMap((notice) => notice?.changes.groups ?? []),
      passed: back.flatMap((notice) => notice?.changes.passed ?? []),
      flushed: back.flatMap((notice) => notice?.changes.flushed ?? []),
    }).toEqual(changes)
  })

  test("no payload for no changes, and a payload not of ours reads as nothing", () => {
    expect(toPayloads("r", { ended: [], groups: [], passed: [], flushed: [] })).toEqual([])
    expect(fromPayload("not json")).toBeNull()
    expect(fromPayload('{"e":["x"]}')).toBeNull()
  })

  test("one process tells itself at once, and never asks for a read it was not told of", async () => {
    const { listener, told } = recorder()
    const feed = inProcessFeed(listener)
    await feed.publish({ ended: ["a"], groups: [], passed: [], flushed: [] })
    await feed.publish({ ended: [], groups: [], passed: [], flushed: [] })
    expect(told).toEqual([{ changes: { ended: ["a"], groups: [], passed: [], flushed: [] }, here: true }])
    expect(feed.recheckMs).toBe(Number.POSITIVE_INFINITY)
  })
})

describe("replicas on one PostgreSQL database", () => {
  test("what one replica publishes reaches the other by NOTIFY, and its own listener at once, once", async () => {
    await using database = await createTestDatabase("change-feed")
    const a = recorder()
    const b = recorder()
    const feedA = await postgresFeed(database.url, "a", a.listener, log, 1000)
    const feedB = await postgresFeed(database.url, "b", b.listener, log, 1000)
    try {
      const changes = { ended: ids(300, "t"), groups: ["g1"], passed: ["barrier-of-b"], flushed: [] }
      await feedA.publish(changes)
      await b.until(() => b.told.flatMap((t) => t.changes.ended).length === 300)
      expect(a.told).toEqual([{ changes, here: true }])
      expect(b.told.every((t) => !t.here)).toBe(true)
      expect(b.told.flatMap((t) => t.changes.ended)).toEqual(changes.ended)
      expect(b.told.flatMap((t) => t.changes.passed)).toEqual(["barrier-of-b"])
      // A's own notices came back to its LISTEN too, and were skipped: it was told once.
      await feedB.publish({ ended: ["from-b"], groups: [], passed: [], flushed: [] })
      await a.until(() => a.told.length === 2)
      expect(a.told[1]).toEqual({
        changes: { ended: ["from-b"], groups: [], passed: [], flushed: [] },
        here: false,
      })
    } finally {
      await Promise.all([feedA.close(), feedB.close()])
    }
  })

  test("a listening connection cut by the server comes back, and its held queries are told to read again", async () => {
    await using database = await createTestDatabase("change-feed-cut")
    const a = recorder()
    const b = recorder()
    const feedA = await postgresFeed(database.url, "a", a.listener, log, 1000)
    const feedB = await postgresFeed(database.url, "b", b.listener, log, 1000)
    const admin = postgres(database.url, { max: 1, onnotice: () => {} })
    try {
      const cut = await admin`
        SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity
        WHERE datname = current_database() AND query ILIKE ${`%listen%${CHANGES_CHANNEL}%`}`
      expect(cut.length).toBe(2)
      await b.until(() => b.missed() === 1)
      // Listening again: a notice sent now arrives.
      await b.until(() => {
        void feedA.publish({ ended: ["after-the-cut"], groups: [], passed: [], flushed: [] })
        return b.told.some((t) => t.changes.ended.includes("after-the-cut"))
      })
      expect(b.missed()).toBe(1)
    } finally {
      await admin.end({ timeout: 5 })
      await Promise.all([feedA.close(), feedB.close()])
    }
  })
})

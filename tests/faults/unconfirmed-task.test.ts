// An unkeyed submission whose task the broker does not confirm: the client is answered 503 and submits again
// under a new id, and the first id must not read PENDING for ever. On a node of this file's own, the gateway
// reaching it through a relay in this process: a node killed with -9 while its work queue's process is suspended
// (the task reaches no queue, no confirm comes), and a connection cut while the relay holds back what the broker
// sends (the task and its PENDING both stored, neither confirmed).
import { Database } from "bun:sqlite"
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { type AddressInfo, connect as connectTcp, createServer, type Socket } from "node:net"
import type { TaskDetail, TaskRecord } from "../../shared/contracts.ts"
import { eventually } from "../support.ts"
import { type Cluster, queueDepth, startCluster } from "./cluster.ts"
import { PrivateBroker } from "./private-broker.ts"

/** A TCP relay to the broker that can hold back (drop) what the broker sends, and cut every connection. */
async function startRelay(target: string) {
  const { hostname, port } = new URL(target)
  const sockets = new Set<Socket>()
  let holding = false
  const server = createServer((client) => {
    const upstream = connectTcp(Number(port), hostname)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on("error", () => {})
      socket.on("close", () => {
        sockets.delete(socket)
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream)
    upstream.on("data", (chunk) => {
      if (!holding) client.write(chunk)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const url = new URL(target)
  url.port = String((server.address() as AddressInfo).port)
  return {
    url: url.toString(),
    hold() {
      holding = true
    },
    cut() {
      for (const socket of sockets) socket.destroy()
      holding = false
    },
    close() {
      for (const socket of sockets) socket.destroy()
      server.close()
    },
  }
}

const broker = new PrivateBroker()
let relay: Awaited<ReturnType<typeof startRelay>>
let cluster: Cluster
beforeAll(async () => {
  await broker.start()
  relay = await startRelay(broker.url)
  cluster = await startCluster(
    "unconfirmed-task",
    // The gateway asks the store to close the record for as long as a status query may take: a node's restart.
    { AMQP_URL: broker.url, RPC_TIMEOUT_MS: "60000" },
    { startWorkers: false, deleteTopologyAfter: false, serviceEnv: { gateway: { AMQP_URL: relay.url } } },
  )
}, 120_000)
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]()
  relay?.close()
  await broker[Symbol.asyncDispose]()
}, 120_000)

const workQueue = () => `${cluster.env.AMQP_PREFIX}tasks.polarity`
const notAccepted =
  "and its submission was answered 503: it was not accepted and may never run; should it run after all, this record stays FAILURE"

/** POST a review; its answer, not awaited. */
const submit = (review: string) =>
  fetch(`${cluster.gateway.url}/polarities`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ review }),
  })

/** The id of the one task the store holds PENDING besides `known`, once it does. */
const pendingTask = (known: string[] = []) =>
  eventually(async () => {
    const pending = storedTasks().filter((task) => task.status === "PENDING" && !known.includes(task.task_id))
    expect(pending).toHaveLength(1)
    return pending[0]?.task_id ?? ""
  }, 10_000)

/** The task as GET answers it, once the gateway is back on the broker. */
const readTask = (taskId: string) =>
  eventually(async () => {
    const read = await fetch(`${cluster.gateway.url}/polarities/tasks/${taskId}`)
    expect(read.status).toBe(200)
    return (await read.json()) as TaskRecord
  }, 30_000)

/** The tasks the store holds, read from its file. */
function storedTasks(): Pick<TaskRecord, "task_id" | "status">[] {
  const db = new Database(cluster.databasePath, { readonly: true })
  try {
    return db.query<Pick<TaskRecord, "task_id" | "status">, []>("SELECT task_id, status FROM tasks").all()
  } finally {
    db.close()
  }
}

/** Stop the queue's process: what is published to it is neither queued nor confirmed, until the node dies. */
function suspendQueue(queue: string): void {
  const lookup = `rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, <<"${queue}">>))`
  broker.rabbitmqctl("eval", `{ok, Q} = ${lookup}, sys:suspend(amqqueue:get_pid(Q)).`)
}

describe("a submission whose task the broker does not confirm", () => {
  test("cut off by the node's death: its record ends FAILURE, saying it was not accepted, rather than PENDING", async () => {
    suspendQueue(workQueue())
    const answer = submit("cut off by the node's death")
    const taskId = await pendingTask()
    await broker.kill()
    await broker.start()

    const res = await answer
    expect(res.status).toBe(503)
    expect(res.headers.get("content-type")).toBe("application/problem+json")
    // Read once the gateway is back (before the fix the 503 came at once, before its reconnect).
    const record = await readTask(taskId)
    expect(record).toMatchObject({ task_id: taskId, status: "FAILURE", attempts: 0, started_at: null })
    expect(record.error).toStartWith("the broker did not confirm the task (")
    expect(record.error).toEndWith(notAccepted)
    // The task died with the queue's process: the restarted node has nothing to run, the store nothing open.
    expect(await queueDepth(cluster.env, workQueue())).toBe(0)
    expect(storedTasks()).toEqual([{ task_id: taskId, status: "FAILURE" }])
  }, 120_000)

  test("its PENDING's confirm lost too: closed all the same, and a run it gets after all leaves it FAILURE", async () => {
    // Accepted as usual first: the gateway's channels and exchanges are open again after the node's restart.
    const { task_id: accepted } = (await (await submit("accepted as usual")).json()) as TaskRecord
    relay.hold()
    const answer = submit("stored, never confirmed")
    const taskId = await pendingTask([accepted])
    await eventually(async () => expect(await queueDepth(cluster.env, workQueue())).toBe(2), 10_000)
    relay.cut()

    expect((await answer).status).toBe(503)
    const record = await readTask(taskId)
    expect(record).toMatchObject({ task_id: taskId, status: "FAILURE", attempts: 0 })
    expect(record.error).toEndWith(notAccepted)
    // The broker had the task: a worker runs it, and its outcome shows in the timeline, not in the record.
    await cluster.workers[0]?.start()
    const timeline = await eventually(async () => {
      const res = await fetch(`${cluster.gateway.url}/dashboard/api/tasks/${taskId}`)
      const { timeline } = (await res.json()) as TaskDetail
      expect(timeline.map((entry) => entry.state)).toContain("SUCCESS")
      return timeline
    }, 30_000)
    expect(timeline.map((entry) => entry.state)).toEqual(["PENDING", "FAILURE", "SUCCESS"])
    expect(await readTask(taskId)).toEqual(record)
    expect((await readTask(accepted)).status).toBe("SUCCESS")
  }, 120_000)
})

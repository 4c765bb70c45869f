import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { connect, type Socket } from "node:net"
import { loadGatewayConfig } from "../services/gateway.ts"
import type { GroupRecord } from "../shared/contracts.ts"
import { eventually, expectProblem, type Stack, startStack } from "./support.ts"

// Two of the largest batches fit the budget at once; a third waits for one of them to end.
const MAX_BATCH_BODY_BYTES = 16 * 1024
const MAX_BATCH_BYTES_IN_FLIGHT = 2 * MAX_BATCH_BODY_BYTES

let stack: Stack
beforeAll(async () => {
  stack = await startStack("batch-budget", {
    MAX_BATCH_BODY_BYTES: String(MAX_BATCH_BODY_BYTES),
    MAX_BATCH_BYTES_IN_FLIGHT: String(MAX_BATCH_BYTES_IN_FLIGHT),
  })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const postBatch = (body: string | ReadableStream<Uint8Array>) =>
  fetch(stack.url("/polarities/batch"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
    duplex: "half",
  } as RequestInit)

/** A batch's JSON padded with spaces to exactly `bytes`. */
const batchOf = (reviews: string[], bytes: number) => JSON.stringify({ reviews }).padEnd(bytes, " ")

/** A chunked body: no Content-Length, so the gateway counts it as it reads. */
const chunked = (text: string) =>
  new ReadableStream<Uint8Array>({
    start(stream) {
      stream.enqueue(new TextEncoder().encode(text))
      stream.close()
    },
  })

async function heldBatchBytes(): Promise<number> {
  const text = await (await fetch(stack.url("/metrics"))).text()
  const line = text.split("\n").find((l) => l.startsWith('polarity_gateway_held{what="batch_bytes"'))
  return Number(line?.split(" ").at(-1))
}

/**
 * A batch whose headers (with its Content-Length) are sent and whose body is not yet: it holds its bytes of the
 * budget until `finish` sends the body (and resolves with the response's head) or `abort` drops the connection.
 */
async function startBatch(body: string) {
  const { hostname, port } = new URL(stack.url("/"))
  const socket: Socket = connect(Number(port), hostname)
  await new Promise((resolve) => socket.once("connect", resolve))
  const answered = Promise.withResolvers<string>()
  let answer = ""
  socket.on("data", (data) => {
    answer += data.toString()
  })
  socket.on("end", () => answered.resolve(answer))
  socket.on("error", answered.reject)
  socket.write(
    `POST /polarities/batch HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`,
  )
  return {
    finish: () => {
      socket.write(body)
      return answered.promise
    },
    abort: () => socket.destroy(),
  }
}

describe("MAX_BATCH_BYTES_IN_FLIGHT bounds the bytes of batches held at once", () => {
  test("past the budget a batch is a 503 with Retry-After; one that ends, answered or aborted, frees its bytes", async () => {
    const first = await startBatch(batchOf(["what a lovely day"], MAX_BATCH_BODY_BYTES))
    const second = await startBatch(batchOf(["dreadful service"], MAX_BATCH_BODY_BYTES))
    await eventually(async () => expect(await heldBatchBytes()).toBe(MAX_BATCH_BYTES_IN_FLIGHT))

    const small = batchOf(["fine"], 100)
    const refused = await postBatch(small)
    expect(refused.headers.get("retry-after")).toBe("1")
    await expectProblem(
      refused,
      503,
      "this gateway holds 32768 of its 32768 bytes of batches in flight (MAX_BATCH_BYTES_IN_FLIGHT) and 100 more do not fit; retry shortly",
    )
    await expectProblem(await postBatch(chunked(small)), 503, /^this gateway holds 32768 of its 32768 bytes/)

    const head = await first.finish()
    expect(head).toStartWith("HTTP/1.1 202")
    const { group_id } = JSON.parse(head.slice(head.indexOf("\r\n\r\n") + 4)) as { group_id: string }
    const group = (await (
      await fetch(stack.url(`/polarities/groups/${group_id}?wait=10`))
    ).json()) as GroupRecord
    expect([group.status, group.size]).toEqual(["SUCCESS", 1])
    expect(await heldBatchBytes()).toBe(MAX_BATCH_BODY_BYTES)

    second.abort()
    await eventually(async () => expect(await heldBatchBytes()).toBe(0))
    const accepted = await postBatch(chunked(batchOf(["fine"], MAX_BATCH_BYTES_IN_FLIGHT / 2)))
    expect(accepted.status).toBe(202)
    expect(await heldBatchBytes()).toBe(0)
  })

  test("a refused batch frees its bytes at once", async () => {
    await expectProblem(await postBatch(batchOf([""], MAX_BATCH_BODY_BYTES)), 422, /^reviews\.0/)
    await expectProblem(await postBatch(chunked("{")), 400, /^the body is not valid JSON/)
    expect(await heldBatchBytes()).toBe(0)
  })

  test("a budget smaller than the largest batch stops start-up", () => {
    expect(() =>
      loadGatewayConfig({ MAX_BATCH_BODY_BYTES: "2048", MAX_BATCH_BYTES_IN_FLIGHT: "1024" }),
    ).toThrow(
      "invalid configuration: MAX_BATCH_BYTES_IN_FLIGHT (1024) must be at least MAX_BATCH_BODY_BYTES (2048)",
    )
  })
})

// A broker connection reads every chunk into one buffer of its own (shared/amqp.ts, connectSession): what it
// delivers must not change when the next read overwrites that buffer.
import { afterAll, describe, expect, test } from "bun:test"
import { rmSync } from "node:fs"
import type { AMQPMessage, AMQPProperties } from "@cloudamqp/amqp-client"
import { Broker, brokerOptions } from "../shared/amqp.ts"
import { BrokerEnv, loadConfig } from "../shared/config.ts"
import { createLogger } from "../shared/log.ts"
import { deleteTopology, testEnv } from "./support.ts"

const { env, dataDir } = testEnv("broker-reads")
afterAll(async () => {
  await deleteTopology(env)
  rmSync(dataDir, { recursive: true, force: true })
})

/** Bodies of one frame, of several, and of more than one read (64 KiB), each filled with its own number. */
const SIZES = [100, 9_000, 70_000, 200_000]
const bodyOf = (index: number) => {
  const size = SIZES[index % SIZES.length] ?? 0
  return new Uint8Array(size).fill(index % 251)
}

/**
 * `count` messages published through the events exchange under `key` and received by a listener of this
 * connection, all of them kept until the last has come, so that later reads had every chance to rewrite them.
 */
async function publishAndReceive(
  key: string,
  count: number,
  options: (index: number) => AMQPProperties = () => ({}),
): Promise<AMQPMessage[]> {
  const broker = await Broker.connect(
    brokerOptions("broker-reads-test", loadConfig(BrokerEnv, env), createLogger("test", "error")),
  )
  try {
    const received: AMQPMessage[] = []
    const all = Promise.withResolvers<void>()
    const exchange = broker.names.eventsExchange
    await broker.listen(exchange, [key], (msg) => {
      received.push(msg)
      if (received.length === count) all.resolve()
    })
    await Promise.all(
      Array.from({ length: count }, (_, index) =>
        broker.publish(exchange, key, bodyOf(index), { messageId: String(index), ...options(index) }),
      ),
    )
    await all.promise
    return received
  } finally {
    await broker.close()
  }
}

const indexOf = (msg: AMQPMessage) => Number(msg.properties.messageId)

describe("a broker connection's reads", () => {
  test("deliver every body intact, small and large, as the shared read buffer is reused", async () => {
    const received = await publishAndReceive("broker-reads.body", 120)
    const mismatched = received.filter(
      (msg) => !Buffer.from(bodyOf(indexOf(msg))).equals(msg.body ?? new Uint8Array()),
    )
    expect({ received: received.length, mismatched: mismatched.length }).toEqual({
      received: 120,
      mismatched: 0,
    })
  })

  test("deliver byte-array header values intact, as the shared read buffer is reused", async () => {
    const bytesOf = (index: number) => new Uint8Array(64).fill(index % 251)
    const received = await publishAndReceive("broker-reads.headers", 120, (index) => ({
      headers: { "x-bytes": bytesOf(index) },
    }))
    const mismatched = received.filter((msg) => {
      const bytes = msg.properties.headers?.["x-bytes"]
      return !(bytes instanceof Uint8Array) || !Buffer.from(bytes).equals(bytesOf(indexOf(msg)))
    })
    expect({ received: received.length, mismatched: mismatched.length }).toEqual({
      received: 120,
      mismatched: 0,
    })
  })
})

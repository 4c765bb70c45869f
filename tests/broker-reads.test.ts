// A broker connection reads every chunk into one buffer of its own (shared/amqp.ts, connectSession): what it
// delivers must not change when the next read overwrites that buffer.
import { afterAll, describe, expect, test } from "bun:test"
import { rmSync } from "node:fs"
import type { AMQPMessage } from "@cloudamqp/amqp-client"
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

describe("a broker connection's reads", () => {
  test("deliver every body intact, small and large, as the shared read buffer is reused", async () => {
    const broker = await Broker.connect(
      brokerOptions("broker-reads-test", loadConfig(BrokerEnv, env), createLogger("test", "error")),
    )
    try {
      const count = 120
      const received: AMQPMessage[] = []
      const all = Promise.withResolvers<void>()
      const exchange = broker.names.eventsExchange
      await broker.listen(exchange, ["broker-reads.#"], (msg) => {
        received.push(msg)
        if (received.length === count) all.resolve()
      })
      await Promise.all(
        Array.from({ length: count }, (_, index) =>
          broker.publish(exchange, "broker-reads.body", bodyOf(index), { messageId: String(index) }),
        ),
      )
      await all.promise
      const mismatched = received.filter(
        (msg) => !Buffer.from(bodyOf(Number(msg.properties.messageId))).equals(msg.body ?? new Uint8Array()),
      )
      expect({ received: received.length, mismatched: mismatched.length }).toEqual({
        received: count,
        mismatched: 0,
      })
    } finally {
      await broker.close()
    }
  })
})

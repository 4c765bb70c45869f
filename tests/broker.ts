// A plain broker connection, shared by the tests and the benchmark: raw publishes and reads, and the removal
// of every queue and exchange a run declared under its prefix.
import { AMQPClient } from "@cloudamqp/amqp-client"

export const AMQP_URL = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672"

/** A plain connection for tests that publish or read raw messages. */
export async function rawChannel(url = AMQP_URL) {
  const client = new AMQPClient(url, undefined, null)
  await client.connect()
  const channel = await client.channel()
  return { client, channel, [Symbol.asyncDispose]: () => client.close().catch(() => {}) }
}

/**
 * Delete the queues and exchanges of a name map shaped like `topologyNames()`: keys ending in `Queue` or
 * `Exchange`. Queues first, so no binding outlives its exchange; deleting a name that is gone is a no-op.
 */
export async function deleteTopology(names: Record<string, string>, url = AMQP_URL): Promise<void> {
  await using amqp = await rawChannel(url)
  for (const [key, name] of Object.entries(names)) {
    if (key.endsWith("Queue")) await amqp.channel.queueDelete(name)
  }
  for (const [key, name] of Object.entries(names)) {
    if (key.endsWith("Exchange")) await amqp.channel.exchangeDelete(name)
  }
}

// A plain broker connection, shared by the tests and the benchmark: raw publishes and reads, and the removal
// of every queue and exchange a run declared under its prefix.
import { AMQPClient } from "@cloudamqp/amqp-client"
import { topologyOptions } from "../shared/amqp.ts"
import { BrokerEnv, brokerUrls, loadConfig } from "../shared/config.ts"
import { allNames } from "../shared/topology.ts"

export const AMQP_URL = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672"

/** A plain connection for tests that publish or read raw messages. */
export async function rawChannel(url = AMQP_URL) {
  const client = new AMQPClient(url, undefined, null)
  await client.connect()
  const channel = await client.channel()
  return { client, channel, [Symbol.asyncDispose]: () => client.close().catch(() => {}) }
}

/** Queues first, so no binding outlives its exchange; deleting a name that is gone is a no-op. */
export async function deleteQueuesAndExchanges(
  names: { queues: string[]; exchanges: string[] },
  url = AMQP_URL,
): Promise<void> {
  await using amqp = await rawChannel(url)
  for (const queue of names.queues) await amqp.channel.queueDelete(queue)
  for (const exchange of names.exchanges) await amqp.channel.exchangeDelete(exchange)
}

/** Remove every queue and exchange that services started with this environment declared, on a node that answers. */
export async function deleteTopology(env: Record<string, string | undefined>): Promise<void> {
  const config = loadConfig(BrokerEnv, env)
  const names = allNames(topologyOptions(config))
  const [url, ...others] = brokerUrls(config)
  try {
    await deleteQueuesAndExchanges(names, url)
  } catch (err) {
    if (others.length === 0) throw err
    await deleteTopology({ ...env, AMQP_URL: others.join(","), AMQP_URLS: undefined })
  }
}

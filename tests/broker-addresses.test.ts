// Several broker addresses: how AMQP_URL / AMQP_URLS are read and refused, and a stack that starts on the
// second address when the first does not answer. The failover of a running stack, when the node it is connected
// to dies, is tests/faults/rabbitmq-cluster.test.ts.
import { describe, expect, test } from "bun:test"
import { BrokerEnv, brokerUrls, ConfigError, loadConfig } from "../shared/config.ts"
import { AMQP_URL, postReview, startStack, taskBody } from "./support.ts"

const urlsOf = (env: Record<string, string>) => brokerUrls(loadConfig(BrokerEnv, env))

describe("AMQP_URL and AMQP_URLS", () => {
  test("a comma-separated list is the cluster's nodes, in the order given; unset is the local broker", () => {
    const nodes = "amqps://app:secret@rabbit-0:5671/prod , amqps://app:secret@rabbit-1:5671/prod"
    const expected = ["amqps://app:secret@rabbit-0:5671/prod", "amqps://app:secret@rabbit-1:5671/prod"]
    expect(urlsOf({ AMQP_URL: nodes })).toEqual(expected)
    expect(urlsOf({ AMQP_URLS: nodes })).toEqual(expected)
    expect(urlsOf({ AMQP_URL: "amqp://app:secret@rabbit" })).toEqual(["amqp://app:secret@rabbit"])
    expect(urlsOf({})).toEqual(["amqp://guest:guest@127.0.0.1:5672"])
  })

  const refusals: [string, Record<string, string>, string][] = [
    [
      "both variables",
      { AMQP_URL: "amqp://a", AMQP_URLS: "amqp://b" },
      "invalid configuration: AMQP_URL and AMQP_URLS are both set: set one, with every address",
    ],
    ["an empty value", { AMQP_URL: "" }, "invalid configuration: AMQP_URL: the address is empty"],
    [
      "an empty address",
      { AMQP_URLS: "amqp://app:secret@a,,amqp://app:secret@c" },
      "invalid configuration: AMQP_URLS: address 2 of 3 is empty",
    ],
    [
      "another scheme",
      { AMQP_URL: "amqp://app:secret@a,http://app:secret@b" },
      "invalid configuration: AMQP_URL: address 2 of 2 must be an amqp:// or amqps:// URL with a host",
    ],
    [
      "not a URL",
      { AMQP_URL: "rabbit-0:5672" },
      "invalid configuration: AMQP_URL: the address must be an amqp:// or amqps:// URL with a host",
    ],
    [
      "another password",
      { AMQP_URL: "amqp://app:secret@a,amqp://app:other@b" },
      "invalid configuration: AMQP_URL: address 2 differs from address 1 in scheme, user, password or virtual host: list the nodes of one cluster, which differ only in host and port",
    ],
    [
      "another virtual host",
      { AMQP_URL: "amqp://app:secret@a/prod,amqp://app:secret@b/test" },
      "invalid configuration: AMQP_URL: address 2 differs from address 1 in scheme, user, password or virtual host: list the nodes of one cluster, which differ only in host and port",
    ],
    [
      "a repeated node",
      { AMQP_URL: "amqp://app:secret@a:5672,amqp://app:secret@b,amqp://app:secret@a:5672/" },
      "invalid configuration: AMQP_URL: address 3 names the host and port of an earlier one",
    ],
  ]
  for (const [what, env, message] of refusals) {
    test(`refuses ${what} at start-up with a message that names the address, not its password`, () => {
      expect(() => loadConfig(BrokerEnv, env)).toThrow(new ConfigError(message))
      expect(message).not.toContain("secret")
    })
  }
})

describe("a stack given two addresses", () => {
  test("starts on the second when the first does not answer, and scores a review", async () => {
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } })
    const deadAddress = `amqp://guest:guest@127.0.0.1:${closed.port}`
    closed.stop(true)
    const url = new URL(AMQP_URL)
    expect(`${url.protocol}//${url.username}:${url.password}@`).toBe("amqp://guest:guest@")
    await using stack = await startStack("broker-addresses", { AMQP_URL: `${deadAddress},${AMQP_URL}` })
    const record = await taskBody(await postReview(stack, "lovely, just lovely", "?wait=10"))
    expect(record.status).toBe("SUCCESS")
  })
})

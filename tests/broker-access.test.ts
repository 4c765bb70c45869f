// The broker users are derived from the topology: every name has an owner, every publish a queue that takes it,
// and the rabbitmqctl lines in docs/security.md are what the generator prints today.
import { describe, expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { brokerDefinitions, passwordHash, rabbitmqctlScript, vhostOf } from "../scripts/broker-access.ts"
import { topologyOptions } from "../shared/amqp.ts"
import { BrokerEnv, loadConfig } from "../shared/config.ts"
import { brokerAccess, SERVICES, type Service, topologyDeclarations } from "../shared/topology.ts"

/** A topic binding key matches a routing key: `*` is one word, `#` zero or more. */
function topicMatches(pattern: string, key: string): boolean {
  const match = (p: string[], k: string[]): boolean => {
    if (p.length === 0) return k.length === 0
    const [head, ...rest] = p
    if (head === "#") return match(rest, k) || (k.length > 0 && match(p, k.slice(1)))
    return k.length > 0 && (head === "*" || head === k[0]) && match(rest, k.slice(1))
  }
  return match(pattern.split("."), key.split("."))
}

const configurations = {
  "the defaults": {},
  "quorum queues and other retries": { QUEUE_TYPE: "quorum", MAX_RETRIES: "9", RETRY_BASE_DELAY_MS: "7" },
  "no retries": { MAX_RETRIES: "0" },
}

for (const [label, env] of Object.entries(configurations)) {
  describe(`the topology and its owners, with ${label}`, () => {
    const options = topologyOptions(loadConfig(BrokerEnv, env))
    const { exchanges, queues, bindings } = topologyDeclarations(options)
    const access = Object.values(brokerAccess(options))
    const exchangeNames = new Set(exchanges.map((e) => e.name))
    /** Whether a listener (an exclusive queue bound while its service runs, e.g. remote control) takes it. */
    const listened = (exchange: string, key: string) =>
      access.some(({ listens }) =>
        (listens[exchange] ?? []).some((k) =>
          typeof k === "string" ? topicMatches(k, key) : new RegExp(`^(?:${k.pattern})$`).test(key),
        ),
      )
    const queueNames = new Set(queues.map((q) => q.name))

    test("every publish names a declared exchange and a routing key some queue is bound by", () => {
      for (const { publishes } of access) {
        for (const [exchange, keys] of Object.entries(publishes)) {
          if (exchange === "") continue
          expect({ exchange, declared: exchangeNames.has(exchange) }).toEqual({ exchange, declared: true })
          for (const key of keys.flatMap((k) => (typeof k === "string" ? [k] : k.examples))) {
            const routed =
              bindings.some((b) => b.exchange === exchange && topicMatches(b.key, key)) ||
              listened(exchange, key)
            expect({ exchange, key, routed }).toEqual({ exchange, key, routed: true })
          }
          for (const { pattern, examples } of keys.filter((k) => typeof k !== "string")) {
            for (const example of examples) expect(example).toMatch(new RegExp(`^(?:${pattern})$`))
          }
        }
      }
    })

    test("every exchange has a publisher, or is where queues dead-letter to", () => {
      const deadLetterTargets = queues.map((q) => q.arguments["x-dead-letter-exchange"])
      const published = new Set(access.flatMap((a) => Object.keys(a.publishes)))
      const orphans = [...exchangeNames].filter((e) => !published.has(e) && !deadLetterTargets.includes(e))
      expect(orphans).toEqual([])
    })

    test("every queue has a consumer, or is a wait queue that dead-letters when its messages expire", () => {
      const consumed = new Set(access.flatMap((a) => a.consumes))
      for (const name of consumed)
        expect({ name, declared: queueNames.has(name) }).toEqual({ name, declared: true })
      const orphans = queues.filter(
        (q) =>
          !consumed.has(q.name) &&
          !("x-message-ttl" in q.arguments && "x-dead-letter-exchange" in q.arguments),
      )
      expect(orphans.map((q) => q.name)).toEqual([])
    })

    test("every queue is consumed by one service only, and every listener binds a declared exchange", () => {
      const consumers = access.flatMap((a) => a.consumes)
      expect(consumers.length).toBe(new Set(consumers).size)
      for (const { listens } of access) {
        for (const exchange of Object.keys(listens)) expect(exchangeNames.has(exchange)).toBe(true)
      }
    })
  })
}

describe("docs/security.md", () => {
  test("gives the rabbitmqctl lines the generator prints for the default configuration", () => {
    const docs = readFileSync("docs/security.md", "utf8")
    const block = docs.match(/<!-- rabbitmqctl: generated[^>]*-->\n```bash\n([\s\S]*?)```/)?.[1]
    const options = topologyOptions(loadConfig(BrokerEnv, {}))
    expect(block).toBe(rabbitmqctlScript(options, "/"))
  })

  test("names every service's user", () => {
    const docs = readFileSync("docs/security.md", "utf8")
    for (const service of SERVICES) expect(docs).toContain(`sentiment.${service}`)
  })
})

describe("compose.yaml's broker", () => {
  interface ComposeService {
    environment?: Record<string, string>
  }
  const compose = Bun.YAML.parse(readFileSync("compose.yaml", "utf8")) as {
    "x-broker-admin": { user: string; password: string }
    services: Record<string, ComposeService>
  }
  const definitions = JSON.parse(readFileSync("deploy/rabbitmq/definitions.json", "utf8")) as ReturnType<
    typeof brokerDefinitions
  >

  test("each service connects as its own user, whose password the definitions file holds", () => {
    for (const service of SERVICES) {
      const url = new URL(compose.services[service]?.environment?.AMQP_URL ?? "")
      const user = definitions.users.find((u) => u.name === decodeURIComponent(url.username))
      expect(user?.name).toBe(`sentiment.${service}`)
      const salt = Buffer.from(user?.password_hash ?? "", "base64").subarray(0, 4)
      expect(passwordHash(decodeURIComponent(url.password), salt)).toBe(user?.password_hash ?? "")
    }
    const admin = compose["x-broker-admin"]
    const adminUser = definitions.users.find((u) => u.name === admin.user)
    const salt = Buffer.from(adminUser?.password_hash ?? "", "base64").subarray(0, 4)
    expect(passwordHash(admin.password, salt)).toBe(adminUser?.password_hash ?? "")
  })

  test("deploy/rabbitmq/definitions.json is what scripts/broker-access.ts makes for compose's settings", () => {
    const env = compose.services.gateway?.environment ?? {}
    const options = topologyOptions(loadConfig(BrokerEnv, env))
    const passwords = Object.fromEntries(SERVICES.map((s) => [s, "any"])) as Record<Service, string>
    const admin = { name: compose["x-broker-admin"].user, password: "any" }
    const expected = brokerDefinitions(options, { vhost: vhostOf(env.AMQP_URL ?? ""), passwords, admin })
    const withoutHashes = (d: typeof definitions) => ({
      ...d,
      users: d.users.map(({ password_hash: _, ...user }) => user),
    })
    expect(withoutHashes(definitions)).toEqual(withoutHashes(expected))
  })
})

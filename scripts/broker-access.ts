// One RabbitMQ user per service, with least privilege, derived from the topology (shared/topology.ts), so that
// the permissions cannot drift from the names the services use:
//   bun scripts/broker-access.ts rabbitmqctl    the rabbitmqctl lines that create the users (docs/security.md)
//   bun scripts/broker-access.ts definitions    a RabbitMQ definitions file: users, permissions and topology
//   bun scripts/broker-access.ts declare        declare the topology with the (administrator's) AMQP_URL
// The topology options (AMQP_PREFIX, QUEUE_TYPE, MAX_RETRIES, …) come from the environment, as for the services.
import { createHash, randomBytes } from "node:crypto"
import { AMQPClient } from "@cloudamqp/amqp-client"
import * as v from "valibot"
import { topologyOptions } from "../shared/amqp.ts"
import { BrokerEnv, brokerUrls, DEFAULT_AMQP_URL, loadConfig, stringVar } from "../shared/config.ts"
import {
  brokerAccess,
  declareTopology,
  type KeyPattern,
  SERVICES,
  type Service,
  type TopologyOptions,
  topologyDeclarations,
} from "../shared/topology.ts"

/** The permissions of one service's user, as RabbitMQ takes them: regular expressions over names. */
export interface BrokerUser {
  service: Service
  name: string
  tags: string[]
  configure: string
  write: string
  read: string
  /** Per topic exchange it touches: the routing keys it may publish (write) and bind (read). */
  topic: { exchange: string; write: string; read: string }[]
}

/** Listeners declare an exclusive queue that the broker names `amq.gen-…`. */
const SERVER_NAMED = "amq.gen-"
/** Permissions name the default exchange `amq.default`. */
const DEFAULT_EXCHANGE = "amq.default"

const escapeRegex = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/**
 * A regular expression matching exactly these names (the server-named prefix `amq.gen-` with anything after it,
 * and a key pattern as it says), or nothing.
 */
function exactly(names: (string | KeyPattern)[]): string {
  const alternatives = [
    ...new Set(
      names.map((name) => {
        if (typeof name !== "string") return name.pattern
        if (name === SERVER_NAMED) return `${escapeRegex(name)}.*`
        return escapeRegex(name === "" ? DEFAULT_EXCHANGE : name)
      }),
    ),
  ]
  return alternatives.length === 0 ? "^$" : `^(${alternatives.join("|")})$`
}

/** Each service's user: `<prefix><service>`, so that deployments under other prefixes never share one. */
export function brokerUsers(options: TopologyOptions): BrokerUser[] {
  const access = brokerAccess(options)
  const topicExchanges = new Set(
    topologyDeclarations(options)
      .exchanges.filter((e) => e.type === "topic")
      .map((e) => e.name),
  )
  return SERVICES.map((service) => {
    const { publishes, consumes, purges, listens, tags } = access[service]
    const listening = Object.keys(listens).length > 0 ? [SERVER_NAMED] : []
    const touched = [...Object.keys(publishes), ...Object.keys(listens)].filter((e) => topicExchanges.has(e))
    return {
      service,
      name: `${options.prefix}${service}`,
      tags,
      configure: exactly(listening),
      write: exactly([...Object.keys(publishes), ...listening]),
      read: exactly([...consumes, ...purges, ...Object.keys(listens), ...listening]),
      topic: [...new Set(touched)].sort().map((exchange) => ({
        exchange,
        write: exactly(publishes[exchange] ?? []),
        read: exactly(listens[exchange] ?? []),
      })),
    }
  })
}

/** The environment variable that holds a service's password, e.g. GATEWAY_AMQP_PASSWORD. */
export function passwordVariable(service: Service): string {
  return `${service.toUpperCase().replaceAll("-", "_")}_AMQP_PASSWORD`
}

const shellQuote = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`

/** The rabbitmqctl lines that create every service's user; passwords are read from shell variables. */
export function rabbitmqctlScript(options: TopologyOptions, vhost: string): string {
  const lines: string[] = []
  for (const user of brokerUsers(options)) {
    const name = shellQuote(user.name)
    lines.push(`rabbitmqctl add_user ${name} "$${passwordVariable(user.service)}"`)
    if (user.tags.length > 0) lines.push(`rabbitmqctl set_user_tags ${name} ${user.tags.join(" ")}`)
    lines.push(
      `rabbitmqctl set_permissions -p ${shellQuote(vhost)} ${name} ${[user.configure, user.write, user.read].map(shellQuote).join(" ")}`,
    )
    for (const topic of user.topic) {
      lines.push(
        `rabbitmqctl set_topic_permissions -p ${shellQuote(vhost)} ${name} ${[topic.exchange, topic.write, topic.read].map(shellQuote).join(" ")}`,
      )
    }
  }
  return `${lines.join("\n")}\n`
}

/** RabbitMQ's default password hash: base64(salt ++ SHA-256(salt ++ password)), with a 4-byte salt. */
export function passwordHash(password: string, salt: Uint8Array = randomBytes(4)): string {
  const digest = createHash("sha256").update(salt).update(password, "utf8").digest()
  return Buffer.concat([salt, digest]).toString("base64")
}

export interface DefinitionsOptions {
  vhost: string
  passwords: Record<Service, string>
  /** An operator's account with the administrator tag: a node that loads definitions at boot makes no other. */
  admin?: { name: string; password: string }
}

/** A definitions file (`rabbitmqctl import_definitions`, or `load_definitions` at boot): users and topology. */
export function brokerDefinitions(options: TopologyOptions, { vhost, passwords, admin }: DefinitionsOptions) {
  const users = brokerUsers(options)
  const user = (name: string, password: string, tags: string[]) => ({
    name,
    password_hash: passwordHash(password),
    hashing_algorithm: "rabbit_password_hashing_sha256",
    tags,
  })
  const { exchanges, queues, bindings } = topologyDeclarations(options)
  return {
    users: [
      ...(admin ? [user(admin.name, admin.password, ["administrator"])] : []),
      ...users.map((u) => user(u.name, passwords[u.service], u.tags)),
    ],
    vhosts: [{ name: vhost }],
    permissions: [
      ...(admin ? [{ user: admin.name, vhost, configure: ".*", write: ".*", read: ".*" }] : []),
      ...users.map(({ name, configure, write, read }) => ({ user: name, vhost, configure, write, read })),
    ],
    topic_permissions: users.flatMap(({ name, topic }) => topic.map((t) => ({ user: name, vhost, ...t }))),
    exchanges: exchanges.map(({ name, type }) => ({
      name,
      vhost,
      type,
      durable: true,
      auto_delete: false,
      internal: false,
      arguments: {},
    })),
    queues: queues.map(({ name, arguments: args }) => ({
      name,
      vhost,
      durable: true,
      auto_delete: false,
      arguments: args,
    })),
    bindings: bindings.map(({ exchange, queue, toExchange, key }) => ({
      source: exchange,
      vhost,
      destination: queue ?? toExchange,
      destination_type: queue ? "queue" : "exchange",
      routing_key: key,
      arguments: {},
    })),
  }
}

/** The virtual host of an AMQP URL: its path, `/` when it has none. */
export function vhostOf(amqpUrl: string): string {
  const path = decodeURIComponent(new URL(amqpUrl).pathname.slice(1))
  return path === "" ? "/" : path
}

const ScriptEnv = {
  ...BrokerEnv,
  ...Object.fromEntries(SERVICES.map((service) => [passwordVariable(service), v.optional(v.string())])),
  BROKER_ADMIN_USER: v.optional(v.string()),
  BROKER_ADMIN_PASSWORD: v.optional(v.string()),
  BROKER_COMMAND: stringVar("rabbitmqctl"),
}

async function main(command: string | undefined, env: Record<string, string | undefined>): Promise<void> {
  const config = loadConfig(ScriptEnv, env)
  const options = topologyOptions(config)
  const [url = DEFAULT_AMQP_URL] = brokerUrls(config)
  const vhost = vhostOf(url)
  switch (command) {
    case "rabbitmqctl":
      process.stdout.write(rabbitmqctlScript(options, vhost))
      return
    case "definitions": {
      const passwords = Object.fromEntries(
        SERVICES.map((service) => {
          const password = env[passwordVariable(service)]
          if (!password) throw new Error(`${passwordVariable(service)} is not set`)
          return [service, password]
        }),
      ) as Record<Service, string>
      const { BROKER_ADMIN_USER: name, BROKER_ADMIN_PASSWORD: password } = config
      if (name && !password) throw new Error("BROKER_ADMIN_PASSWORD is not set")
      const admin = name && password ? { name, password } : undefined
      const definitions = brokerDefinitions(options, { vhost, passwords, ...(admin && { admin }) })
      process.stdout.write(`${JSON.stringify(definitions, null, 2)}\n`)
      return
    }
    case "declare": {
      const client = new AMQPClient(url, undefined, null)
      await client.connect()
      try {
        await declareTopology(await client.channel(), options, (queue, missing) =>
          process.stderr.write(
            `queue ${queue} kept as an earlier version declared it; it lacks ${missing}\n`,
          ),
        )
      } finally {
        await client.close()
      }
      process.stderr.write(`topology of prefix "${options.prefix}" declared\n`)
      return
    }
    default:
      throw new Error("usage: bun scripts/broker-access.ts rabbitmqctl | definitions | declare")
  }
}

if (import.meta.main) {
  main(process.argv[2], process.env).catch((err: Error) => {
    process.stderr.write(`${err.message}\n`)
    process.exit(1)
  })
}

// The AMQP session every service uses: reconnecting connection that fails over between a cluster's nodes,
// topology declared on every (re)connect, confirmed + mandatory publishes, validated consumption, and
// dead-lettering with a reason.
import { Buffer } from "node:buffer"
import { setTimeout as sleep } from "node:timers/promises"
import {
  AMQPClient,
  AMQPError,
  type AMQPExchange,
  type AMQPMessage,
  type AMQPProperties,
  AMQPSession,
  type AMQPSessionOptions,
  type AMQPTlsOptions,
} from "@cloudamqp/amqp-client"
import { AMQPView } from "@cloudamqp/amqp-client/amqp-view"
import * as v from "valibot"
import { type BrokerConfig, brokerUrls, productionRisks } from "./config.ts"
import { explainIssues, Task } from "./contracts.ts"
import type { Logger } from "./log.ts"
import { RpcClient } from "./rpc-client.ts"
import {
  type Binding,
  DEAD_LETTER_KEYS,
  declareTopology,
  type Topology,
  type TopologyOptions,
  topologyDeclarations,
  topologyNames,
} from "./topology.ts"

export interface BrokerOptions {
  /** The nodes of one cluster (or one broker), tried in this order; they differ only in host and port. */
  urls: string[]
  /** Connection name shown by the broker; also the service name. */
  name: string
  heartbeatSeconds: number
  topology: TopologyOptions
  log: Logger
  /** Bound on how long a publish may wait for its confirm before it counts as failed. */
  publishTimeoutMs?: number
  /** Called after each reconnect (not the first connect), e.g. to count them. */
  onReconnected?: () => void
}

export function topologyOptions(config: BrokerConfig): TopologyOptions {
  return {
    prefix: config.AMQP_PREFIX,
    queueType: config.QUEUE_TYPE,
    taskQueueMaxLength: config.TASK_QUEUE_MAX_LENGTH,
    retry: {
      maxRetries: config.MAX_RETRIES,
      baseDelayMs: config.RETRY_BASE_DELAY_MS,
      maxDelayMs: config.RETRY_MAX_DELAY_MS,
    },
    deliveryLimit: config.QUORUM_DELIVERY_LIMIT,
  }
}

/** The broker options every service derives from its BrokerEnv config. */
export function brokerOptions(name: string, config: BrokerConfig, log: Logger): BrokerOptions {
  return {
    urls: brokerUrls(config),
    name,
    heartbeatSeconds: config.AMQP_HEARTBEAT_SECONDS,
    topology: topologyOptions(config),
    log,
  }
}

/** The broker did not take a message: down, blocked, nacked (full queue) or too slow to confirm. */
export class BrokerUnavailable extends Error {
  override name = "BrokerUnavailable"
  constructor(
    message: string,
    /** The broker said no (a nack, a return): the message is certainly not queued. Otherwise it may be. */
    readonly refused = false,
    /** Never sent (no connection): the broker certainly has nothing of it either. */
    readonly unsent = false,
  ) {
    super(message)
  }
}

/**
 * A dead letter's properties travel in one frame with its method, and amqp-client frames hold 8 KiB: a hostile
 * message's large headers plus a reason that quotes them would not fit, and the dead letter would go out without
 * its reason. So the reason is clipped, and headers past a few KiB are dropped, their size said instead.
 */
const MAX_REASON_CHARS = 1000
const MAX_KEPT_HEADER_BYTES = 4096

function clip(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : `${text.slice(0, maxChars)}… (${text.length} characters)`
}

function keptHeaders(headers: Record<string, unknown> | undefined): Record<string, unknown> {
  if (headers === undefined) return {}
  let bytes: number
  try {
    bytes = new TextEncoder().encode(JSON.stringify(headers)).byteLength
  } catch {
    return { "x-original-headers-omitted": "not serialisable" }
  }
  return bytes <= MAX_KEPT_HEADER_BYTES ? headers : { "x-original-headers-omitted": `${bytes} bytes` }
}

/** A message that can never be processed: dead-letter it with this reason. */
export class PoisonMessage extends Error {
  override name = "PoisonMessage"
}

export const MAX_MESSAGE_BYTES = 1024 * 1024
const CONSUMER_CHECK_MS = 1000

export interface Consumer {
  /** Stop new deliveries; messages in hand can still be acked. */
  stopDeliveries(): Promise<void>
  /**
   * A round trip on the consuming channel: resolves, with the queue's consumer count, once every delivery the
   * broker sent before it has reached the handler (a channel's frames arrive in the order the broker sent them).
   */
  sync(): Promise<number>
}
const utf8 = new TextDecoder("utf-8", { fatal: true })

/** Decode a JSON body against its contract; anything else is poison. */
export function decodeMessage<TSchema extends v.GenericSchema>(
  msg: AMQPMessage,
  schema: TSchema,
  contract: string,
  maxBytes = MAX_MESSAGE_BYTES,
): v.InferOutput<TSchema> {
  const body = msg.body instanceof Uint8Array ? msg.body : new Uint8Array()
  if (body.byteLength === 0) throw new PoisonMessage("empty body")
  if (body.byteLength > maxBytes) {
    throw new PoisonMessage(`body of ${body.byteLength} bytes exceeds ${maxBytes}`)
  }
  let text: string
  try {
    text = utf8.decode(body)
  } catch {
    throw new PoisonMessage("body is not valid UTF-8")
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new PoisonMessage(`body is not JSON: ${(err as Error).message}`)
  }
  const result = v.safeParse(schema, json)
  if (!result.success) throw new PoisonMessage(`not a valid ${contract}: ${explainIssues(result.issues)}`)
  return result.output
}

/**
 * Direct reply-to addresses only: RabbitMQ routes them to the channel that asked, and nowhere else. Any other
 * reply-to would have a service publish into a queue of the requester's choosing (a work queue, say).
 */
const DIRECT_REPLY_TO = /^amq\.rabbitmq\.reply-to\.[A-Za-z0-9+/=._-]{1,240}$/

/** Where the reply to a request may go, or null (no reply at all) when it names nowhere a reply may be sent. */
export function directReplyTo(msg: AMQPMessage): string | null {
  const { replyTo } = msg.properties
  return replyTo !== undefined && DIRECT_REPLY_TO.test(replyTo) ? replyTo : null
}

/** One task of a work-queue message, checked on its own: a malformed one is poison, the others are not. */
export function checkTask(raw: unknown): Task {
  const parsed = v.safeParse(Task, raw)
  if (!parsed.success) throw new PoisonMessage(`not a valid Task: ${explainIssues(parsed.issues)}`)
  return parsed.output
}

export class Broker {
  private readonly exchanges = new Map<string, Promise<AMQPExchange>>()
  private readonly listeners: (() => Promise<void>)[] = []
  private publishCount = 0
  private readonly rpc: RpcClient
  /** Index in `options.urls` of the node this session is (or was last) connected to. */
  private urlIndex: number

  private constructor(
    private readonly session: AMQPSession,
    private readonly options: BrokerOptions,
    readonly names: Topology,
    /** Message ids of mandatory publishes the broker returned as unroutable. */
    private readonly returned: Set<string>,
    urlIndex: number,
  ) {
    this.urlIndex = urlIndex
    this.rpc = new RpcClient(session)
  }

  /**
   * Connect, retrying until a broker answers (or `signal` aborts), and declare the topology. Each attempt
   * tries the next address of the list, as each reconnect does later.
   */
  static async connect(options: BrokerOptions, signal?: AbortSignal): Promise<Broker> {
    const { log, urls } = options
    ignoreStrayConfirmRejections(log)
    for (const risk of new Set(urls.flatMap(productionRisks))) log.warn("production risk", { risk })
    const returned = new Set<string>()
    let broker: Broker | undefined
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted()
      const urlIndex = (attempt - 1) % urls.length
      const url = urls[urlIndex] ?? ""
      try {
        const names = await declareOnce(url, options)
        const session = await connectSession(url, {
          name: options.name,
          heartbeat: options.heartbeatSeconds,
          reconnectInterval: 500,
          maxReconnectInterval: 5000,
          logger: amqpLogger(log),
          onreturn: (msg) => {
            if (msg.properties.messageId) returned.add(msg.properties.messageId)
          },
          ondisconnect: (err) => log.warn("broker disconnected", { err: err?.message }),
          // Runs before every reconnect attempt too (`broker` exists by then): the next node of the list.
          beforeConnect: () => broker?.failOver(),
          // Also fires on the first connect, before `broker` exists; the topology was declared just above.
          onconnect: (connected) => {
            sendAtOnce(connected)
            void broker?.reconnected()
          },
        })
        if (urls.length > 1 && !canFailOver(session)) {
          await session.stop()
          throw new CannotFailOver(
            "this @cloudamqp/amqp-client no longer exposes the session's host and port: use one broker address with it",
          )
        }
        broker = new Broker(session, options, names, returned, urlIndex)
        log.info("broker connected", { attempt, address: hostOf(url) })
        return broker
      } catch (err) {
        if (err instanceof CannotFailOver) throw err
        const delayMs = Math.min(250 * 2 ** attempt, 5000)
        log.warn("broker connect failed, retrying", {
          attempt,
          address: hostOf(url),
          delayMs,
          err: (err as Error).message,
        })
        await sleep(delayMs)
      }
    }
  }

  get connected(): boolean {
    return !this.session.closed
  }

  /** The node this session is (or was last) connected to, for connections of a service's own. */
  get url(): string {
    return this.options.urls[this.urlIndex] ?? ""
  }

  /**
   * Point the session at the next address before it tries to reconnect. A node that has just gone is the
   * least likely to answer, and any node of the cluster serves every queue; with one address this is a no-op.
   */
  private failOver(): void {
    const { urls, log } = this.options
    if (urls.length < 2) return
    this.urlIndex = (this.urlIndex + 1) % urls.length
    pointSessionAt(this.session, this.url)
    log.debug("broker reconnecting", { address: hostOf(this.url) })
  }

  private async redeclare(): Promise<void> {
    try {
      await declareOnce(this.url, this.options)
      this.options.log.info("broker reconnected, topology declared", { address: hostOf(this.url) })
    } catch (err) {
      this.options.log.error("topology redeclare failed", { err })
    }
  }

  private async reconnected(): Promise<void> {
    this.options.onReconnected?.()
    this.rpc.reconnected()
    await this.redeclare()
    for (const listener of this.listeners) await listener()
  }

  /**
   * Consume what `exchange` routes by `keys` while this process is up, on an exclusive, auto-delete,
   * server-named queue of its own and without acks: a listener wants the news, not a backlog. The session does
   * not recover server-named queues, so after each reconnect the queue is declared and bound again, then
   * `onResubscribed` runs: whatever was published in between is lost, and the caller may need to catch up.
   */
  async listen(
    exchange: string,
    keys: string[],
    handler: (msg: AMQPMessage) => void,
    onResubscribed: () => void = () => {},
  ): Promise<void> {
    // The queue is bound to `exchange` alone; anything else reached it by its name through the default exchange.
    const checked = (msg: AMQPMessage) => {
      if (msg.exchange === exchange) return handler(msg)
      this.options.log.debug("message ignored: not from the exchange listened to", { exchange: msg.exchange })
    }
    const subscribe = async () => {
      const queue = await this.session.queue("", { exclusive: true, autoDelete: true, durable: false })
      for (const key of keys) await queue.bind(exchange, key)
      await queue.subscribe({ noAck: true }, checked)
    }
    await subscribe()
    this.listeners.push(async () => {
      try {
        await subscribe()
        onResubscribed()
      } catch (err) {
        this.options.log.error("listener not subscribed again after a reconnect", { exchange, keys, err })
      }
    })
  }

  /**
   * Cached as a promise, so that publishes made while the first fetch is in flight wait for that same fetch and
   * keep their order; were only the fetched handle cached, a later publish could overtake earlier ones still
   * waiting for fetches of their own.
   */
  private exchange(name: string): Promise<AMQPExchange> {
    let exchange = this.exchanges.get(name)
    if (!exchange) {
      // Passive: declareTopology owns the exchange's type and parameters; this only fetches a handle.
      exchange =
        name === ""
          ? this.session.directExchange("")
          : this.session.exchange(name, "topic", { passive: true })
      // A failed fetch is not kept: the next publish tries again.
      exchange.catch(() => this.exchanges.delete(name))
      this.exchanges.set(name, exchange)
    }
    return exchange
  }

  /**
   * Publish persistently with a confirm and `mandatory`; resolves once the broker owns the message.
   * A return (no queue bound), a nack (e.g. a full queue) or no confirm in time rejects.
   * `mandatory: false` only for direct reply-to: RabbitMQ 3.10 returns such replies as unroutable
   * even when it delivers them.
   */
  async publish(
    exchangeName: string,
    routingKey: string,
    body: string | Uint8Array,
    properties: AMQPProperties = {},
    { mandatory = true } = {},
  ): Promise<void> {
    if (!this.connected) throw new BrokerUnavailable("not connected to the broker", false, true)
    const messageId = properties.messageId ?? `${this.options.name}-${process.pid}-${++this.publishCount}`
    const exchange = await this.exchange(exchangeName)
    const publishing = exchange.publish(body, {
      ...properties,
      routingKey,
      messageId,
      mandatory,
      deliveryMode: properties.deliveryMode ?? 2,
      // Typed `never` when the session has no parsers (we decode ourselves), yet it is a plain AMQP property.
      contentType: (properties.contentType ?? "application/json") as never,
    })
    await withTimeout(publishing, this.publishTimeoutMs, "the broker did not confirm in time")
      .catch((err: Error) => {
        if (err instanceof BrokerUnavailable) throw err
        // A nack: with reject-publish overflow, that is a full queue.
        if (err.message === "Message rejected") throw new BrokerUnavailable("the queue is full", true)
        throw new BrokerUnavailable(err.message)
      })
      .finally(() => keepFrameBuffersOnly(this.session))
    // The broker sends basic.return before the basic.ack of the same publish, on the same channel.
    if (this.returned.delete(messageId)) {
      throw new BrokerUnavailable(`no queue is bound to ${exchangeName || "(default)"}/${routingKey}`, true)
    }
  }

  private get publishTimeoutMs(): number {
    return this.options.publishTimeoutMs ?? 5000
  }

  /**
   * Consume with manual acks; the handler owns ack/nack of each message. The session recovers consumers
   * after a reconnect, but not after a channel-level close (consumer timeout, double ack, deleted queue)
   * or a server-side cancel: a watchdog notices those and subscribes again.
   */
  async consume(
    queueName: string,
    prefetch: number,
    handler: (msg: AMQPMessage) => Promise<void> | void,
  ): Promise<Consumer> {
    const { log } = this.options
    const checked = this.throughBindings(queueName, handler)
    const subscribe = async () =>
      (await this.session.queue(queueName, { passive: true })).subscribe(
        { prefetch, manualAck: true },
        checked,
      )
    let subscription = await subscribe()
    let missedChecks = 0
    let healing = false
    const watchdog = setInterval(async () => {
      const { channel, consumerTag } = subscription
      const alive = !channel.closed && channel.consumers.has(consumerTag)
      // Two checks in a row: right after a reconnect the session is still re-consuming.
      missedChecks = alive || !this.connected ? 0 : missedChecks + 1
      if (missedChecks < 2 || healing) return
      healing = true
      log.warn("consumer ended by the broker, subscribing again", { queue: queueName })
      try {
        await subscription.cancel()
        await this.redeclare()
        subscription = await subscribe()
        missedChecks = 0
      } catch (err) {
        log.error("subscribing again failed, will retry", { queue: queueName, err })
      } finally {
        healing = false
      }
    }, CONSUMER_CHECK_MS)
    watchdog.unref()
    return {
      async stopDeliveries() {
        clearInterval(watchdog)
        // basic.cancel alone: messages already delivered can still be acked on this channel.
        await subscription.channel.basicCancel(subscription.consumerTag).catch(() => {})
      },
      async sync() {
        return (await subscription.channel.queueDeclare(queueName, { passive: true })).consumerCount
      },
    }
  }

  /**
   * Only messages that came through an exchange the topology binds this queue to reach the handler. Permissions
   * decide who may publish which routing key to an exchange, but a message published to the default exchange
   * (or another exchange bound by hand) would bypass them: it is dead-lettered instead.
   */
  private throughBindings(queueName: string, handler: (msg: AMQPMessage) => Promise<void> | void) {
    const sources = exchangesReaching(queueName, topologyDeclarations(this.options.topology).bindings)
    const expected = [...sources].join(" or ") || "none (the queue has no binding)"
    return (msg: AMQPMessage) => {
      if (sources.has(msg.exchange)) return handler(msg)
      const came = msg.exchange === "" ? "the default exchange" : `exchange ${msg.exchange}`
      return this.deadLetter(msg, queueName, `came through ${came}, not through ${expected}`)
    }
  }

  /**
   * Publish a body to a dead-letter queue with its reason: `poison` for what cannot be decoded, `failed` for a
   * task out of attempts. `from` is the delivery it came from, whose properties and headers it keeps.
   */
  async publishDeadLetter(
    body: string | Uint8Array,
    queueName: string,
    reason: string,
    kind: keyof typeof DEAD_LETTER_KEYS,
    from?: AMQPMessage,
  ): Promise<void> {
    this.options.log.warn("message dead-lettered", { queue: queueName, kind, reason })
    const { headers, type, messageId, contentType } = from?.properties ?? {}
    await this.publish(this.names.deadLetterExchange, DEAD_LETTER_KEYS[kind], body, {
      headers: {
        ...keptHeaders(headers),
        "x-dead-letter-reason": clip(reason, MAX_REASON_CHARS),
        "x-original-queue": queueName,
        "x-original-routing-key": from?.routingKey,
        "x-dead-lettered-at": Date.now(),
      },
      ...(type !== undefined && { type }),
      ...(messageId !== undefined && { messageId }),
      ...(contentType !== undefined && { contentType }),
    })
  }

  /**
   * Move a whole message to a dead-letter queue with its reason, then ack it. If that publish fails, reject it
   * to the queue's own dead-letter exchange.
   */
  async deadLetter(
    msg: AMQPMessage,
    queueName: string,
    reason: string,
    kind: keyof typeof DEAD_LETTER_KEYS = "poison",
  ): Promise<void> {
    try {
      await this.publishDeadLetter(msg.body ?? new Uint8Array(), queueName, reason, kind, msg)
      await msg.ack()
    } catch (err) {
      this.options.log.error("dead-letter publish failed, rejecting to the queue's dead-letter exchange", {
        err,
      })
      await msg.reject(false).catch(() => {})
    }
  }

  /** Take one message off a queue (unacked: the caller acks or nacks it), or null when it is empty. */
  async get(queueName: string): Promise<AMQPMessage | null> {
    if (!this.connected) throw new BrokerUnavailable("not connected to the broker")
    return (await this.session.queue(queueName, { passive: true })).get({ noAck: false })
  }

  /** Remove every ready message of a queue (those delivered and not yet acked stay); how many were removed. */
  async purge(queueName: string): Promise<number> {
    if (!this.connected) throw new BrokerUnavailable("not connected to the broker")
    return (await (await this.session.queue(queueName, { passive: true })).purge()).messageCount
  }

  /** Request/reply over direct reply-to through `exchange`; the timeout also expires the request in the queue. */
  async call(
    exchange: string,
    routingKey: string,
    body: string,
    type: string,
    timeoutMs: number,
  ): Promise<AMQPMessage> {
    if (!this.connected) throw new BrokerUnavailable("not connected to the broker")
    try {
      return await this.rpc.call(exchange, routingKey, body, {
        timeout: timeoutMs,
        type,
        expiration: String(timeoutMs),
        contentType: "application/json",
      })
    } catch (err) {
      throw new BrokerUnavailable(`no reply from ${exchange}/${routingKey}: ${(err as Error).message}`)
    }
  }

  async close(): Promise<void> {
    await this.session.stop()
  }
}

/**
 * Declare the topology on a short connection of its own: the session caches queue handles and would skip a
 * redeclare. A service that runs as a user of its own may not declare (docs/security.md): the operator has, and
 * the service only checks that every exchange and queue is there, so that it fails to start, and retries,
 * until they are, instead of losing its first publishes.
 */
async function declareOnce(address: string, options: BrokerOptions): Promise<Topology> {
  const url = new URL(address)
  url.searchParams.set("name", `${options.name}-declare`)
  const client = new AMQPClient(url.toString(), undefined, null)
  await client.connect()
  try {
    return await declareTopology(await client.channel(), options.topology, (queue, missing) =>
      options.log.warn("queue kept as an earlier version declared it", { queue, missing }),
    )
  } catch (err) {
    if (!(err instanceof AMQPError && /ACCESS_REFUSED/.test(err.message))) throw err
    return await checkTopology(client, options.topology)
  } finally {
    await client.close().catch(() => {})
  }
}

/** Passive declares, which need no permission; a missing name closes the channel (404), which names it. */
async function checkTopology(client: AMQPClient, options: TopologyOptions): Promise<Topology> {
  const channel = await client.channel()
  const { exchanges, queues } = topologyDeclarations(options)
  try {
    for (const exchange of exchanges)
      await channel.exchangeDeclare(exchange.name, exchange.type, { passive: true })
    for (const queue of queues) await channel.queueDeclare(queue.name, { passive: true })
  } catch (err) {
    throw new Error(
      `this user may not declare the topology, and part of it is missing (${(err as Error).message}): ` +
        "declare it as the operator (scripts/broker-access.ts declare, or the definitions file)",
    )
  }
  return topologyNames(options.prefix)
}

/**
 * The exchanges a message may come through to reach a queue: those bound to it, and those bound to them in turn
 * (the delay ladder's levels, which a message leaves through the exchange its last wait queue dead-letters to).
 */
export function exchangesReaching(queueName: string, bindings: Binding[]): Set<string> {
  const sources = new Set(bindings.filter((b) => b.queue === queueName).map((b) => b.exchange))
  for (let grew = true; grew; ) {
    grew = false
    for (const { exchange, toExchange } of bindings) {
      if (toExchange && sources.has(toExchange) && !sources.has(exchange)) {
        sources.add(exchange)
        grew = true
      }
    }
  }
  return sources
}

/** host:port of a broker address, for logs: never the credentials. */
function hostOf(address: string): string {
  return new URL(address).host
}

/** What a broker connection reads into: Node's own size for a socket read. */
const READ_BUFFER_BYTES = 64 * 1024

/** amqp-client's reader of a chunk, private to it: it parses the chunk's frames before it returns. */
interface ChunkReader {
  onRead(chunk: Buffer): void
}
const newSession = AMQPSession as unknown as new (
  client: AMQPClient,
  options: AMQPSessionOptions,
) => AMQPSession

/**
 * AMQPSession.connect, but the connection reads into one buffer of its own (net's `onread`, which Bun and Deno
 * both honour) rather than into a new one for every read. Deno's node:net gives every read a 64 KiB buffer that
 * lives until the collector takes the ArrayBuffer around it, which V8, counting only the bytes read, is in no
 * hurry to do, and then keeps up to 128 of them per thread: a Deno gateway's native memory grew by 18 MB over
 * 60,000 tasks (docs/runtimes.md, "Memory"). amqp-client parses a chunk's frames at once and copies what it
 * keeps (bodies, a frame split across reads), so the buffer is free again when the callback returns. A TLS
 * address (amqps:) connects as amqp-client does: its options go to tls.connect, whose reads are ciphertext.
 */
async function connectSession(
  url: string,
  options: AMQPSessionOptions & { name: string; heartbeat: number },
): Promise<AMQPSession> {
  const address = new URL(url)
  if (address.protocol !== "amqp:") return AMQPSession.connect(url, options)
  // What AMQPSession.connect does with these two options: they travel in the URL.
  address.searchParams.set("name", options.name)
  address.searchParams.set("heartbeat", String(options.heartbeat))
  const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES)
  const onread = {
    buffer,
    callback: (bytes: number) => void (client as unknown as ChunkReader).onRead(buffer.subarray(0, bytes)),
  }
  const client = new AMQPClient(address.toString(), { onread } as AMQPTlsOptions, options.logger)
  await options.beforeConnect?.()
  await client.connect()
  const session = new newSession(client, options)
  options.onconnect?.(session)
  return session
}

/**
 * amqp-client copies what it keeps of a read (bodies, strings, a frame split across reads) but for one thing: a
 * byte-array field of a message's headers (AMQP's `x` type), which it hands out as a view of the read buffer. With
 * the buffer reused by `connectSession`, the next read would rewrite such a value, often before its message is
 * even delivered (the headers come a frame before the body): 119 of 120 changed under a test. So a byte array is
 * read as a copy of its own, here, where amqp-client reads it.
 */
function readByteArraysAsCopies(): void {
  const readView = AMQPView.prototype.getByteArray
  AMQPView.prototype.getByteArray = function (byteOffset: number, littleEndian?: boolean) {
    const [bytes, length] = readView.call(this, byteOffset, littleEndian)
    return [bytes.slice(), length]
  }
}
readByteArraysAsCopies()

/** Frame-sized buffers the connection keeps for its next publishes: more are rarely in flight at once. */
const POOLED_FRAME_BUFFERS = 32

/**
 * amqp-client gives a publish's buffer back to its connection's pool once the publish settles, enlarged to the
 * largest message it carried, and keeps every buffer it ever made: after 32 batches of 1,000 long reviews a
 * gateway held 193 of them, 30 MB, for good. So a buffer larger than a frame leaves the pool (a large message's
 * buffer lives as long as its publish), and the pool keeps at most POOLED_FRAME_BUFFERS of the frame-sized ones,
 * which carry every small message without an allocation.
 */
function keepFrameBuffersOnly(session: AMQPSession): void {
  const client = sessionClient(session) as { bufferPool?: DataView[]; frameMax?: number } | undefined
  const pool = client?.bufferPool
  const frameMax = client?.frameMax
  if (!Array.isArray(pool) || frameMax === undefined) return
  let kept = 0
  for (const buffer of pool) {
    if (kept < POOLED_FRAME_BUFFERS && buffer.byteLength <= frameMax) pool[kept++] = buffer
  }
  pool.length = kept
}

/** The session's connection, which amqp-client keeps private (see pointSessionAt). */
function sessionClient(session: AMQPSession): unknown {
  return (session as unknown as { client?: unknown }).client
}

/**
 * Nagle's algorithm off on the session's socket. amqp-client leaves Node's default (on), and Deno's node:net
 * keeps it, unlike Bun's: a worker's ack then holds back the publish written after it until the broker's delayed
 * ACK, 40 ms later, and every task under Deno took 48 ms end to end instead of 2.
 */
function sendAtOnce(session: AMQPSession): void {
  const client = sessionClient(session)
  if (client instanceof AMQPClient) client.socket?.setNoDelay(true)
}

class CannotFailOver extends Error {
  override name = "CannotFailOver"
}

/**
 * amqp-client 4.1 takes one URL: an AMQPSession reconnects its one AMQPClient, which reads `host` and `port` at
 * each connect. Since the addresses differ only in host and port (checked at start-up), pointing that client at
 * the next node is a whole failover, and the session keeps its own recovery of consumers and RPC clients.
 * Checked once at start, so that a release which changes those internals stops start-up instead of a failover.
 */
function canFailOver(session: AMQPSession): boolean {
  const client = sessionClient(session)
  return client instanceof AMQPClient && typeof client.host === "string" && typeof client.port === "number"
}

function pointSessionAt(session: AMQPSession, address: string): void {
  const client = sessionClient(session) as AMQPClient
  const url = new URL(address)
  Object.assign(client, { host: url.hostname, port: Number(url.port) || (client.tls ? 5671 : 5672) })
}

let strayRejectionsIgnored = false

/** What a write to a socket whose peer is gone fails with: the connection's close follows, and reconnects. */
const DEAD_SOCKET_WRITE = new Set([
  "EPIPE",
  "ECONNRESET",
  "ERR_STREAM_DESTROYED",
  "ERR_STREAM_WRITE_AFTER_END",
])

function isDeadSocketWrite(reason: unknown): boolean {
  const { code, syscall } = (reason ?? {}) as { code?: unknown; syscall?: unknown }
  return (
    typeof code === "string" &&
    DEAD_SOCKET_WRITE.has(code) &&
    (syscall === "write" || code.startsWith("ERR_STREAM_"))
  )
}

/**
 * amqp-client 4.1.1 leaves promises unhandled when the socket under it is dying, and either would end the
 * process (a gateway under load died of the first when the broker was killed; the test process of the cluster
 * test, of the second):
 * - a confirmed publish: `basicPublish` returns `send().then(() => confirmed)`, so when the write fails the caller
 *   gets that failure, and `confirmed` is rejected a moment later by the channel's close, with nobody listening
 *   (an AMQPError of a closed connection);
 * - the frames it writes of its own accord without a `catch`, such as the `basic.cancel-ok` that answers a
 *   broker's cancel of a consumer (when a queue's node dies): that write fails with the socket's own error
 *   (`EPIPE`, `ECONNRESET`, or a destroyed stream's).
 * Neither is anyone's request: the connection's close follows, and the session reconnects. So both are only
 * logged; any other unhandled rejection still ends the process, as it would without this.
 */
function ignoreStrayConfirmRejections(log: Logger): void {
  if (strayRejectionsIgnored) return
  strayRejectionsIgnored = true
  process.on("unhandledRejection", (reason) => {
    if (reason instanceof AMQPError && reason.connection.closed) {
      log.debug("stray publish rejection after the connection closed", { err: reason.message })
      return
    }
    if (isDeadSocketWrite(reason)) {
      log.debug("stray write to a dead socket", { err: (reason as Error).message })
      return
    }
    throw reason
  })
}

function amqpLogger(log: Logger) {
  const format = (args: unknown[]) => args.map((a) => (a instanceof Error ? a.message : String(a))).join(" ")
  return {
    debug: () => {},
    info: () => {},
    warn: (...args: unknown[]) => log.warn("amqp-client", { detail: format(args) }),
    error: (...args: unknown[]) => log.warn("amqp-client", { detail: format(args) }),
  }
}

export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BrokerUnavailable(message)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

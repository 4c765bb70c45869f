// Remote control of workers as its callers (the gateway, a pool's supervisor) ask it: a command published on the
// control exchange to one worker or to all, and the replies that come back over direct reply-to. A broadcast
// gathers replies until every worker expected has answered or the time is up; a command to one worker fails fast
// when no worker of that id listens (the broker returns a mandatory message nobody is bound for).
import { type AMQPChannel, AMQPClient, type AMQPMessage } from "@cloudamqp/amqp-client"
import * as v from "valibot"
import { BrokerUnavailable } from "./amqp.ts"
import { type ControlCommand, ControlReply, MessageType } from "./contracts.ts"
import { CONTROL_BROADCAST_KEY, controlRoutingKey } from "./topology.ts"

const DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"

/** No worker of that id listens: it never existed, or it has stopped. */
export class UnknownWorker extends Error {
  override name = "UnknownWorker"
}

/** The worker is there (its queue took the command) but did not answer in time: busy, stuck or stopping. */
export class NoAnswer extends Error {
  override name = "NoAnswer"
}

export interface TimedReply {
  reply: ControlReply
  /** From publishing the command to this reply. */
  ms: number
}

interface Pending {
  onReply(reply: ControlReply): void
  /** Set when the broker returned the command: nobody is bound for it. */
  returned: boolean
}

interface ControlOptions {
  /** The broker to connect to: the one the caller's session is connected to now. */
  amqpUrl: () => string
  controlExchange: string
  /** The connection's name, as the broker shows it. */
  name: string
}

/**
 * On a connection of its own, opened when first needed and again after it was lost: the session's connection
 * gives no channel of one's own, and direct reply-to wants one that consumes the replies and publishes the
 * commands.
 */
export class WorkerControl {
  private channel: Promise<AMQPChannel> | undefined
  private client: AMQPClient | undefined
  private readonly pending = new Map<string, Pending>()
  private sent = 0

  constructor(private readonly options: ControlOptions) {}

  /** Every reply to `command` sent to all workers, until `expected` have come or `timeoutMs` is up. */
  async broadcast(command: ControlCommand, timeoutMs: number, expected = Number.POSITIVE_INFINITY) {
    const replies: TimedReply[] = []
    const enough = Promise.withResolvers<void>()
    const startedAt = performance.now()
    const id = this.nextId()
    this.pending.set(id, {
      returned: false,
      onReply: (reply) => {
        replies.push({ reply, ms: performance.now() - startedAt })
        if (replies.length >= expected) enough.resolve()
      },
    })
    const timer = setTimeout(enough.resolve, timeoutMs)
    try {
      // With no worker at all the broker returns it: there is nothing to wait for.
      if (await this.publish(CONTROL_BROADCAST_KEY, command, id, timeoutMs)) return replies
      await enough.promise
      return replies
    } finally {
      clearTimeout(timer)
      this.pending.delete(id)
    }
  }

  /** The reply of one worker; UnknownWorker when none of that id listens, NoAnswer when it is silent. */
  async ask(workerId: string, command: ControlCommand, timeoutMs: number): Promise<TimedReply> {
    const answered = Promise.withResolvers<TimedReply>()
    const startedAt = performance.now()
    const id = this.nextId()
    this.pending.set(id, {
      returned: false,
      onReply: (reply) => answered.resolve({ reply, ms: performance.now() - startedAt }),
    })
    const timer = setTimeout(
      () => answered.reject(new NoAnswer(`worker ${workerId} did not answer within ${timeoutMs} ms`)),
      timeoutMs,
    )
    try {
      if (await this.publish(controlRoutingKey(workerId), command, id, timeoutMs)) {
        throw new UnknownWorker(`no worker ${workerId} is connected`)
      }
      return await answered.promise
    } finally {
      clearTimeout(timer)
      this.pending.delete(id)
    }
  }

  async close(): Promise<void> {
    this.channel = undefined
    await this.client?.close().catch(() => {})
  }

  private nextId(): string {
    return `control-${++this.sent}`
  }

  /** Publish, confirmed; true when the broker returned the command as unroutable. */
  private async publish(key: string, command: ControlCommand, id: string, timeoutMs: number) {
    const channel = await this.open()
    await channel.basicPublish(
      this.options.controlExchange,
      key,
      JSON.stringify(command),
      {
        type: MessageType.controlCommand,
        contentType: "application/json",
        correlationId: id,
        replyTo: DIRECT_REPLY_TO,
        // A command a worker has not read in time is dropped unread, never acted on late.
        expiration: String(timeoutMs),
        deliveryMode: 1,
      },
      true,
    )
    // The broker sends basic.return before the basic.ack of the same publish, on the same channel.
    return this.pending.get(id)?.returned === true
  }

  /**
   * One channel, with confirms, consuming direct reply-to (which is scoped per channel: only replies to the
   * commands published on it arrive). Opened again when the connection was lost.
   */
  private open(): Promise<AMQPChannel> {
    const current = this.channel
    if (current) {
      return current.then((channel) => {
        if (!channel.closed) return channel
        this.channel = undefined
        return this.open()
      })
    }
    const opening = (async () => {
      if (!this.client || this.client.closed) {
        const url = new URL(this.options.amqpUrl())
        url.searchParams.set("name", this.options.name)
        this.client = new AMQPClient(url.toString(), undefined, null)
        await this.client.connect()
      }
      const channel = await this.client.channel()
      await channel.confirmSelect()
      channel.onReturn = (msg) => {
        const pending = this.pending.get(msg.properties.correlationId ?? "")
        if (pending) pending.returned = true
      }
      await channel.basicConsume(DIRECT_REPLY_TO, { noAck: true }, (msg) => this.received(msg))
      return channel
    })()
    this.channel = opening
    opening.catch(() => {
      if (this.channel === opening) this.channel = undefined
    })
    return opening.catch((err: Error) => {
      throw new BrokerUnavailable(`remote control: ${err.message}`)
    })
  }

  private received(msg: AMQPMessage): void {
    const pending = this.pending.get(msg.properties.correlationId ?? "")
    if (!pending) return
    try {
      pending.onReply(v.parse(ControlReply, JSON.parse(msg.bodyString() ?? "")))
    } catch {
      // A reply that breaks the contract is left out, as if that worker had not answered.
    }
  }
}

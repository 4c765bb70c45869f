// Request/reply over direct reply-to, through a named exchange. amqp-client's own `rpcClient` publishes only to
// the default exchange, and write access to the default exchange would let a caller publish to any queue by
// its name (docs/security.md), so the callers publish to the RPC exchange with this instead.
import type { AMQPMessage, AMQPProperties, AMQPSession, AMQPSubscription } from "@cloudamqp/amqp-client"

const DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"

interface PendingCall {
  resolve: (msg: AMQPMessage) => void
  reject: (err: Error) => void
  timer: ReturnType<typeof setTimeout>
}

export class RpcClient {
  private subscription: Promise<AMQPSubscription> | undefined
  private readonly pending = new Map<string, PendingCall>()
  private lastId = 0

  constructor(private readonly session: AMQPSession) {}

  /**
   * Direct reply-to is scoped per channel: requests go out on the channel that consumes the replies, which the
   * session moves to a new channel after a reconnect. A reply whose call timed out finds no entry and is
   * dropped (noAck: there is nothing to requeue).
   */
  private async subscribe(): Promise<AMQPSubscription> {
    const replies = await this.session.queue(DIRECT_REPLY_TO, { passive: true })
    return replies.subscribe({ noAck: true }, (msg) => {
      const id = msg.properties.correlationId
      const call = id === undefined ? undefined : this.pending.get(id)
      if (!call || id === undefined) return
      this.pending.delete(id)
      clearTimeout(call.timer)
      call.resolve(msg)
    })
  }

  /** The session does not recover a channel the broker closed (e.g. a refused publish): subscribe anew then. */
  private async replyChannel() {
    const current = this.subscription && (await this.subscription.catch(() => undefined))
    if (current && !current.channel.closed) return current.channel
    await current?.cancel()
    const subscribing = this.subscribe()
    this.subscription = subscribing
    subscribing.catch(() => {
      if (this.subscription === subscribing) this.subscription = undefined
    })
    return (await subscribing).channel
  }

  async call(
    exchange: string,
    routingKey: string,
    body: string,
    { timeout, ...properties }: AMQPProperties & { timeout: number },
  ): Promise<AMQPMessage> {
    const channel = await this.replyChannel()
    const correlationId = (++this.lastId).toString(36)
    const reply = new Promise<AMQPMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(correlationId)
        reject(new Error(`no response received in ${timeout} ms`))
      }, timeout)
      this.pending.set(correlationId, { resolve, reject, timer })
    })
    channel
      .basicPublish(exchange, routingKey, body, { ...properties, replyTo: DIRECT_REPLY_TO, correlationId })
      .catch((err: Error) => this.settle(correlationId, err))
    return reply
  }

  private settle(correlationId: string, err: Error): void {
    const call = this.pending.get(correlationId)
    if (!call) return
    this.pending.delete(correlationId)
    clearTimeout(call.timer)
    call.reject(err)
  }

  /** After a reconnect: the old channel is gone, and with it every reply still awaited on it. */
  reconnected(): void {
    for (const id of [...this.pending.keys()]) this.settle(id, new Error("reconnecting to the broker"))
  }
}

// Remote control of this process (Celery's `inspect` and `control`): an exclusive queue of its own, bound to the
// control exchange with this worker's key and the broadcast key, declared again after every reconnect. Each
// command is answered over the reply-to it came with; a command that breaks the contract is dropped, since
// nobody can be told.
import type { AMQPMessage } from "@cloudamqp/amqp-client"
import { type Broker, decodeMessage, directReplyTo } from "../../shared/amqp.ts"
import { ControlCommand, type ControlReply, MessageType } from "../../shared/contracts.ts"
import type { Logger } from "../../shared/log.ts"
import { CONTROL_BROADCAST_KEY, controlRoutingKey } from "../../shared/topology.ts"

export type Answer = (command: ControlCommand) => ControlReply | Promise<ControlReply>

export async function serveControl(
  broker: Broker,
  worker: string,
  answer: Answer,
  log: Logger,
): Promise<void> {
  const handle = async (msg: AMQPMessage) => {
    // Only to a direct reply-to: never into a queue the command names.
    const replyTo = directReplyTo(msg)
    const { correlationId } = msg.properties
    let reply: ControlReply
    try {
      reply = await answer(decodeMessage(msg, ControlCommand, "ControlCommand"))
    } catch (err) {
      log.warn("control command not answered", { err: (err as Error).message })
      return
    }
    if (!replyTo) return
    // Not mandatory: RabbitMQ 3.10 returns a mandatory message to direct reply-to even when it delivers it.
    await broker
      .publish(
        "",
        replyTo,
        JSON.stringify(reply),
        {
          type: MessageType.controlReply,
          deliveryMode: 1,
          ...(correlationId !== undefined && { correlationId }),
        },
        { mandatory: false },
      )
      .catch((err: Error) => log.warn("control reply not sent", { err: err.message }))
  }
  await broker.listen(
    broker.names.controlExchange,
    [controlRoutingKey(worker), CONTROL_BROADCAST_KEY],
    (msg) => void handle(msg),
  )
}

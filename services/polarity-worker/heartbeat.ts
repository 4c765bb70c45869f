// A worker's heartbeat: who it is and how it is doing, on the events exchange every few seconds, so that the
// status store can list every worker and tell one that stopped heartbeating (lost) from one that said goodbye.
import { hostname } from "node:os"
import type { Broker } from "../../shared/amqp.ts"
import { MessageType, type WorkerHeartbeat } from "../../shared/contracts.ts"
import type { Logger } from "../../shared/log.ts"
import { type TaskRoute, WORKER_HEARTBEAT_KEY } from "../../shared/topology.ts"

interface HeartbeatOptions {
  worker: string
  queues: TaskRoute[]
  prefetch: number
  intervalMs: number
  inHand: () => number
  totals: { succeeded: number; failed: number; retried: number }
  log: Logger
}

export function startHeartbeats(broker: Broker, options: HeartbeatOptions) {
  const { worker, queues, prefetch, intervalMs, inHand, totals, log } = options
  const startedAt = Date.now()
  const send = (state: WorkerHeartbeat["state"]) => {
    const heartbeat: WorkerHeartbeat = {
      worker,
      host: hostname(),
      pid: process.pid,
      state,
      queues,
      prefetch,
      in_hand: inHand(),
      ...totals,
      started_at: startedAt,
      sent_at: Date.now(),
      interval_ms: intervalMs,
    }
    // Transient, and an online one expires unread after two intervals: a store that was away must not take a
    // backlog of old heartbeats for signs of life. The last one, offline, is kept until it is read.
    return broker.publish(broker.names.eventsExchange, WORKER_HEARTBEAT_KEY, JSON.stringify(heartbeat), {
      type: MessageType.workerHeartbeat,
      deliveryMode: 1,
      ...(state === "online" && { expiration: String(2 * intervalMs) }),
    })
  }
  const beat = () =>
    void send("online").catch((err: Error) => log.debug("heartbeat not sent", { err: err.message }))
  beat()
  const timer = setInterval(beat, intervalMs)
  timer.unref()
  return {
    /** Stop beating and say goodbye, so that the worker is shown offline rather than lost. */
    async stop(): Promise<void> {
      clearInterval(timer)
      await send("offline").catch((err: Error) => log.warn("last heartbeat not sent", { err: err.message }))
    },
  }
}

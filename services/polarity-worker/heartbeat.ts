// A worker's heartbeat: who it is and how it is doing, on the events exchange every few seconds, so that the
// status store can list every worker and tell one that stopped heartbeating (lost) from one that said goodbye.
// The same description answers a remote-control ping.
import { hostname } from "node:os"
import type { Broker } from "../../shared/amqp.ts"
import { MessageType, type WorkerHeartbeat } from "../../shared/contracts.ts"
import type { Logger } from "../../shared/log.ts"
import { WORKER_HEARTBEAT_KEY } from "../../shared/topology.ts"

/** What the process says about itself now: everything in a heartbeat but who, when and how often. */
export type WorkerState = Omit<
  WorkerHeartbeat,
  "worker" | "host" | "pid" | "state" | "started_at" | "sent_at" | "interval_ms"
>

/**
 * This machine's name as the status store takes it (letters, digits, `.`, `_`, `-`; the dashboard shows it):
 * any other character becomes `-`.
 */
export function workerHost(): string {
  return hostname()
    .replace(/[^A-Za-z0-9._-]/g, "-")
    .slice(0, 253)
}

interface HeartbeatOptions {
  worker: string
  intervalMs: number
  describe: () => WorkerState
  log: Logger
}

export class Heartbeats {
  private readonly startedAt = Date.now()
  private timer: ReturnType<typeof setInterval> | undefined

  constructor(
    private readonly broker: Broker,
    private readonly options: HeartbeatOptions,
  ) {}

  /** The heartbeat as it would go out now. */
  now(state: WorkerHeartbeat["state"] = "online"): WorkerHeartbeat {
    const { worker, intervalMs, describe } = this.options
    return {
      worker,
      host: workerHost(),
      pid: process.pid,
      state,
      ...describe(),
      started_at: this.startedAt,
      sent_at: Date.now(),
      interval_ms: intervalMs,
    }
  }

  start(): void {
    const beat = () =>
      void this.send("online").catch((err: Error) =>
        this.options.log.debug("heartbeat not sent", { err: err.message }),
      )
    beat()
    this.timer = setInterval(beat, this.options.intervalMs)
    this.timer.unref()
  }

  /** Stop beating and say goodbye, so that the worker is shown offline rather than lost. */
  async stop(): Promise<void> {
    clearInterval(this.timer)
    await this.send("offline").catch((err: Error) =>
      this.options.log.warn("last heartbeat not sent", { err: err.message }),
    )
  }

  private send(state: WorkerHeartbeat["state"]): Promise<void> {
    // Transient, and an online one expires unread after two intervals: a store that was away must not take a
    // backlog of old heartbeats for signs of life. The last one, offline, is kept until it is read.
    return this.broker.publish(
      this.broker.names.eventsExchange,
      WORKER_HEARTBEAT_KEY,
      JSON.stringify(this.now(state)),
      {
        type: MessageType.workerHeartbeat,
        deliveryMode: 1,
        ...(state === "online" && { expiration: String(2 * this.options.intervalMs) }),
      },
    )
  }
}

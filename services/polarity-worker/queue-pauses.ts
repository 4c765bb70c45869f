// Paused work queues (an operator's POST /admin/queues/{queue}/pause): a worker stops consuming a paused queue and
// its quarantine queue, and consumes them again once resumed; an autoscaled pool's supervisor leaves a paused
// queue's backlog out of its reckoning. The status store keeps the paused set; each asks for it at start and after
// each reconnect, and hears each change on the events exchange meanwhile. Every state carries `changed_at`, and
// only a newer one is applied, so a slow answer never undoes a later notice.
import { type Broker, type Consumer, decodeMessage } from "../../shared/amqp.ts"
import { QueuePause, QueuePausesReply, type TaskRoute } from "../../shared/contracts.ts"
import type { Logger } from "../../shared/log.ts"
import { askStatusStore, checkStatusReply } from "../../shared/status-rpc.ts"
import { QUEUE_PAUSE_KEY } from "../../shared/topology.ts"

export class QueuePauses {
  private readonly states = new Map<TaskRoute, QueuePause>()
  private readonly consuming = new Map<TaskRoute, Consumer[]>()
  private settling: Promise<void> = Promise.resolve()
  private ended = false

  constructor(
    /** The queues this worker is for (WORKER_QUEUES). */
    private readonly routes: TaskRoute[],
    private readonly log: Logger,
    /** Start consuming a route's queues; none for a pool's supervisor, which consumes no task. */
    private readonly subscribe?: (route: TaskRoute) => Promise<Consumer[]>,
  ) {}

  /** Stopped for good: nothing is consumed again. */
  get stopped(): boolean {
    return this.ended
  }

  /** This worker's queues that are paused now. */
  paused(): TaskRoute[] {
    return this.routes.filter((route) => this.states.get(route)?.paused === true)
  }

  /** This worker's queues that are not paused. */
  running(): TaskRoute[] {
    return this.routes.filter((route) => this.states.get(route)?.paused !== true)
  }

  /** Take the states newer than those held, then consume exactly the queues that are not paused. */
  apply(pauses: QueuePause[]): Promise<void> {
    for (const pause of pauses) {
      const held = this.states.get(pause.queue)
      if (held && held.changed_at >= pause.changed_at) continue
      this.states.set(pause.queue, pause)
    }
    return this.settle()
  }

  /** Stop consuming every queue, for good (a graceful stop): tasks in hand can still be acked. */
  stop(): Promise<void> {
    this.ended = true
    return this.settle()
  }

  /** One change at a time: a pause and a resume in quick succession must not leave two consumers. */
  private settle(): Promise<void> {
    this.settling = this.settling.then(
      () => this.reconcile(),
      () => this.reconcile(),
    )
    return this.settling
  }

  private async reconcile(): Promise<void> {
    if (!this.subscribe) return
    for (const route of this.routes) {
      const wanted = !this.ended && this.states.get(route)?.paused !== true
      const consumers = this.consuming.get(route)
      if (!wanted && consumers) {
        this.consuming.delete(route)
        await Promise.all(consumers.map((consumer) => consumer.stopDeliveries()))
        if (!this.ended) this.log.info("queue paused: not consuming it", { queue: route })
      } else if (wanted && !consumers) {
        this.consuming.set(route, await this.subscribe(route))
        if (this.states.has(route)) this.log.info("queue resumed: consuming it", { queue: route })
      }
    }
  }
}

/**
 * Keep `pauses` as the store has it: the notices on the events exchange, and the store's answer at once and after
 * each reconnect. Without an answer every queue counts as running, and the store is asked again every
 * `timeoutMs` until it answers: a worker is not kept idle by a store outage.
 */
export async function followQueuePauses(
  broker: Broker,
  pauses: QueuePauses,
  timeoutMs: number,
  log: Logger,
): Promise<void> {
  async function learn(): Promise<void> {
    if (pauses.stopped) return
    try {
      const [reply] = await askStatusStore(broker, "polarity-worker", [{ op: "queue_pauses" }], timeoutMs)
      await pauses.apply(checkStatusReply(QueuePausesReply, reply).queue_pauses)
      const paused = pauses.paused()
      if (paused.length > 0) log.info("paused queues learned from the status store", { paused })
    } catch (err) {
      log.warn("paused queues unknown: the status store did not tell them; asking again", {
        err: (err as Error).message,
      })
      await pauses.apply([])
      setTimeout(() => void learn(), timeoutMs).unref()
    }
  }
  await broker.listen(
    broker.names.eventsExchange,
    [QUEUE_PAUSE_KEY],
    (msg) => {
      try {
        pauses.apply([decodeMessage(msg, QueuePause, "QueuePause")]).catch((err: Error) => {
          log.error("pause or resume not applied", { err: err.message })
        })
      } catch (err) {
        log.warn("pause notice not understood", { err })
      }
    },
    () => void learn(),
  )
  await learn()
}

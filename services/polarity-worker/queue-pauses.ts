// Paused work queues (an operator's POST /admin/queues/{queue}/pause): this worker stops consuming a paused queue
// and its quarantine queue, and consumes them again once resumed. The status store keeps the paused set; the
// worker asks for it at start and after each reconnect, and hears each change on the events exchange meanwhile.
// Every state carries `changed_at`, and only a newer one is applied, so a slow answer never undoes a later notice.
import type { Consumer } from "../../shared/amqp.ts"
import type { QueuePause, TaskRoute } from "../../shared/contracts.ts"
import type { Logger } from "../../shared/log.ts"

export class QueuePauses {
  private readonly states = new Map<TaskRoute, QueuePause>()
  private readonly consuming = new Map<TaskRoute, Consumer[]>()
  private settling: Promise<void> = Promise.resolve()
  private ended = false

  constructor(
    /** The queues this worker is for (WORKER_QUEUES). */
    private readonly routes: TaskRoute[],
    /** Start consuming a route's queues. */
    private readonly subscribe: (route: TaskRoute) => Promise<Consumer[]>,
    private readonly log: Logger,
  ) {}

  /** Stopped for good: nothing is consumed again. */
  get stopped(): boolean {
    return this.ended
  }

  /** This worker's queues that are paused now. */
  paused(): TaskRoute[] {
    return this.routes.filter((route) => this.states.get(route)?.paused === true)
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

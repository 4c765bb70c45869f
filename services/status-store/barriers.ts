// Read-your-writes: a query for an id the store has not seen first reads every event queued before it. The store
// publishes a barrier to its own events queue and waits until the barrier is committed, in order with the events
// queued ahead of it.
//
// One replica takes every message of the queue, so its own commit of the barrier is enough. Replicas share the
// queue: RabbitMQ gives the messages ahead of the barrier to any of them, and one of those may still hold some,
// uncommitted, when another commits the barrier. So on a shared database a barrier is done only once every
// replica consuming the queue has committed what it was given before it:
//   1. the replica that commits the barrier announces it `passed` (its own deliveries before it are committed);
//   2. every other replica, told so, settles: a round trip on its consuming channel (the broker answers after
//      every delivery it sent before, so they are all in hand), then a commit of what is in hand; it announces
//      `flushed`, except the barrier's owner, which only counts;
//   3. the owner, once settled itself (or the one that passed it), waits for a notice from each other consumer
//      of the queue (the round trip tells how many consume it), and then answers.
// A replica that dies meanwhile never sends its notice; its uncommitted deliveries go back to the queue, ahead of
// any later barrier. The query then fails after `coverMs` rather than wait for ever (its caller gave up by then).

/** Announces barriers passed and flushed to the other replicas. */
export type Announce = (notice: { passed: string[]; flushed: string[] }) => void

export interface BarrierOptions {
  /** Replicas share the events queue (PostgreSQL), or one takes all of it (SQLite). */
  shared: boolean
  /**
   * Take in every delivery the broker sent before now and commit what is in hand; resolves with how many
   * consumers the events queue has (this replica's included).
   */
  settle: () => Promise<number>
  announce: Announce
  /** How long a barrier of a shared queue may take before its query fails. */
  coverMs: number
}

interface Open {
  done: PromiseWithResolvers<void>
  /** This replica committed what it had been given before the barrier. */
  settled: boolean
  /** Notices needed from the other consumers; unknown until this replica settled. */
  needed: number | undefined
  notices: number
  cover: ReturnType<typeof setTimeout> | undefined
}

export class Barriers {
  private readonly open = new Map<string, Open>()

  constructor(private readonly options: BarrierOptions) {}

  /** A new barrier of this replica's, to be published: resolves when it is done, rejects after the cover. */
  add(barrierId: string): Promise<void> {
    const entry: Open = {
      done: Promise.withResolvers(),
      settled: false,
      needed: undefined,
      notices: 0,
      cover: this.options.shared
        ? setTimeout(
            () => this.fail(barrierId, "could not read what is queued in time"),
            this.options.coverMs,
          )
        : undefined,
    }
    this.open.set(barrierId, entry)
    return entry.done.promise
  }

  /** The barrier was not published. */
  fail(barrierId: string, reason: string): void {
    const entry = this.open.get(barrierId)
    if (!entry) return
    this.close(barrierId, entry)
    entry.done.reject(new Error(`the status store ${reason}; try again`))
  }

  /** This replica committed these barriers (its own or others'), in order with what it was given before them. */
  passedHere(barrierIds: string[]): void {
    if (barrierIds.length === 0) return
    if (!this.options.shared) {
      for (const barrierId of barrierIds) this.settled(barrierId, 0)
      return
    }
    this.options.announce({ passed: barrierIds, flushed: [] })
    const own = barrierIds.filter((barrierId) => this.open.has(barrierId))
    if (own.length > 0) void this.afterSettling(own, false)
  }

  /** Another replica passed or flushed these barriers. */
  noticed({ passed, flushed }: { passed: string[]; flushed: string[] }): void {
    for (const barrierId of [...passed, ...flushed]) {
      const entry = this.open.get(barrierId)
      if (entry) {
        entry.notices++
        this.check(barrierId, entry)
      }
    }
    if (passed.length > 0) void this.afterSettling(passed, true)
  }

  /** Settle, then count this replica in for its own barriers and tell the owners of the others. */
  private async afterSettling(barrierIds: string[], announceOthers: boolean): Promise<void> {
    let consumers: number
    try {
      consumers = await this.options.settle()
    } catch {
      // Not consuming right now (a reconnect): the owner's cover ends its wait.
      return
    }
    const others = barrierIds.filter((barrierId) => !this.open.has(barrierId))
    if (announceOthers && others.length > 0) this.options.announce({ passed: [], flushed: others })
    for (const barrierId of barrierIds) this.settled(barrierId, consumers - 1)
  }

  private settled(barrierId: string, needed: number): void {
    const entry = this.open.get(barrierId)
    if (!entry) return
    entry.settled = true
    entry.needed = needed
    this.check(barrierId, entry)
  }

  private check(barrierId: string, entry: Open): void {
    if (!entry.settled || entry.needed === undefined || entry.notices < entry.needed) return
    this.close(barrierId, entry)
    entry.done.resolve()
  }

  private close(barrierId: string, entry: Open): void {
    clearTimeout(entry.cover)
    this.open.delete(barrierId)
  }

  /** Stop: every open barrier fails. */
  closeAll(): void {
    for (const barrierId of [...this.open.keys()]) this.fail(barrierId, "is stopping")
  }
}

// A batch of events applied to the tasks it touches, in memory, for a backend that reads those tasks' rows, inbox
// entries and held events once, under a lock on each task, and writes back what changed in a few statements
// (postgres.ts): a round trip per statement, not per event. The same admission and merge as sqlite.ts's.
import { eventId, type TaskEvent } from "../../shared/contracts.ts"
import { timelineDetail } from "./dashboard.ts"
import type { EventsOutcome } from "./store.ts"
import { type Applied, admit, type Expiries, type GroupRow, mergeEvent, type TaskRow } from "./task-state.ts"
import { type DeliveryRow, dueDelivery } from "./webhooks.ts"

/** An event kept aside until its cause arrives (the held_events table). */
export interface HeldRow {
  event_id: string
  task_id: string
  held_at: number
  waiting_for: string
  /** The event as JSON. */
  event: string
}

/** What the store holds about the batch's tasks, read under their locks. */
export interface TaskSnapshot {
  /** Every task of the batch: null for one the store has not heard of. */
  rows: Map<string, TaskRow | null>
  /** Ids of the events of these tasks in the inbox. */
  seen: Set<string>
  /** Events of these tasks held, oldest first. */
  held: HeldRow[]
  /** The expiry horizon, read once the tasks were locked (task-state.ts's `expiredBy`). */
  horizon: number | null
  /** Those of the batch's tasks that expired in a batch not settled yet (task-state.ts's `Expiries`). */
  expiredLately: Set<string>
}

export interface InboxEntry {
  event_id: string
  run: number
  at: number
  detail: string | null
}

export class EventBatch {
  readonly outcome: EventsOutcome = { applied: [], refused: [] }
  readonly inbox: InboxEntry[] = []
  readonly groups: GroupRow[] = []
  readonly deliveries: DeliveryRow[] = []
  /** Held by this batch, not held before. */
  readonly newlyHeld: HeldRow[] = []
  /** Held before, and admitted (or made moot) by this batch. */
  readonly released: string[] = []
  private readonly rows: Map<string, TaskRow | null>
  private readonly seen: Set<string>
  private readonly held = new Map<string, HeldRow>()
  private readonly changed = new Set<string>()

  private readonly expiries: Expiries

  constructor(
    snapshot: TaskSnapshot,
    private readonly now: number,
  ) {
    const { horizon, expiredLately } = snapshot
    this.expiries = { horizon, lately: (taskId) => expiredLately.has(taskId) }
    this.rows = new Map(snapshot.rows)
    this.seen = new Set(snapshot.seen)
    for (const row of snapshot.held) this.held.set(row.event_id, row)
  }

  /** Admit each event, then the held events of the tasks that moved: as sqlite.ts's applyEvents does. */
  admitAll(events: TaskEvent[]): void {
    const moved = new Set<string>()
    for (const event of events) if (this.admit(event)) moved.add(event.task_id)
    for (const taskId of moved) this.release(taskId)
  }

  /** The inbox entry and the state change go together; null for a duplicate. */
  apply(event: TaskEvent): Applied | null {
    const id = eventId(event)
    if (this.seen.has(id)) return null
    this.seen.add(id)
    this.inbox.push({ event_id: id, run: event.run, at: event.at, detail: timelineDetail(event) })
    const before = this.row(event.task_id)
    const after = mergeEvent(before, event)
    this.rows.set(event.task_id, after)
    this.changed.add(event.task_id)
    if (event.state === "PENDING" && event.group) {
      const { group_id, size } = event.group
      if (!this.groups.some((group) => group.group_id === group_id))
        this.groups.push({ group_id, size, submitted_at: event.at, owner: event.owner ?? null })
    }
    const delivery = dueDelivery(before, after, Date.now())
    if (delivery) this.deliveries.push(delivery)
    const applied = { event, before, after }
    this.outcome.applied.push(applied)
    return applied
  }

  /** The rows this batch changed, as they are now. */
  changedRows(): TaskRow[] {
    return [...this.changed].map((taskId) => this.rows.get(taskId)).filter((row) => row != null)
  }

  row(taskId: string): TaskRow | null {
    const row = this.rows.get(taskId)
    if (row === undefined) throw new Error(`task ${taskId} was not read (nor locked) for this batch`)
    return row
  }

  private admit(event: TaskEvent): boolean {
    const id = eventId(event)
    if (this.seen.has(id)) return false
    const seen = (seenId: string) => this.seen.has(seenId)
    const admission = admit(this.row(event.task_id), event, seen, this.expiries)
    if (admission.verdict === "refuse") {
      this.outcome.refused.push({ event, reason: admission.reason })
      return false
    }
    if (admission.verdict === "hold") {
      if (!this.held.has(id)) {
        const row = {
          event_id: id,
          task_id: event.task_id,
          held_at: this.now,
          waiting_for: admission.waitingFor,
          event: JSON.stringify(event),
        }
        this.held.set(id, row)
        this.newlyHeld.push(row)
      }
      return false
    }
    return this.apply(event) !== null
  }

  /** A task's held events, admitted again until none moves, since each may be the next one's cause. */
  private release(taskId: string): void {
    for (let moved = true; moved; ) {
      moved = false
      const ofTask = [...this.held.values()].filter((row) => row.task_id === taskId)
      for (const { event_id: id, event } of ofTask.toSorted((a, b) => a.held_at - b.held_at)) {
        const refused = this.outcome.refused.length
        const applied = this.admit(JSON.parse(event) as TaskEvent)
        if (applied || this.outcome.refused.length > refused || this.seen.has(id)) this.forget(id)
        moved ||= applied
      }
    }
  }

  private forget(id: string): void {
    this.held.delete(id)
    const fresh = this.newlyHeld.findIndex((row) => row.event_id === id)
    if (fresh >= 0) this.newlyHeld.splice(fresh, 1)
    else this.released.push(id)
  }
}

// The tasks this worker process holds: delivered and not yet acked, each either waiting to run or running an
// attempt. What remote control's `active` lists, what a terminate aborts, and what a graceful stop waits for.
import type { ActiveTask, Task } from "../../shared/contracts.ts"

export interface Held {
  task: Task
  queue: string
  /** Set once the attempt runs. */
  startedAt?: number
  abort?: AbortController
  /** Set once the attempt's code has returned or thrown. */
  attemptEnded?: boolean
}

export class InHand {
  private readonly held = new Set<Held>()
  /** Messages delivered and not yet acked or nacked (a graceful stop waits for none). */
  private unsettled = 0
  private drained: PromiseWithResolvers<void> | undefined

  /** Tasks held. */
  get size(): number {
    return this.held.size
  }

  messageReceived(): void {
    this.unsettled++
  }

  messageSettled(): void {
    this.unsettled--
    if (this.unsettled === 0) this.drained?.resolve()
  }

  /** Hold a task until `release` (after its message is settled). */
  hold(task: Task, queue: string): Held {
    const held: Held = { task, queue }
    this.held.add(held)
    return held
  }

  /** The attempt starts: its abort signal, for a terminate. */
  started(held: Held, at: number): AbortSignal {
    held.startedAt = at
    held.abort = new AbortController()
    return held.abort.signal
  }

  attemptEnded(held: Held): void {
    held.attemptEnded = true
  }

  /** Whether this process still runs an attempt of this task's run (one aborted included). */
  running(taskId: string, run: number): boolean {
    for (const held of this.held) {
      if (held.task.task_id === taskId && held.task.run === run && held.abort && !held.attemptEnded)
        return true
    }
    return false
  }

  release(held: Held): void {
    this.held.delete(held)
  }

  /** Abort the running attempt of this task's run, if this process runs it; true when it did. */
  abort(taskId: string, run: number, reason: Error): boolean {
    let aborted = false
    for (const held of this.held) {
      if (held.task.task_id !== taskId || held.task.run !== run || !held.abort) continue
      held.abort.abort(reason)
      aborted = true
    }
    return aborted
  }

  /** Resolves once every message received is settled. */
  async drain(): Promise<void> {
    if (this.unsettled === 0) return
    this.drained ??= Promise.withResolvers()
    await this.drained.promise
  }

  /** Running attempts first (longest running first), then the tasks waiting in hand. */
  list(now: number): ActiveTask[] {
    return [...this.held]
      .map(({ task, queue, startedAt }) => ({
        task_id: task.task_id,
        kind: task.kind,
        attempt: task.attempt,
        run: task.run,
        queue,
        started_at: startedAt === undefined ? null : new Date(startedAt).toISOString(),
        running_ms: startedAt === undefined ? null : now - startedAt,
      }))
      .sort((a, b) => (b.running_ms ?? -1) - (a.running_ms ?? -1))
  }
}

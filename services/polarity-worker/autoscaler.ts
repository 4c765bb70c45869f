// When an autoscaled pool (WORKER_AUTOSCALE) grows or shrinks: pure, so that the policy is read and tested
// apart from the processes. It grows when the tasks waiting in its queues, per process, stay above a threshold
// for two readings in a row (one reading is a burst that the processes in hand may absorb), and shrinks by a
// process that has held no task for the idle period while nothing waits.

export interface AutoscaleSettings {
  min: number
  max: number
  /** Tasks waiting per process above which the pool grows. */
  backlogPerProcess: number
  /** How long a process holds no task, with nothing waiting, before it is stopped. */
  idleMs: number
}

/** A running process as the pool last heard of it: since when it has held no task (null: it holds some). */
export interface ProcessReading {
  id: string
  idleSince: number | null
}

export type ScaleDecision = { grow: number } | { shrink: string } | null

export class Autoscaler {
  private aboveBefore = false

  constructor(private readonly settings: AutoscaleSettings) {}

  /** What to do after reading `waiting` tasks in the pool's queues at `now`, with these processes running. */
  decide(now: number, waiting: number, processes: ProcessReading[]): ScaleDecision {
    const { min, max, backlogPerProcess, idleMs } = this.settings
    const count = processes.length
    if (count < min) return { grow: min - count }
    const above = count === 0 ? waiting > 0 : waiting / count > backlogPerProcess
    // With no process at all, nothing absorbs a burst: no second reading is awaited.
    const grow = above && (this.aboveBefore || count === 0) && count < max
    this.aboveBefore = above && !grow
    if (grow) {
      const wanted = Math.ceil(waiting / backlogPerProcess)
      return { grow: Math.min(max, Math.max(count + 1, wanted)) - count }
    }
    if (waiting > 0 || count <= min) return null
    const idlest = processes
      .filter((p): p is ProcessReading & { idleSince: number } => p.idleSince !== null)
      .sort((a, b) => a.idleSince - b.idleSince)[0]
    return idlest && now - idlest.idleSince >= idleMs ? { shrink: idlest.id } : null
  }
}

// Rate limits per task kind (Celery's `rate_limit`), per worker process as Celery's are: a task over its kind's
// rate waits in hand, unstarted, until its turn. Each kind's attempts are spaced evenly (a token bucket of one
// token, as Celery's), so that no burst ever goes over the rate, even in its first second.
import * as v from "valibot"
import { TASK_KINDS, type TaskKind } from "../../shared/contracts.ts"

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000 } as const

const LIMIT = /^([a-z]+:[a-z]+)=(\d+(?:\.\d+)?)\/([smh])$/

/** `kind=N/s` (or `/m`, `/h`), comma-separated, each kind once: the least time between two starts of a kind. */
export const RateLimitList = v.pipe(
  v.optional(v.string(), ""),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const spacing = new Map<TaskKind, number>()
    for (const entry of dataset.value.split(",").map((part) => part.trim())) {
      if (entry === "") continue
      const [, kind, count, unit] = LIMIT.exec(entry) ?? []
      const problem = !kind
        ? `"${entry}" is not kind=N/s, N/m or N/h`
        : !(TASK_KINDS as readonly string[]).includes(kind)
          ? `"${kind}" is not a task kind (${TASK_KINDS.join(", ")})`
          : spacing.has(kind as TaskKind)
            ? `"${kind}" is limited twice`
            : Number(count) <= 0
              ? `"${entry}": the rate must be above 0`
              : undefined
      if (problem) {
        addIssue({ message: problem })
        return NEVER
      }
      spacing.set(kind as TaskKind, UNIT_MS[unit as keyof typeof UNIT_MS] / Number(count))
    }
    return spacing
  }),
)

export class RateLimits {
  /** When each limited kind may next start an attempt. */
  private readonly next = new Map<TaskKind, number>()

  constructor(private readonly spacingMs: ReadonlyMap<TaskKind, number>) {}

  /**
   * How long a task of `kind` must wait before it starts, its turn taken: 0 for a kind without a limit. Turns are
   * given in the order asked, so tasks of a kind start in the order they were delivered.
   */
  reserve(kind: TaskKind, now: number): number {
    const spacing = this.spacingMs.get(kind)
    if (spacing === undefined) return 0
    const at = Math.max(now, this.next.get(kind) ?? now)
    this.next.set(kind, at + spacing)
    return at - now
  }
}

// The polarity report (task `report:polarity`): what the reviews and documents scored in a window add up to. The
// store reads the window's succeeded tasks a slice at a time, whatever the backend, and adds them up here; the
// window is one of task ids, which are UUIDv7 and so sort by submission time.
import { setImmediate as nextTurn } from "node:timers/promises"
import type { DocumentResult, PolarityReport, PolarityResult } from "../../shared/contracts.ts"
import type { ReportRow, StatusStore } from "./store.ts"

const POLARITIES = ["positive", "negative", "neutral"] as const
/** How many of the most frequent words of each polarity the report names. */
export const TOP_WORDS = 10

/** The smallest task id submitted at `at` (milliseconds): the bound of a window of ids. */
export function idAt(at: number): string {
  const hex = Math.max(0, Math.floor(at)).toString(16).padStart(12, "0")
  return `${hex.slice(0, 8)}-${hex.slice(8)}`
}

type Counts = Record<(typeof POLARITIES)[number], number>
const zero = (): Counts => ({ positive: 0, negative: 0, neutral: 0 })

export class ReportTally {
  private tasks = 0
  private scoreSum = 0
  private readonly counts = zero()
  private readonly byLanguage = new Map<string, Counts>()
  private readonly words = { positive: new Map<string, number>(), negative: new Map<string, number>() }

  add(row: ReportRow): void {
    if (row.result === null) return
    const result = JSON.parse(row.result) as PolarityResult | DocumentResult
    if (!("polarity" in result) || !("language" in result)) return
    this.tasks++
    this.scoreSum += result.score
    this.counts[result.polarity]++
    const language = this.byLanguage.get(result.language) ?? zero()
    language[result.polarity]++
    this.byLanguage.set(result.language, language)
    const scored = "sentences" in result ? result.sentences : [result]
    for (const { positive, negative } of scored) {
      for (const word of positive) this.words.positive.set(word, (this.words.positive.get(word) ?? 0) + 1)
      for (const word of negative) this.words.negative.set(word, (this.words.negative.get(word) ?? 0) + 1)
    }
  }

  report(from: number, to: number): PolarityReport {
    const top = (counts: Map<string, number>) =>
      [...counts]
        .toSorted(([a, m], [b, n]) => n - m || a.localeCompare(b))
        .slice(0, TOP_WORDS)
        .map(([word, count]) => ({ word, count }))
    return {
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      tasks: this.tasks,
      counts: this.counts,
      languages: Object.fromEntries([...this.byLanguage].toSorted(([a], [b]) => a.localeCompare(b))),
      mean_score: this.tasks === 0 ? null : Math.round((this.scoreSum / this.tasks) * 1000) / 1000,
      top_positive: top(this.words.positive),
      top_negative: top(this.words.negative),
    }
  }
}

/** Rows read at a time: the store answers other queries between two slices. */
const SLICE = 2000

/** The report over the tasks submitted in [from, to) (only `owner`'s when given). */
export async function polarityReport(
  store: StatusStore,
  from: number,
  to: number,
  owner: string | undefined,
): Promise<PolarityReport> {
  const tally = new ReportTally()
  const [fromId, toId] = [idAt(from), idAt(to)]
  for (let after = ""; ; await nextTurn()) {
    const rows = await store.succeededBetween(fromId, toId, after, SLICE, owner)
    for (const row of rows) tally.add(row)
    if (rows.length < SLICE) break
    after = rows.at(-1)?.task_id ?? after
  }
  return tally.report(from, to)
}

// What scoring costs, without the broker: µs per review for each language (the labelled reviews of eval/, scored
// in turn, and one long review), and the memory the word lists take. `npm run bench -- --phase scoring` reports
// it with the other figures; `bun bench/scoring.ts` prints it alone, with the memory of loading the lists.
import { reviewsOf } from "../eval/accuracy.ts"
import { Language } from "../shared/contracts.ts"

export type ScoringCost = {
  language: Language
  /** Best of three runs of `rounds` calls: the machine is shared, so the best is the cost. */
  microsecondsPerReview: number
  meanCharacters: number
  microsecondsLongReview: number
  longCharacters: number
}

function rssMb(): number {
  return process.memoryUsage().rss / 2 ** 20
}

/** µs per call, the best of three runs of `rounds` calls. */
function microseconds(rounds: number, work: (round: number) => unknown): number {
  let best = Number.POSITIVE_INFINITY
  for (let run = 0; run < 3; run++) {
    const started = performance.now()
    for (let round = 0; round < rounds; round++) work(round)
    best = Math.min(best, ((performance.now() - started) * 1000) / rounds)
  }
  return best
}

export async function measureScoring(rounds: number): Promise<ScoringCost[]> {
  const { scoreReview } = await import("../services/polarity-worker/scoring.ts")
  return Language.options.map((language) => {
    const texts = reviewsOf(language, "dev").map((review) => review.text)
    const long = texts.join(" ").slice(0, 10_000)
    return {
      language,
      microsecondsPerReview: microseconds(rounds, (round) =>
        scoreReview(texts[round % texts.length] ?? "", language),
      ),
      meanCharacters: texts.reduce((sum, text) => sum + text.length, 0) / texts.length,
      microsecondsLongReview: microseconds(Math.max(1, Math.floor(rounds / 100)), () =>
        scoreReview(long, language),
      ),
      longCharacters: long.length,
    }
  })
}

export function scoringLines(costs: ScoringCost[]): string[] {
  return costs.map(
    (cost) =>
      `scoring ${cost.language}: ${cost.microsecondsPerReview.toFixed(1)} µs per review ` +
      `(mean ${cost.meanCharacters.toFixed(0)} characters), ` +
      `${cost.microsecondsLongReview.toFixed(0)} µs for one of ${cost.longCharacters} characters`,
  )
}

if (import.meta.main) {
  Bun.gc(true)
  const before = { rss: rssMb(), heap: process.memoryUsage().heapUsed / 2 ** 20 }
  await import("../services/polarity-worker/scoring.ts")
  Bun.gc(true)
  const after = { rss: rssMb(), heap: process.memoryUsage().heapUsed / 2 ** 20 }
  console.log(
    `loading scoring: RSS ${before.rss.toFixed(1)} → ${after.rss.toFixed(1)} MB, ` +
      `heap ${before.heap.toFixed(1)} → ${after.heap.toFixed(1)} MB`,
  )
  for (const line of scoringLines(await measureScoring(Number(process.env.ROUNDS ?? 200_000)))) {
    console.log(line)
  }
  console.log(`RSS after scoring: ${rssMb().toFixed(1)} MB`)
}

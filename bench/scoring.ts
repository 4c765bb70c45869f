// `bun bench/scoring.ts`: what scoring costs, without the broker: µs per review for each language (the held-out
// reviews of eval/, scored in turn, and one long review), and the memory the word lists take in this process.
import { loadReviews } from "../eval/accuracy.ts"
import { Language } from "../shared/contracts.ts"

const ROUNDS = Number(process.env.ROUNDS ?? 200_000)

function rssMb(): number {
  return process.memoryUsage().rss / 2 ** 20
}

/** µs per call, the best of three runs of ROUNDS calls (the machine is shared: the best is the cost). */
function microseconds(work: (round: number) => unknown): number {
  let best = Number.POSITIVE_INFINITY
  for (let run = 0; run < 3; run++) {
    const started = performance.now()
    for (let round = 0; round < ROUNDS; round++) work(round)
    best = Math.min(best, ((performance.now() - started) * 1000) / ROUNDS)
  }
  return best
}

Bun.gc(true)
const before = { rss: rssMb(), heap: process.memoryUsage().heapUsed / 2 ** 20 }
const { scoreReview } = await import("../services/polarity-worker/scoring.ts")
Bun.gc(true)
const after = { rss: rssMb(), heap: process.memoryUsage().heapUsed / 2 ** 20 }
console.log(
  `loading scoring: RSS ${before.rss.toFixed(1)} → ${after.rss.toFixed(1)} MB, ` +
    `heap ${before.heap.toFixed(1)} → ${after.heap.toFixed(1)} MB`,
)

for (const language of Language.options) {
  const texts = loadReviews(language).map((review) => review.text)
  const mean = texts.reduce((sum, text) => sum + text.length, 0) / texts.length
  const short = microseconds((round) => scoreReview(texts[round % texts.length] ?? "", language))
  const long = texts.join(" ").slice(0, 10_000)
  const longRounds = Math.max(1, Math.floor(ROUNDS / 100))
  let best = Number.POSITIVE_INFINITY
  for (let run = 0; run < 3; run++) {
    const started = performance.now()
    for (let round = 0; round < longRounds; round++) scoreReview(long, language)
    best = Math.min(best, ((performance.now() - started) * 1000) / longRounds)
  }
  console.log(
    `${language}: ${short.toFixed(1)} µs per review (mean ${mean.toFixed(0)} characters), ` +
      `${best.toFixed(0)} µs for one of ${long.length} characters`,
  )
}
console.log(`RSS after scoring: ${rssMb().toFixed(1)} MB`)

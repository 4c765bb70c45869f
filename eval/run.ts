// `npm run eval`: sign accuracy and a confusion matrix per language on the development set of
// eval/reviews.<language>.jsonl; `--test` adds the held-out sets (the first set's test half, and the fresh set
// written after the scorer was frozen), for the figures of a finished change only. `--misses` lists the
// development set's misses; the held-out sets' are never printed, so that nobody tunes on them.
import { parseArgs } from "node:util"
import { detectLanguage, scoreReview } from "../services/polarity-worker/scoring.ts"
import { Language } from "../shared/contracts.ts"
import { loadReviews, type Measurement, measure, POLARITIES, reviewsOf, type Split } from "./accuracy.ts"

function percent(share: number): string {
  return `${(share * 100).toFixed(1)} %`
}

function printConfusion({ confusion }: Measurement) {
  const width = 10
  console.log(`    ${"label \\ got".padEnd(width + 2)}${POLARITIES.map((p) => p.padStart(width)).join("")}`)
  for (const label of POLARITIES) {
    const counts = POLARITIES.map((predicted) => String(confusion[label][predicted]).padStart(width))
    console.log(`    ${label.padEnd(width + 2)}${counts.join("")}`)
  }
}

function printMisses({ misses }: Measurement) {
  for (const { review, predicted, score } of misses) {
    console.log(`    ${review.id} ${review.label} → ${predicted} (${score}): ${review.text}`)
  }
}

function run() {
  const { values } = parseArgs({
    options: { misses: { type: "boolean", default: false }, test: { type: "boolean", default: false } },
  })
  const splits: Split[] = values.test ? ["dev", "test", "fresh"] : ["dev"]
  const summary: Record<string, Partial<Record<Split, number>>> = {}
  for (const language of Language.options) {
    const reviews = [...loadReviews(language), ...loadReviews(language, "fresh")]
    const detected = reviews.filter((review) => detectLanguage(review.text) === language).length
    console.log(`${language}: ${reviews.length} reviews, language detected for ${detected}`)
    summary[language] = {}
    for (const split of splits) {
      const measured = measure(reviewsOf(language, split), (review) => scoreReview(review.text, language))
      summary[language][split] = measured.accuracy
      console.log(
        `  ${split}: ${measured.correct} of ${measured.total} right (${percent(measured.accuracy)})`,
      )
      printConfusion(measured)
      if (values.misses && split === "dev") printMisses(measured)
    }
  }
  console.log(JSON.stringify(summary))
}

run()

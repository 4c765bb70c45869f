// `npm run eval`: sign accuracy and a confusion matrix per language on the development and validation sets;
// `--test` adds the held-out test set, for the figures of a finished change only. `--misses` lists the development
// set's misses; the validation and test sets' are never printed, so that nobody tunes on their reviews.
import { existsSync } from "node:fs"
import { parseArgs } from "node:util"
import { detectLanguage, scoreReview } from "../services/polarity-worker/scoring.ts"
import { Language } from "../shared/contracts.ts"
import {
  evalFile,
  type Measurement,
  measure,
  POLARITIES,
  reviewsOf,
  SETS_OF,
  type Split,
} from "./accuracy.ts"

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
  const splits: Split[] = values.test ? ["dev", "validation", "test"] : ["dev", "validation"]
  const missing = splits.flatMap((split) =>
    SETS_OF[split].flatMap((set) => Language.options.map((language) => evalFile(language, set))),
  )
  const absent = missing.filter((file) => !existsSync(file))
  if (absent.length > 0) {
    console.error(
      `${absent.map((file) => file.pathname).join(", ")}: not there. The held-out test set is committed only once ` +
        "the scorer is frozen (docs/scoring.md); until then `npm run eval` measures the development and validation sets.",
    )
    process.exit(2)
  }
  const summary: Record<string, Partial<Record<Split, number>>> = {}
  for (const language of Language.options) {
    const reviews = splits.flatMap((split) => reviewsOf(language, split))
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

// The held-out evaluation of scoring: labelled reviews per language, in five files written in three rounds. The
// first three (eval/reviews, fresh and round4.<language>.jsonl) are the development set, whose misses are read to
// tune by; eval/validation.<language>.jsonl is measured while tuning, only ever as a figure, to choose between
// changes by what generalises; eval/holdout.<language>.jsonl is the test set, written before round 4's tuning
// began by someone who had read none of the lists, kept outside the repository under a committed SHA-256 until the
// scorer was frozen, and measured once (docs/scoring.md).
import { readFileSync } from "node:fs"
import * as v from "valibot"
import { type Language, PolarityResult } from "../shared/contracts.ts"

const Polarity = PolarityResult.entries.polarity
type Polarity = v.InferOutput<typeof Polarity>
export const POLARITIES = Polarity.options

export const LabelledReview = v.strictObject({
  id: v.pipe(v.string(), v.regex(/^[a-z]{2}-\d{3,}$/, "id must be <language>-<number>")),
  label: Polarity,
  domain: v.picklist(["shop", "delivery", "app", "food", "bank", "travel"]),
  text: v.pipe(v.string(), v.nonEmpty()),
  /** Where the review comes from: `written-for-this-project` and the round, or a package and its version. */
  source: v.pipe(v.string(), v.nonEmpty()),
  /** SPDX identifier of the licence the review is used under. */
  licence: v.pipe(v.string(), v.nonEmpty()),
})
export type LabelledReview = v.InferOutput<typeof LabelledReview>

export type Split = "dev" | "validation" | "test"

/** A file of reviews: round 1's, round 3's fresh set, and round 4's development, validation and test sets. */
export type ReviewSet = "reviews" | "fresh" | "round4" | "validation" | "holdout"

/**
 * Which files make each split. The first two rounds' test sets were looked at (round 1's test half four times,
 * round 3's fresh set once) and are development data since round 4 (docs/scoring.md, "The evaluation").
 */
export const SETS_OF: Record<Split, ReviewSet[]> = {
  dev: ["reviews", "fresh", "round4"],
  validation: ["validation"],
  test: ["holdout"],
}

export function evalFile(language: Language, set: ReviewSet): URL {
  return new URL(`./${set}.${language}.jsonl`, import.meta.url)
}

/** Every labelled review of a language in a set, validated line by line; a bad line stops with its number. */
export function loadReviews(language: Language, set: ReviewSet): LabelledReview[] {
  const lines = readFileSync(evalFile(language, set), "utf8").split("\n")
  return lines.flatMap((line, index) => {
    if (!line.trim()) return []
    const parsed = v.safeParse(LabelledReview, JSON.parse(line))
    if (!parsed.success)
      throw new Error(`${set}.${language}.jsonl:${index + 1}: ${v.summarize(parsed.issues)}`)
    return [parsed.output]
  })
}

/** The reviews of a split: every file of it, in order. */
export function reviewsOf(language: Language, split: Split): LabelledReview[] {
  return SETS_OF[split].flatMap((set) => loadReviews(language, set))
}

export type Miss = { review: LabelledReview; predicted: Polarity; score: number }

export type Measurement = {
  total: number
  correct: number
  /** The share of reviews whose polarity (the sign of the score) is the label. */
  accuracy: number
  /** confusion[label][predicted]: how many reviews of each label got each polarity. */
  confusion: Record<Polarity, Record<Polarity, number>>
  misses: Miss[]
}

export function measure(
  reviews: LabelledReview[],
  score: (review: LabelledReview) => { polarity: Polarity; score: number },
): Measurement {
  const row = () => ({ positive: 0, negative: 0, neutral: 0 })
  const confusion = { positive: row(), negative: row(), neutral: row() }
  const misses: Miss[] = []
  for (const review of reviews) {
    const result = score(review)
    confusion[review.label][result.polarity] += 1
    if (result.polarity !== review.label)
      misses.push({ review, predicted: result.polarity, score: result.score })
  }
  const correct = reviews.length - misses.length
  return { total: reviews.length, correct, accuracy: correct / reviews.length, confusion, misses }
}

// The held-out evaluation of scoring: labelled reviews per language (eval/reviews.<language>.jsonl), split once
// into a development and a test set by a hash of each review's id; a second test set written after the scorer was
// frozen (eval/fresh.<language>.jsonl, all of it held out); and the share whose polarity is right.
import { createHash } from "node:crypto"
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
  /** Where the review comes from: `written-for-this-project`, or a package and its version. */
  source: v.pipe(v.string(), v.nonEmpty()),
  /** SPDX identifier of the licence the review is used under. */
  licence: v.pipe(v.string(), v.nonEmpty()),
})
export type LabelledReview = v.InferOutput<typeof LabelledReview>

export type Split = "dev" | "test" | "fresh"

/** Which file: the first set (split into dev and test), or the fresh test set (issue 19, round 3). */
export type ReviewSet = "reviews" | "fresh"

/**
 * Fixed before the first measurement and never to be changed: half the ids (by the first byte of their SHA-256)
 * are the development set, the rest the test set. An id, not the text, decides, so fixing a typo moves nothing.
 */
export function splitOf(id: string): Split {
  const firstByte = createHash("sha256").update(id).digest()[0] ?? 0
  return firstByte < 128 ? "dev" : "test"
}

export function evalFile(language: Language, set: ReviewSet = "reviews"): URL {
  return new URL(`./${set}.${language}.jsonl`, import.meta.url)
}

/** Every labelled review of a language in a set, validated line by line; a bad line stops with its number. */
export function loadReviews(language: Language, set: ReviewSet = "reviews"): LabelledReview[] {
  const lines = readFileSync(evalFile(language, set), "utf8").split("\n")
  return lines.flatMap((line, index) => {
    if (!line.trim()) return []
    const parsed = v.safeParse(LabelledReview, JSON.parse(line))
    if (!parsed.success)
      throw new Error(`${set}.${language}.jsonl:${index + 1}: ${v.summarize(parsed.issues)}`)
    return [parsed.output]
  })
}

/** The reviews of a split: dev and test from the first set by the hash of each id, fresh the whole second set. */
export function reviewsOf(language: Language, split: Split): LabelledReview[] {
  if (split === "fresh") return loadReviews(language, "fresh")
  return loadReviews(language).filter((review) => splitOf(review.id) === split)
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

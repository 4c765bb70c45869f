// `npm run eval:levers`: what each lever of scoring does to sign accuracy on the development set, adding them one
// at a time from the lists as they were, then removing each one from the whole. `-- --validation` prints the same
// table on the validation set (figures only: what generalises); `-- --test` on the held-out test set, for reporting
// what generalised once the scorer is frozen and measured, never for choosing (docs/scoring.md).
import { parseArgs } from "node:util"
import * as english from "../services/polarity-worker/english.ts"
import * as russian from "../services/polarity-worker/russian.ts"
import { type LanguageScoring, scorer } from "../services/polarity-worker/scoring.ts"
import { mergeLabels } from "../services/polarity-worker/word-lists.ts"
import type { Language } from "../shared/contracts.ts"
import { measure, reviewsOf, type Split } from "./accuracy.ts"

type Levers = {
  /** A second, larger list (Russian: @nlpjs/lang-ru's stems). */
  secondList: boolean
  /** Negation reaches up to 3 words back within the clause, not only the word before. */
  negationScope: boolean
  /** The project's own review vocabulary. */
  reviewWords: boolean
  /** Words the lists sign that are neutral in reviews, and the negators, scored 0. */
  neutralWords: boolean
  /** What a service is expected to do, scored only when negated (`не работает`). */
  negatedOnly: boolean
  /** After `но`, `but`, the rest of the sentence counts double. */
  contrasts: boolean
  /** The project's emoji scores over `sentiment`'s. */
  reviewEmoji: boolean
  /** A negator that reaches no scored word scores −1 itself. */
  bareNegation: boolean
  /** Multi-word phrases scored as one word (`never again`, `above and beyond`). */
  phrases: boolean
  /** A sentence that ends in a single `?` scores nothing. */
  questions: boolean
  /** The last sentence of a review of several counts as the language says (English: double). */
  verdict: boolean
  /** In a review that asks a question, a bare negator scores nothing. */
  askingBareNegation: boolean
  /** A quotation of a few words scores as the language says (English: −2), its words nothing. */
  quotations: boolean
  /** A review that says it is neither good nor bad (`ничего особенного`) scores 0. */
  neutralVerdicts: boolean
}

const NONE: Levers = {
  secondList: false,
  negationScope: false,
  reviewWords: false,
  neutralWords: false,
  negatedOnly: false,
  contrasts: false,
  reviewEmoji: false,
  bareNegation: false,
  phrases: false,
  questions: false,
  verdict: false,
  askingBareNegation: false,
  quotations: false,
  neutralVerdicts: false,
}
const LEVERS = Object.keys(NONE) as (keyof Levers)[]

/** The levers a language opts into (phrases, questions, the verdict, quotations…), off where `levers` says. */
function optedLevers(scoring: LanguageScoring, levers: Levers): Partial<LanguageScoring> {
  return {
    phrases: levers.phrases ? scoring.phrases : {},
    unscoredQuestions: levers.questions && scoring.unscoredQuestions,
    verdictWeight: levers.verdict ? scoring.verdictWeight : 1,
    unscoredBareNegationWhenAsking: levers.askingBareNegation && scoring.unscoredBareNegationWhenAsking,
    quotation: levers.quotations ? scoring.quotation : undefined,
    neutralVerdicts: levers.neutralVerdicts ? scoring.neutralVerdicts : undefined,
  }
}

function russianScoring(levers: Levers): LanguageScoring {
  const lists = [
    russian.MULTILANG_LABELS,
    ...(levers.secondList ? [russian.NLPJS_LABELS] : []),
    ...(levers.reviewWords ? [russian.stemKeys(russian.REVIEW_WORDS)] : []),
    ...(levers.negatedOnly ? [russian.stemKeys(russian.NEGATED_ONLY)] : []),
  ]
  const unscored = levers.neutralWords ? [...russian.NEGATORS, ...russian.NEUTRAL_IN_REVIEWS] : []
  return {
    ...russian.RUSSIAN,
    labels: mergeLabels(lists, unscored, russian.stemRussian),
    negationScope: levers.negationScope ? russian.RUSSIAN.negationScope : 1,
    negatedOnly: levers.negatedOnly ? russian.RUSSIAN.negatedOnly : new Set(),
    contrasts: levers.contrasts ? russian.RUSSIAN.contrasts : new Set(),
    emoji: levers.reviewEmoji ? russian.RUSSIAN.emoji : {},
    bareNegators: levers.bareNegation ? russian.RUSSIAN.bareNegators : new Set(),
    ...optedLevers(russian.RUSSIAN, levers),
  }
}

function englishScoring(levers: Levers): LanguageScoring {
  const lists = [
    english.AFINN_LABELS,
    ...(levers.reviewWords ? [english.REVIEW_WORDS] : []),
    ...(levers.negatedOnly ? [english.NEGATED_ONLY] : []),
  ]
  const negators = levers.negationScope ? english.NEGATORS : english.SENTIMENT_NEGATORS
  const unscored = levers.neutralWords ? [...negators, ...english.NEUTRAL_IN_REVIEWS] : []
  return {
    ...english.ENGLISH,
    labels: mergeLabels(lists, unscored, english.normaliseEnglish),
    negators: new Set(negators),
    negationScope: levers.negationScope ? english.ENGLISH.negationScope : 1,
    negatedOnly: levers.negatedOnly ? english.ENGLISH.negatedOnly : new Set(),
    contrasts: levers.contrasts ? english.ENGLISH.contrasts : new Set(),
    emoji: levers.reviewEmoji ? english.ENGLISH.emoji : {},
    bareNegators: levers.bareNegation ? english.ENGLISH.bareNegators : new Set(),
    ...optedLevers(english.ENGLISH, levers),
  }
}

const BUILD: Record<Language, (levers: Levers) => LanguageScoring> = {
  ru: russianScoring,
  en: englishScoring,
}

const { values } = parseArgs({
  options: {
    validation: { type: "boolean", default: false },
    test: { type: "boolean", default: false },
  },
})
const SPLIT: Split = values.test ? "test" : values.validation ? "validation" : "dev"
const SPLIT_NAMES: Record<Split, string> = {
  dev: "development",
  validation: "validation",
  test: "held-out test",
}

let variants = 0
function accuracyOf(language: Language, levers: Levers): string {
  const score = scorer(`levers:${language}:${variants++}`, BUILD[language](levers))
  const { correct, total, accuracy } = measure(reviewsOf(language, SPLIT), (review) => {
    const { score: value } = score(review.text)
    return { score: value, polarity: value < 0 ? "negative" : value > 0 ? "positive" : "neutral" }
  })
  return `${(accuracy * 100).toFixed(1)} % (${correct}/${total})`
}

function row(name: string, levers: Levers) {
  console.log(`| ${name} | ${accuracyOf("ru", levers)} | ${accuracyOf("en", levers)} |`)
}

console.log(`| levers (${SPLIT_NAMES[SPLIT]} set) | ru | en |\n| --- | --- | --- |`)
let cumulative = { ...NONE }
row("none: the lists as they were", cumulative)
for (const lever of LEVERS) {
  cumulative = { ...cumulative, [lever]: true }
  row(`+ ${lever}`, cumulative)
}
for (const lever of LEVERS) row(`all but ${lever}`, { ...cumulative, [lever]: false })

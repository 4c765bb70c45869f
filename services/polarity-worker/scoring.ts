// What the worker computes: a review's polarity with `sentiment` (AFINN-style word lists) in each language of
// `LANGUAGES`, and a document's, sentence by sentence. A language is one `LanguageScoring` (english.ts,
// russian.ts): its word list, how a word is looked up, and the words that negate.
import Sentiment from "sentiment"
import type { DocumentResult, Language, PolarityResult, SentenceResult } from "../../shared/contracts.ts"
import { ENGLISH } from "./english.ts"
import { RUSSIAN } from "./russian.ts"

export type LanguageScoring = {
  /** The key a lower-cased word is looked up by in `labels`: a stem, or the word itself. */
  normalise: (word: string) => string
  /** Scores by key, -5…5. */
  labels: Record<string, number>
  /** Keys that flip the next scored word within `negationScope` words of the same clause. */
  negators: ReadonlySet<string>
  negationScope: number
  /**
   * Keys that score only when negated: a service doing what it should is no praise, but not doing it is a
   * complaint (`не работает`, `never arrived`, `без ответа`).
   */
  negatedOnly: ReadonlySet<string>
  /**
   * Keys after which the rest of the sentence counts double (`но`, `but`): what follows a contrast is what the
   * reviewer concludes (`вкусно, но обслуживание ужасное`).
   */
  contrasts: ReadonlySet<string>
  /** Emoji scores that replace `sentiment`'s own (which it writes over `labels` when a language is registered). */
  emoji: Record<string, number>
  /**
   * Negators that score `BARE_NEGATION` when they reach no scored word: in a review, a bare `не` (`не
   * перезвонили`, `nobody tells me anything`) is most often a complaint about something not done. Prepositions
   * (`без`, `without`) are left out: `без сахара` is a description.
   */
  bareNegators: ReadonlySet<string>
}

const BARE_NEGATION = -1

/** The language of a review that did not name one: Russian when most of its letters are Cyrillic, else English. */
export function detectLanguage(review: string): Language {
  // Most reviews have no Cyrillic at all: one search answers them without counting every letter.
  if (!/\p{Script=Cyrillic}/u.test(review)) return "en"
  const letters = review.match(/\p{L}/gu)?.length ?? 0
  const cyrillic = review.match(/\p{Script=Cyrillic}/gu)?.length ?? 0
  return cyrillic * 2 > letters ? "ru" : "en"
}

/**
 * Words (with hyphens and apostrophes inside), pictographs (the emoji that `sentiment` adds to every language's
 * labels), and the punctuation that ends a clause, which a negation does not reach past.
 */
const TOKEN = /[\p{L}\p{N}]+(?:['’-][\p{L}\p{N}]+)*|\p{Extended_Pictographic}|[.,;:!?…()—–]+/gu
/** What a clause's end is handed to `sentiment` as: no word list has it, and its tokenizer keeps it whole. */
const CLAUSE_END = "|"
const PICTOGRAPH = /^\p{Extended_Pictographic}$/u
/** A sentence's end (a clause's too), where a contrast's reach stops. */
const SENTENCE_END = "||"

function isWord(token: string): boolean {
  return !/^[.,;:!?…()—–]+$/u.test(token)
}

function keyOf(token: string, normalise: (word: string) => string): string {
  if (isWord(token)) return normalise(token)
  return /[.!?…]/u.test(token) ? SENTENCE_END : CLAUSE_END
}

/**
 * As `sentiment` does for English, widened: a negator a few words back in the same clause flips the score, and a
 * negator that reaches no scored word (nor another negator) scores `BARE_NEGATION` itself.
 */
function scoringStrategy(scoring: LanguageScoring, labels: Record<string, number>) {
  const { negators, negationScope, negatedOnly, contrasts } = scoring
  const isNegated = (tokens: string[], cursor: number) => {
    for (let index = cursor - 1; index >= 0 && index >= cursor - negationScope; index--) {
      const token = tokens[index] ?? CLAUSE_END
      if (token === CLAUSE_END || token === SENTENCE_END) return false
      if (negators.has(token)) return true
    }
    return false
  }
  const reachesScoredWord = (tokens: string[], cursor: number) => {
    for (let index = cursor + 1; index < tokens.length && index <= cursor + negationScope; index++) {
      const token = tokens[index] ?? CLAUSE_END
      if (token === CLAUSE_END || token === SENTENCE_END) return false
      if (negators.has(token) || (Object.hasOwn(labels, token) && !PICTOGRAPH.test(token))) return true
    }
    return false
  }
  const followsContrast = (tokens: string[], cursor: number) => {
    for (let index = cursor - 1; index >= 0; index--) {
      const token = tokens[index] ?? SENTENCE_END
      if (token === SENTENCE_END) return false
      if (contrasts.has(token)) return true
    }
    return false
  }
  return {
    apply(tokens: string[], cursor: number, score: number): number {
      const token = tokens[cursor] ?? ""
      const weight = followsContrast(tokens, cursor) ? 2 : 1
      if (negators.has(token)) return reachesScoredWord(tokens, cursor) ? 0 : score * weight
      // An emoji is the reviewer's mood, said after the words: `couldn't eat it 😞` is not a negated 😞.
      if (isNegated(tokens, cursor) && !PICTOGRAPH.test(token)) return -score * weight
      return negatedOnly.has(token) ? 0 : score * weight
    },
  }
}

/**
 * `sentiment` walks the tokens last to first and lists each labelled one with its score in `calculation`; walking
 * the same way pairs every score with the review's own word at that place (a stem stands for many forms).
 */
function ownWords(
  words: string[],
  keys: string[],
  labels: Record<string, number>,
  calculation: Record<string, number>[],
) {
  const positive: string[] = []
  const negative: string[] = []
  const scores = calculation.values()
  for (let index = keys.length - 1; index >= 0; index--) {
    if (!Object.hasOwn(labels, keys[index] ?? "")) continue
    const score = Object.values(scores.next().value ?? {})[0] ?? 0
    if (score > 0) positive.push(words[index] ?? "")
    if (score < 0) negative.push(words[index] ?? "")
  }
  return { positive, negative }
}

const sentiment = new Sentiment()

export type Analysis = Pick<PolarityResult, "score" | "comparative" | "positive" | "negative">

/**
 * A language's scorer. It is registered with `sentiment` under its own name, never as `en`, since `sentiment`
 * keeps languages for the whole process. `sentiment` looks tokens up as they are, so it is handed their keys,
 * and the review's own words are reported. Its labels are completed in place (`sentiment` writes its emoji into
 * them, then the language's own emoji and bare negators go in), not copied: the lists are the bulk of the
 * worker's heap.
 */
export function scorer(name: string, scoring: LanguageScoring): (review: string) => Analysis {
  const { labels } = scoring
  sentiment.registerLanguage(name, { labels, scoringStrategy: scoringStrategy(scoring, labels) })
  Object.assign(labels, scoring.emoji)
  for (const negator of scoring.bareNegators) labels[negator] = BARE_NEGATION
  return (review) => {
    const tokens = review.toLowerCase().match(TOKEN) ?? []
    const keys = tokens.map((token) => keyOf(token, scoring.normalise))
    const { score, calculation } = sentiment.analyze(keys.join(" "), { language: name })
    const wordCount = tokens.filter(isWord).length
    return {
      score,
      comparative: wordCount > 0 ? score / wordCount : 0,
      ...ownWords(tokens, keys, labels, calculation),
    }
  }
}

const ANALYZE: Record<Language, (review: string) => Analysis> = {
  en: scorer("reviews:en", ENGLISH),
  ru: scorer("reviews:ru", RUSSIAN),
}

export function scoreReview(review: string, language: Language = detectLanguage(review)): PolarityResult {
  const { score, comparative, positive, negative } = ANALYZE[language](review)
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

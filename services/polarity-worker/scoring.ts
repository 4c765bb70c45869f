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
   * Negators that score `BARE_NEGATION` when they reach no scored word: in a review, a bare emphatic negator (`ни
   * зайти ни перевести`, `nobody tells me anything`) is most often a complaint about something not done. A plain
   * `не`, `not` describes as often (each language's list says), and prepositions (`без`, `without`) are left out:
   * `без сахара` is a description.
   */
  bareNegators: ReadonlySet<string>
  /**
   * Expressions of several words scored as one (`never again`, `waste of money`, `не советую`), written as words
   * and matched on their words' keys: what they say is not the sum of their words. A negator before one flips it
   * as it would a word (`not worth the money`).
   */
  phrases?: Record<string, number>
  /**
   * Whether the words of a sentence that ends in a single `?` score nothing: a question asks (`does it fit the
   * 2019 model?`) rather than judges. `??` and `?!` are exasperation and still score.
   */
  unscoredQuestions?: boolean
  /**
   * Whether a bare negator scores nothing in a review that asks a question: there it says why the reviewer asks
   * (`Есть ли тёмная тема? В настройках не нашёл.`), not what went wrong.
   */
  unscoredBareNegationWhenAsking?: boolean
  /**
   * Phrases of `phrases` (or words) that give a review a neutral verdict (`ни хорошо, ни плохо`, `ничего
   * особенного`): a review that says one scores 0 whatever else it says, since its writer weighed it so.
   */
  neutralVerdicts?: string[]
  /**
   * What the words of the last sentence of a review of several count for: it is most often the reviewer's verdict
   * (`…and the crew dimmed the lights. Landed 20 min early, can't ask for more.`).
   */
  verdictWeight?: number
  /**
   * What a quotation of a few words scores (`"free" app`, `parcel “in transit” for a week`), its words nothing:
   * they are someone else's, and a review quotes a claim or a reply most often to say it proved untrue.
   */
  quotation?: number
  /** The words a `#` in a phrase stands for besides digits (`in ten minutes` as `in # minutes`). */
  numbers?: ReadonlySet<string>
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
 * labels), the punctuation that ends a clause, which a negation does not reach past, and quotation marks.
 */
const TOKEN = /[\p{L}\p{N}]+(?:['’-][\p{L}\p{N}]+)*|\p{Extended_Pictographic}|[.,;:!?…()—–]+|["“”«»„]/gu
/** The marks that open and close a quotation. */
const QUOTE_MARKS = /["“”«»„]/u
const QUOTE_MARK = /^["“”«»„]$/u
/** What a quotation is handed to `sentiment` as: one token, which no word list has. */
const QUOTATION = "|quotation|"
/** The most words a quotation has: longer ones are reported speech, told in a story of any kind. */
const LONGEST_QUOTATION = 6
/** What a clause's end is handed to `sentiment` as: no word list has it, and its tokenizer keeps it whole. */
const CLAUSE_END = "|"
const PICTOGRAPH = /^\p{Extended_Pictographic}$/u
/** A sentence's end (a clause's too), where a contrast's reach stops. */
const SENTENCE_END = "||"
/** The end of a sentence that asks: a single `?`. A sentence's end too. */
const QUESTION_END = "|||"
/** How a phrase's words are joined into its key: `sentiment`'s tokenizer keeps `+` inside a token. */
const PHRASE_JOINER = "+"

function isWord(token: string): boolean {
  return !/^[.,;:!?…()—–]+$/u.test(token)
}

function keyOf(token: string, normalise: (word: string) => string): string {
  if (QUOTE_MARK.test(token[0] ?? "")) return QUOTATION
  if (isWord(token)) return normalise(token)
  if (token === "?") return QUESTION_END
  return /[.!?…]/u.test(token) ? SENTENCE_END : CLAUSE_END
}

function isSentenceEnd(key: string): boolean {
  return key === SENTENCE_END || key === QUESTION_END
}

/**
 * The review's tokens, each quotation of a few words made one token (`"free"`, as written), the marks that quote
 * nothing dropped; or every mark dropped, where a language does not score quotations.
 */
function joinQuotations(review: string, scoresQuotations: boolean): string[] {
  if (!scoresQuotations || !QUOTE_MARKS.test(review))
    return (review.match(TOKEN) ?? []).filter((token) => !QUOTE_MARK.test(token))
  const matches = [...review.matchAll(TOKEN)]
  const tokens: string[] = []
  for (let index = 0; index < matches.length; index++) {
    const match = matches[index]
    if (!match) continue
    if (!QUOTE_MARK.test(match[0])) {
      tokens.push(match[0])
      continue
    }
    const close = matches.findIndex((other, at) => at > index && QUOTE_MARK.test(other[0]))
    const words = close - index - 1
    if (close < 0 || words < 1 || words > LONGEST_QUOTATION) continue
    const end = matches[close]
    tokens.push(review.slice(match.index, (end?.index ?? 0) + 1))
    index = close
  }
  return tokens
}

/** What a `#` in a phrase is looked up as: a number's place (`in # minutes`). */
const NUMBER = "<n>"

/**
 * A language's phrases by the space-joined keys of their words (a `#` standing for any number), every phrase's
 * beginnings, and the most words one has.
 */
function phraseTable(scoring: LanguageScoring) {
  const scores = new Map<string, number>()
  // A neutral verdict of several words is found as a phrase is; scored 0 unless the language scores it otherwise.
  const verdicts = (scoring.neutralVerdicts ?? []).filter((verdict) => verdict.includes(" "))
  const phrases = { ...Object.fromEntries(verdicts.map((verdict) => [verdict, 0])), ...scoring.phrases }
  for (const [phrase, score] of Object.entries(phrases)) {
    const keys = phrase.split(" ").map((word) => (word === "#" ? NUMBER : scoring.normalise(word)))
    scores.set(keys.join(" "), score)
  }
  const prefixes = new Set(
    [...scores.keys()].flatMap((keys) =>
      keys.split(" ").map((_, length, all) => all.slice(0, length + 1).join(" ")),
    ),
  )
  const longest = Math.max(0, ...[...scores.keys()].map((keys) => keys.split(" ").length))
  const numbers = scoring.numbers ?? new Set<string>()
  return { scores, prefixes, longest, numbers }
}

/**
 * The review's words and their keys, each phrase of `table` found among them made one word (`never again`)
 * with one key (`never+again`; `in+<n>+minutes` for `in 10 minutes`), the longest phrase first.
 */
function joinPhrases(words: string[], keys: string[], table: ReturnType<typeof phraseTable>) {
  const joinedWords: string[] = []
  const joinedKeys: string[] = []
  for (let index = 0; index < keys.length; ) {
    const phrase = longestPhrase(keys, index, table)
    const length = phrase.split(" ").length
    joinedWords.push(length === 1 ? (words[index] ?? "") : words.slice(index, index + length).join(" "))
    joinedKeys.push(phrase.replaceAll(" ", PHRASE_JOINER))
    index += length
  }
  return { words: joinedWords, keys: joinedKeys }
}

/** The keys of the longest phrase of `table` that starts at `index`, or the key there where none does. */
function longestPhrase(keys: string[], index: number, table: ReturnType<typeof phraseTable>): string {
  let candidate = keys[index] ?? ""
  let found = candidate
  for (let length = 2; length <= table.longest && index + length <= keys.length; length++) {
    if (!table.prefixes.has(candidate)) break
    const key = keys[index + length - 1] ?? ""
    const number = /^\d+$/u.test(key) || table.numbers.has(key)
    candidate += number && table.prefixes.has(`${candidate} ${NUMBER}`) ? ` ${NUMBER}` : ` ${key}`
    if (table.scores.has(candidate)) found = candidate
  }
  return found
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
      if (token === CLAUSE_END || isSentenceEnd(token) || contrasts.has(token)) return false
      if (negators.has(token)) return true
    }
    return false
  }
  /** A scored word; an emoji is the reviewer's mood and a quotation someone else's words, neither negated. */
  const isNegatable = (token: string) =>
    Object.hasOwn(labels, token) && !PICTOGRAPH.test(token) && token !== QUOTATION
  const reachesScoredWord = (tokens: string[], cursor: number) => {
    for (let index = cursor + 1; index < tokens.length && index <= cursor + negationScope; index++) {
      const token = tokens[index] ?? CLAUSE_END
      if (token === CLAUSE_END || isSentenceEnd(token) || contrasts.has(token)) return false
      if (negators.has(token) || isNegatable(token)) return true
    }
    return false
  }
  const followsContrast = (tokens: string[], cursor: number) => {
    for (let index = cursor - 1; index >= 0; index--) {
      const token = tokens[index] ?? SENTENCE_END
      if (isSentenceEnd(token)) return false
      if (contrasts.has(token)) return true
    }
    return false
  }
  const asks = (tokens: string[], cursor: number) => {
    for (let index = cursor + 1; index < tokens.length; index++) {
      const token = tokens[index] ?? SENTENCE_END
      if (isSentenceEnd(token)) return token === QUESTION_END
    }
    return false
  }
  const verdictKeys = new Set(
    (scoring.neutralVerdicts ?? []).map((phrase) =>
      phrase.split(" ").map(scoring.normalise).join(PHRASE_JOINER),
    ),
  )
  /**
   * What holds for a whole review: whether it says a neutral verdict, whether it asks, and where its last
   * sentence begins (after the last sentence end before its last word; -1 for a review of one sentence).
   * `sentiment` hands every word of one review the same array, so this is worked out once a review, not once a
   * word.
   */
  let reviewTokens: string[] = []
  let review = { neutral: false, asking: false, lastSentenceEnd: -1 }
  const factsOf = (tokens: string[]) => {
    if (tokens === reviewTokens) return review
    let lastWord = tokens.length - 1
    while (lastWord >= 0 && (tokens[lastWord] === CLAUSE_END || isSentenceEnd(tokens[lastWord] ?? "")))
      lastWord--
    let lastSentenceEnd = lastWord - 1
    while (lastSentenceEnd >= 0 && !isSentenceEnd(tokens[lastSentenceEnd] ?? "")) lastSentenceEnd--
    reviewTokens = tokens
    review = {
      neutral: verdictKeys.size > 0 && tokens.some((token) => verdictKeys.has(token)),
      asking: tokens.includes(QUESTION_END),
      lastSentenceEnd,
    }
    return review
  }
  /** In the last sentence of a review of several: where its verdict is. */
  const concludes = (tokens: string[], cursor: number) => {
    const { lastSentenceEnd } = factsOf(tokens)
    return lastSentenceEnd >= 0 && cursor > lastSentenceEnd
  }
  const bareNegation = (tokens: string[], score: number) =>
    scoring.unscoredBareNegationWhenAsking && factsOf(tokens).asking ? 0 : score
  return {
    apply(tokens: string[], cursor: number, score: number): number {
      const token = tokens[cursor] ?? ""
      if (factsOf(tokens).neutral) return 0
      if (scoring.unscoredQuestions && asks(tokens, cursor)) return 0
      if (token === QUOTATION) return score
      const verdict =
        scoring.verdictWeight !== undefined && concludes(tokens, cursor) ? scoring.verdictWeight : 1
      const weight = (followsContrast(tokens, cursor) ? 2 : 1) * verdict
      if (negators.has(token))
        return reachesScoredWord(tokens, cursor) ? 0 : bareNegation(tokens, score) * weight
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
  if (scoring.quotation !== undefined) labels[QUOTATION] = scoring.quotation
  const phrases = phraseTable(scoring)
  for (const [keys, score] of phrases.scores) labels[keys.replaceAll(" ", PHRASE_JOINER)] = score
  return (review) => {
    const tokens = joinQuotations(review.toLowerCase(), scoring.quotation !== undefined)
    const { words, keys } = joinPhrases(
      tokens,
      tokens.map((token) => keyOf(token, scoring.normalise)),
      phrases,
    )
    const { score, calculation } = sentiment.analyze(keys.join(" "), { language: name })
    const wordCount = tokens.filter(isWord).length
    return {
      score,
      comparative: wordCount > 0 ? score / wordCount : 0,
      ...ownWords(words, keys, labels, calculation),
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

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import Sentiment from "sentiment"
import { detectLanguage, scoreReview } from "../services/polarity-worker/scoring.ts"
import type { Language } from "../shared/contracts.ts"
import { ENGLISH_REVIEWS, RUSSIAN_REVIEWS } from "./reviews.ts"
import { isoTime, postBody, type Stack, startStack, taskBody } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("language")
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

/** Scores every review with the language detected, as the worker does for a task without one. */
function measureSigns(reviews: { positive: string[]; negative: string[] }) {
  const labelled = [
    ...reviews.positive.map((review) => ({ review, expected: "positive" })),
    ...reviews.negative.map((review) => ({ review, expected: "negative" })),
  ]
  const misses = labelled
    .map(({ review, expected }) => ({ review, expected, result: scoreReview(review) }))
    .filter(({ expected, result }) => result.polarity !== expected)
  const correct = labelled.length - misses.length
  return { correct, total: labelled.length, share: correct / labelled.length, misses }
}

function report(language: string, { correct, total, share, misses }: ReturnType<typeof measureSigns>) {
  console.log(`${language}: right sign for ${correct} of ${total} reviews (${(share * 100).toFixed(1)}%)`)
  for (const { review, expected, result } of misses) {
    console.log(`  missed (${expected}, scored ${result.score}): ${review}`)
  }
}

describe("detectLanguage", () => {
  test.each<[string, Language]>([
    ["Ужасный сервис, всё сломано.", "ru"],
    ["Terrible service, everything is broken.", "en"],
    ["Купил iPhone 15 Pro, всё отлично", "ru"],
    ["Great phone, спасибо", "en"],
    ["ok ок", "en"],
    ["👍 10/10", "en"],
    ["Πολύ καλό", "en"],
  ])("takes %p as %p: Russian only when most letters are Cyrillic", (review, language) => {
    expect(detectLanguage(review)).toBe(language)
  })
})

describe("scoreReview in Russian", () => {
  test("gets the sign of at least 85% of the Russian reviews right, detecting Russian for all", () => {
    expect(RUSSIAN_REVIEWS.positive.length).toBeGreaterThanOrEqual(20)
    expect(RUSSIAN_REVIEWS.negative.length).toBe(RUSSIAN_REVIEWS.positive.length)
    for (const review of [...RUSSIAN_REVIEWS.positive, ...RUSSIAN_REVIEWS.negative]) {
      expect(detectLanguage(review)).toBe("ru")
    }
    const measured = measureSigns(RUSSIAN_REVIEWS)
    report("ru", measured)
    expect(measured.share).toBeGreaterThanOrEqual(0.85)
  })

  test("scores every inflected form of a word as its lemma, and reports the review's own word", () => {
    for (const form of ["ужасный", "ужасная", "ужасное", "ужасные", "ужасных", "ужасно"]) {
      expect(scoreReview(form, "ru")).toEqual({
        score: -2,
        comparative: -2,
        polarity: "negative",
        positive: [],
        negative: [form],
        language: "ru",
      })
    }
  })

  test("reports every inflected form as written in the review, in the order sentiment reports words", () => {
    expect(scoreReview("ужасная ужасных ужасно", "ru")).toEqual({
      score: -6,
      comparative: -2,
      polarity: "negative",
      positive: [],
      negative: ["ужасно", "ужасных", "ужасная"],
      language: "ru",
    })
    expect(scoreReview("Отличный сервис, отличная еда, отлично!", "ru").positive).toEqual([
      "отлично",
      "отличная",
      "отличный",
    ])
  })

  test("reads ё as е", () => {
    expect(scoreReview("весёлый", "ru").score).toBe(scoreReview("веселый", "ru").score)
    expect(scoreReview("весёлый", "ru").score).toBeGreaterThan(0)
  })

  test("a negator flips the word right after it, as sentiment does for English", () => {
    expect(scoreReview("Мне понравилось").score).toBe(2)
    expect(scoreReview("Мне не понравилось")).toEqual({
      score: -2,
      comparative: -2 / 3,
      polarity: "negative",
      positive: [],
      negative: ["понравилось"],
      language: "ru",
    })
    expect(scoreReview("Не плохо").polarity).toBe("positive")
    expect(scoreReview("Ни радости").negative).toEqual(["радости"])
    // "нет" is a negator and, like English "no", a word of score -1 itself.
    expect(scoreReview("Нет радости").negative).toEqual(["радости", "нет"])
  })

  test("scores emoji too", () => {
    expect(scoreReview("Отлично 👍").positive).toEqual(["👍", "отлично"])
  })
})

describe("scoreReview in English", () => {
  test("scores as plain sentiment does, adding only the language", () => {
    const plain = new Sentiment()
    for (const review of [...ENGLISH_REVIEWS.positive, ...ENGLISH_REVIEWS.negative]) {
      const { score, comparative, positive, negative } = plain.analyze(review)
      expect(scoreReview(review)).toMatchObject({ score, comparative, positive, negative, language: "en" })
    }
  })

  test("gets the sign of at least 85% of the English reviews right", () => {
    const measured = measureSigns(ENGLISH_REVIEWS)
    report("en", measured)
    expect(measured.share).toBeGreaterThanOrEqual(0.85)
  })
})

describe("POST /polarities with a language", () => {
  test("detects Russian and scores a negative Russian review below zero", async () => {
    const review = "Ужасный сервис, всё сломано и очень грустно."
    const res = await postBody(stack, { review }, "?wait=10")
    expect(res.status).toBe(200)
    expect(await taskBody(res)).toEqual({
      task_id: expect.any(String),
      kind: "polarity:review",
      status: "SUCCESS",
      result: {
        score: -5,
        comparative: -5 / 7,
        polarity: "negative",
        positive: [],
        negative: ["грустно", "сломано", "ужасный"],
        language: "ru",
      },
      error: null,
      attempts: 1,
      group_id: null,
      submitted_at: isoTime,
      started_at: isoTime,
      finished_at: isoTime,
    })
  })

  test.each<[Language, string]>([
    ["en", "Ужасный сервис, всё сломано и очень грустно."],
    ["ru", "This is terrible, awful and sad."],
  ])("scores in the language asked for (%p) even when the review is in another", async (language, review) => {
    const task = await taskBody(await postBody(stack, { review, language }, "?wait=10"))
    expect(task.status).toBe("SUCCESS")
    expect(task.result).toEqual({
      score: 0,
      comparative: 0,
      polarity: "neutral",
      positive: [],
      negative: [],
      language,
    })
  })

  test.each([["de"], ["xx"], ["EN"], [42], [null]])(
    "rejects the unsupported language %p with 422 problem+json",
    async (language) => {
      const res = await postBody(stack, { review: "Gut!", language }, "?wait=10")
      expect(res.status).toBe(422)
      expect(res.headers.get("content-type")).toBe("application/problem+json")
      expect(await res.json()).toEqual({
        type: "about:blank",
        title: expect.any(String),
        status: 422,
        detail: `language: language must be one of "en", "ru", not ${JSON.stringify(language)}`,
      })
    },
  )
})

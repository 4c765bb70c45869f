import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import {
  NEUTRAL_IN_REVIEWS,
  REVIEW_WORDS,
  RUSSIAN,
  stemRussian,
} from "../services/polarity-worker/russian.ts"
import { detectLanguage, scoreReview } from "../services/polarity-worker/scoring.ts"
import type { Language } from "../shared/contracts.ts"
import { isoTime, postBody, type Stack, startStack, taskBody } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("language")
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

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
  test("scores every inflected form of a word as its lemma, and reports the review's own word", () => {
    for (const form of ["ужасный", "ужасная", "ужасное", "ужасные", "ужасных", "ужасно"]) {
      // −5 in the general lists, capped at −2 (russian.ts, LIST_CAP).
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

  test("a negator flips a scored word up to four words after it, within its clause", () => {
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
    expect(scoreReview("Не сказал бы что понравилось").negative).toEqual(["понравилось"])
    // `очень` says nothing alone, and `не очень` is a complaint, as `not very` is.
    expect(scoreReview("Не очень хороший отель").negative).toEqual(["хороший", "очень"])
    expect(scoreReview("Всё пришло без задержек").positive).toEqual(["задержек"])
    // A negator is an operator, not a word of its own score.
    expect(scoreReview("Нет радости").negative).toEqual(["радости"])
    // The comma ends the clause: "отличный" is not negated.
    expect(scoreReview("Не опоздали, отличный сервис").positive).toEqual(["отличный", "опоздали"])
  })

  test("what a service should do scores only when negated", () => {
    expect(scoreReview("Приложение не работает").negative).toEqual(["работает"])
    expect(scoreReview("Магазин работает с 9 до 21").polarity).toBe("neutral")
  })

  test("the things a review is about score nothing, whatever a translated list says", () => {
    for (const review of ["Поддержка", "Уютное место", "Горячая пицца", "Цены"]) {
      expect(scoreReview(review, "ru").negative).toEqual([])
    }
    expect(scoreReview("Поддержка ответила в чате", "ru").polarity).toBe("neutral")
  })

  test("scores emoji too, with the project's scores over sentiment's, and never negates them", () => {
    expect(scoreReview("Отлично 👍").positive).toEqual(["👍", "отлично"])
    expect(scoreReview("Вид из окна 🙄")).toMatchObject({ score: -2, negative: ["🙄"] })
    expect(scoreReview("Есть это невозможно 😞").negative).toEqual(["😞", "невозможно"])
    expect(scoreReview("Ни кусочка не доели 😞").negative).toEqual(["😞"])
  })

  test("an emphatic negator that reaches no scored word is a complaint; a bare `не` or a preposition is not", () => {
    expect(scoreReview("Ни зайти ни перевести")).toMatchObject({ score: -1, negative: ["ни"] })
    expect(scoreReview("Отключить нельзя").polarity).toBe("negative")
    expect(scoreReview("Вывеску ещё не повесили").polarity).toBe("neutral")
    expect(scoreReview("Кофе без сахара").polarity).toBe("neutral")
  })

  test("a bare `нет` or `никакой` states what is lacking, not a complaint; `перестал` negates", () => {
    expect(scoreReview("Тёмной темы нет").polarity).toBe("neutral")
    expect(scoreReview("Парковки никакой").polarity).toBe("neutral")
    expect(scoreReview("Никаких проблем").polarity).toBe("positive")
    expect(scoreReview("Приложение перестало вылетать").positive).toEqual(["вылетать"])
    expect(scoreReview("Приложение перестало работать").negative).toEqual(["работать"])
  })

  test("a set expression scores as one word, reported as written, and a negator flips it", () => {
    expect(scoreReview("Это деньги на ветер")).toMatchObject({ score: -3, negative: ["деньги на ветер"] })
    expect(scoreReview("Ни хорошо, ни плохо").polarity).toBe("neutral")
    expect(scoreReview("Не стоит своих денег").negative).toEqual(["стоит своих денег"])
  })

  test("every word of the project's vocabulary scores: none shares a stem with a word unscored as neutral", () => {
    const neutral = new Set(NEUTRAL_IN_REVIEWS.map(stemRussian))
    expect(Object.keys(REVIEW_WORDS).filter((word) => neutral.has(stemRussian(word)))).toEqual([])
    expect(
      Object.keys(REVIEW_WORDS).filter((word) => !Object.hasOwn(RUSSIAN.labels, stemRussian(word))),
    ).toEqual([])
  })

  test("a word whose stem is an unrelated word's keeps a key of its own", () => {
    expect(scoreReview("Пришлось ждать").negative).toContain("пришлось")
    expect(scoreReview("Посылки пришли").polarity).toBe("neutral")
  })

  test("a review that says it is neither good nor bad scores 0, whatever else it says", () => {
    expect(scoreReview("Вкусно, но ничего особенного.", "ru")).toMatchObject({ score: 0, positive: [] })
    expect(scoreReview("Вкусно, и порции большие.", "ru").polarity).toBe("positive")
  })

  test("a quotation of a few words scores as a claim that proved untrue, its words nothing", () => {
    expect(scoreReview("Курьер отметил «вручено», а посылки нет")).toMatchObject({
      score: -2,
      negative: ["«вручено»"],
    })
  })

  test("a question scores nothing, nor a bare negation in a review that asks one", () => {
    expect(scoreReview("Подскажите, этот размер нормально сядет?").polarity).toBe("neutral")
    expect(scoreReview("Есть ли тёмная тема? В настройках найти нельзя.").polarity).toBe("neutral")
    expect(scoreReview("В настройках найти нельзя.").polarity).toBe("negative")
  })

  test("after a contrast the rest of the sentence counts double", () => {
    expect(scoreReview("Вкусно, но официант грубый").score).toBe(3 - 2 * 2)
    expect(scoreReview("Официант грубый, но вкусно").score).toBe(-2 + 3 * 2)
    expect(scoreReview("Вкусно, но дорого. Уютно").score).toBe(3 - 2 * 2 + 2)
  })
})

describe("scoreReview in English", () => {
  test("scores AFINN's words as sentiment does", () => {
    expect(scoreReview("A wonderful, lovely cafe")).toEqual({
      score: 7,
      comparative: 7 / 4,
      polarity: "positive",
      positive: ["lovely", "wonderful"],
      negative: [],
      language: "en",
    })
  })

  test("negates up to four words back, with the negatives sentiment misses", () => {
    expect(scoreReview("Not a very good hotel").negative).toEqual(["good", "very"])
    expect(scoreReview("They didn't make us feel stupid").positive).toEqual(["stupid"])
    expect(scoreReview("No problems at all").positive).toEqual(["problems"])
    expect(scoreReview("I wouldn't recommend it").negative).toEqual(["recommend"])
  })

  test("what a service should do scores only when negated", () => {
    expect(scoreReview("The courier never arrived").negative).toEqual(["arrived"])
    expect(scoreReview("The parcel arrived on Tuesday").polarity).toBe("neutral")
  })

  test("a lukewarm word says nothing, and is a complaint when negated", () => {
    expect(scoreReview("The room was fine, breakfast okay").polarity).toBe("neutral")
    expect(scoreReview("The room was not okay")).toMatchObject({ score: -1, negative: ["okay"] })
  })

  test("a bare negation is a complaint, and after `but` the rest of the sentence counts double", () => {
    expect(scoreReview("Nobody tells me anything")).toMatchObject({ score: -1, negative: ["nobody"] })
    expect(scoreReview("Coffee without sugar").polarity).toBe("neutral")
    expect(scoreReview("Tasty, but the waiter was rude").score).toBe(2 - 2 * 2)
  })

  test("a phrase scores as one word, is reported as written, and is negated as a word is", () => {
    expect(scoreReview("Never again")).toMatchObject({ score: -3, negative: ["never again"] })
    expect(scoreReview("We will be back")).toMatchObject({ score: 2, positive: ["be back"] })
    expect(scoreReview("We won't be back")).toMatchObject({ score: -2, negative: ["be back"] })
    expect(scoreReview("Support replied in ten minutes")).toMatchObject({
      score: 1,
      positive: ["in ten minutes"],
    })
    expect(scoreReview("Delivered in 2 days")).toMatchObject({ score: 1, positive: ["in 2 days"] })
  })

  test("a question scores nothing, unless it is asked in exasperation", () => {
    expect(scoreReview("Does the free version have a limit?").polarity).toBe("neutral")
    expect(scoreReview("The room is good. Is the pool good?").score).toBe(3)
    expect(scoreReview("Who designed this terrible menu??").score).toBe(-3)
  })

  test("a short quotation scores −2 and its words nothing; a long one is told speech, scored as words", () => {
    expect(scoreReview('A "free" app with a great UI')).toMatchObject({
      score: -2 + 3,
      positive: ["great"],
      negative: ['"free"'],
    })
    expect(scoreReview("Parcel “in transit” for a week").negative).toEqual(["“in transit”"])
    expect(scoreReview('The agent said "we are happy to help you with this today"').score).toBe(3 + 2)
  })

  test("the last sentence of a review of several counts double", () => {
    expect(scoreReview("Delivery was late. Great food though").score).toBe(-2 + 3 * 2)
    expect(scoreReview("Great food, delivery was late").score).toBe(3 - 2)
  })

  test("a contrast ends a negation's reach: what follows `but` is said, not denied", () => {
    expect(scoreReview("Not cheap but worth it").score).toBe(2 * 2)
    expect(scoreReview("Not cheap and not worth it").score).toBe(-2)
  })

  test("a neutral verdict of several words scores the review 0, though no phrase of the language has it", () => {
    expect(scoreReview("Mixed feelings: the room was dirty, the staff lovely.", "en").score).toBe(0)
    expect(scoreReview("Neither good nor bad.", "en").score).toBe(0)
    expect(scoreReview("The room was dirty, the staff lovely.", "en").score).not.toBe(0)
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
        score: -7,
        comparative: -7 / 7,
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

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { MAX_DOCUMENT_LENGTH, type Task, type TaskRecord } from "../shared/contracts.ts"
import { isoTime, rawChannel, type Stack, startStack, taskBody } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("documents")
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const postDocument = (body: unknown, query = "") =>
  fetch(stack.url(`/polarities/documents${query}`), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  })

describe("POST /polarities/documents scores a document sentence by sentence", () => {
  test("gives each sentence its score and polarity, and the totals", async () => {
    const document = "I love this phone. The battery is awful! It arrived on Tuesday."
    const res = await postDocument({ document }, "?wait=10")
    expect(res.status).toBe(200)
    const task = await taskBody(res)
    expect(task).toEqual({
      task_id: expect.any(String),
      kind: "document:sentences",
      status: "SUCCESS",
      result: {
        score: 0,
        polarity: "neutral",
        sentence_counts: { positive: 1, negative: 1, neutral: 1 },
        language: "en",
        sentences: [
          {
            text: "I love this phone.",
            score: 3,
            comparative: 3 / 4,
            polarity: "positive",
            positive: ["love"],
            negative: [],
          },
          {
            text: "The battery is awful!",
            score: -3,
            comparative: -3 / 4,
            polarity: "negative",
            positive: [],
            negative: ["awful"],
          },
          {
            text: "It arrived on Tuesday.",
            score: 0,
            comparative: 0,
            polarity: "neutral",
            positive: [],
            negative: [],
          },
        ],
      },
      error: null,
      attempts: 1,
      group_id: null,
      submitted_at: isoTime,
      started_at: isoTime,
      finished_at: isoTime,
    } satisfies TaskRecord)
    expect(res.headers.get("location")).toBe(`/polarities/tasks/${task.task_id}`)
  })

  test("detects a Russian document from its whole text and scores every sentence in Russian", async () => {
    const document = "Купил iPhone. Ужасный сервис, всё сломано. Очень грустно!"
    const task = await taskBody(await postDocument({ document }, "?wait=10"))
    expect(task.result).toMatchObject({
      language: "ru",
      score: -7,
      polarity: "negative",
      sentence_counts: { positive: 0, negative: 2, neutral: 1 },
      sentences: [
        { text: "Купил iPhone.", polarity: "neutral" },
        { text: "Ужасный сервис, всё сломано.", polarity: "negative", negative: ["сломано", "ужасный"] },
        { text: "Очень грустно!", polarity: "negative", negative: ["грустно"] },
      ],
    })
  })

  test("answers 202 and the task can be read like any other", async () => {
    const res = await postDocument({ document: "Fine. Good." })
    expect(res.status).toBe(202)
    expect(await res.json()).toEqual({ task_id: expect.any(String), status: "PENDING" })
  })
})

describe("the task name's prefix picks the queue", () => {
  test("a review goes to the polarity queue and a document to the default queue", async () => {
    await using amqp = await rawChannel()
    const { name } = await amqp.channel.queueDeclare("", { exclusive: true, autoDelete: true })
    for (const route of ["polarity", "default"])
      await amqp.channel.queueBind(name, stack.names.tasksExchange, route)
    const copies: { routingKey: string; task: Task }[] = []
    // Each work-queue message carries the tasks of one turn; these two are sent one after the other.
    const got = Promise.withResolvers<void>()
    await amqp.channel.basicConsume(name, { noAck: true }, (msg) => {
      const { tasks } = JSON.parse(msg.bodyString() ?? "") as { tasks: Task[] }
      for (const task of tasks) copies.push({ routingKey: msg.routingKey, task })
      if (copies.length === 2) got.resolve()
    })
    await fetch(stack.url("/polarities"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ review: "nice" }),
    })
    await postDocument({ document: "Nice. Very nice." })
    await got.promise
    expect(copies.map(({ routingKey, task }) => [routingKey, task.kind])).toEqual([
      ["polarity", "polarity:review"],
      ["default", "document:sentences"],
    ])
  })
})

describe("POST /polarities/documents rejects bad input with problem+json", () => {
  const cases: [string, unknown, RegExp][] = [
    ["a missing document", {}, /^document: /],
    ["a document that is not a string", { document: 42 }, /^document: document must be a string$/],
    ["an empty document", { document: " \n " }, /^document: document must not be empty$/],
    [
      "an over-long document",
      { document: "Good. ".repeat(MAX_DOCUMENT_LENGTH / 6 + 1) },
      new RegExp(`^document: document must be at most ${MAX_DOCUMENT_LENGTH} characters$`),
    ],
    [
      "an unknown language",
      { document: "Gut.", language: "de" },
      /^language: language must be one of "en", "ru"/,
    ],
    ["a body that is not an object", ["Good."], /must be a JSON object with a "document" string/],
  ]
  for (const [label, body, detail] of cases) {
    test(`rejects ${label} with 422`, async () => {
      const res = await postDocument(body)
      expect(res.headers.get("content-type")).toBe("application/problem+json")
      expect(await res.json()).toEqual({
        type: "about:blank",
        title: "Unprocessable Entity",
        status: 422,
        detail: expect.stringMatching(detail),
      })
    })
  }
})

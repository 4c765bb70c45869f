import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { PolarityReport, PolarityResult, TaskRecord } from "../shared/contracts.ts"
import { expectProblem, type Stack, startStack, taskBody, waitForFinal } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("reports", { SCHEDULER_TICK_MS: "50" })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const post = (path: string, body: unknown) =>
  fetch(stack.url(path), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  })

const REVIEWS = [
  { review: "Good, good and wonderful!", language: "en" },
  { review: "Awful. Bad, bad and sad.", language: "en" },
  { review: "The parcel came on Tuesday", language: "en" },
  { review: "Отличный, хороший сервис", language: "ru" },
  { review: "Ужасный сервис", language: "ru" },
]

/** What the report should say about these tasks, added up here from their own results. */
function expectedReport(records: TaskRecord[]) {
  const results = records.map((record) => record.result as PolarityResult)
  const counts = { positive: 0, negative: 0, neutral: 0 }
  const languages: Record<string, typeof counts> = {}
  const words = { positive: new Map<string, number>(), negative: new Map<string, number>() }
  for (const result of results) {
    counts[result.polarity]++
    languages[result.language] ??= { positive: 0, negative: 0, neutral: 0 }
    const language = languages[result.language]
    if (language) language[result.polarity]++
    for (const side of ["positive", "negative"] as const)
      for (const word of result[side]) words[side].set(word, (words[side].get(word) ?? 0) + 1)
  }
  const top = (map: Map<string, number>) =>
    [...map]
      .toSorted(([a, m], [b, n]) => n - m || a.localeCompare(b))
      .map(([word, count]) => ({ word, count }))
  const mean = results.reduce((sum, r) => sum + r.score, 0) / results.length
  return { counts, languages, mean, top_positive: top(words.positive), top_negative: top(words.negative) }
}

describe("report:polarity", () => {
  let report: PolarityReport
  let reportTaskId = ""

  test("adds up the reviews scored in its range: counts per polarity and language, mean score, top words", async () => {
    const from = new Date(Date.now() - 1).toISOString()
    const ids: string[] = []
    for (const body of REVIEWS) ids.push((await taskBody(await post("/polarities", body))).task_id)
    const records = await Promise.all(ids.map((id) => waitForFinal(stack, id)))
    expect(records.map((r) => r.status)).toEqual(REVIEWS.map(() => "SUCCESS"))
    const to = new Date(Date.now() + 1).toISOString()

    const res = await post("/polarities/reports?wait=20", { from, to })
    expect(res.status).toBe(200)
    const done = await taskBody(res)
    expect([done.kind, done.status]).toEqual(["report:polarity", "SUCCESS"])
    report = done.result as PolarityReport
    reportTaskId = done.task_id
    const expected = expectedReport(records)
    expect(report).toEqual({
      from,
      to,
      tasks: REVIEWS.length,
      counts: expected.counts,
      languages: expected.languages,
      mean_score: Math.round(expected.mean * 1000) / 1000,
      top_positive: expected.top_positive.slice(0, 10),
      top_negative: expected.top_negative.slice(0, 10),
    })
    // The figures themselves, as the reviews were written to score.
    expect(report.counts).toEqual({ positive: 2, negative: 2, neutral: 1 })
    expect(Object.keys(report.languages)).toEqual(["en", "ru"])
    expect(report.top_positive[0]).toEqual({ word: "good", count: 2 })
    expect(report.top_negative[0]).toEqual({ word: "bad", count: 2 })
  })

  test("a window of the last hour covers the same tasks; the latest report is answered by its own route", async () => {
    const res = await post("/polarities/reports?wait=20", { window: "hour" })
    const hourly = await taskBody(res)
    expect(hourly.status).toBe("SUCCESS")
    const result = hourly.result as PolarityReport
    expect([result.tasks, result.counts]).toEqual([report.tasks, report.counts])
    expect(Date.parse(result.to) - Date.parse(result.from)).toBe(3_600_000)
    const latest = await fetch(stack.url("/polarities/reports/latest")).then(taskBody)
    expect(latest.task_id).toBe(hourly.task_id)
    expect(latest.task_id).not.toBe(reportTaskId)
  })

  test("a schedule submits an hourly report (here every second)", async () => {
    const res = await post("/schedules", {
      id: "reports",
      every: 1,
      task: { kind: "report:polarity", window: "hour" },
    })
    expect(res.status).toBe(201)
    try {
      for (const deadline = Date.now() + 15_000; ; await Bun.sleep(50)) {
        const schedule = (await fetch(stack.url("/schedules/reports")).then((r) => r.json())) as {
          last_task_id: string | null
        }
        const latest = await fetch(stack.url("/polarities/reports/latest")).then(taskBody)
        if (schedule.last_task_id && latest.task_id === schedule.last_task_id) {
          expect((latest.result as PolarityReport).tasks).toBeGreaterThanOrEqual(REVIEWS.length)
          break
        }
        if (Date.now() > deadline) throw new Error("no scheduled report succeeded in time")
      }
    } finally {
      await fetch(stack.url("/schedules/reports"), { method: "DELETE" })
    }
  })

  describe("bad report requests are a 422 problem naming what is wrong", () => {
    const cases: [string, unknown, string | RegExp][] = [
      [
        "neither window nor a range",
        {},
        'a report needs window ("hour" or "day"), or from and to (RFC 3339 times)',
      ],
      [
        "a window and a range",
        { window: "hour", from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z" },
        "give window, or from and to, not both",
      ],
      ["an unknown window", { window: "week" }, 'window: window must be "hour" or "day", not "week"'],
      [
        "from after to",
        { from: "2026-01-02T00:00:00Z", to: "2026-01-01T00:00:00Z" },
        "from: 2026-01-02T00:00:00Z is not before to: 2026-01-01T00:00:00Z",
      ],
      [
        "a range over 31 days",
        { from: "2026-01-01T00:00:00Z", to: "2026-03-01T00:00:00Z" },
        "from 2026-01-01T00:00:00Z to 2026-03-01T00:00:00Z is longer than 31 days",
      ],
      [
        "a time without a zone",
        { from: "2026-01-01T00:00:00", to: "2026-01-02T00:00:00Z" },
        'from: from must be an RFC 3339 time with a time zone, such as "2030-01-01T09:00:00Z"',
      ],
    ]
    for (const [what, body, detail] of cases) {
      test(what, async () => {
        await expectProblem(await post("/polarities/reports", body), 422, detail)
      })
    }
  })
})

describe("GET /polarities/reports/latest", () => {
  test("is a 404 problem before any report has succeeded", async () => {
    await using other = await startStack("reports-none")
    await expectProblem(
      await fetch(other.url("/polarities/reports/latest")),
      404,
      "no polarity report has succeeded yet",
    )
  })
})

import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { MAX_REVIEW_LENGTH } from "../shared/contracts.ts"
import { expectProblem, type Stack, startStack } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("http-errors", { MAX_BODY_BYTES: String(64 * 1024) })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const post = (body: string | Uint8Array, contentType = "application/json", query = "") =>
  fetch(stack.url(`/polarities${query}`), { method: "POST", headers: { "content-type": contentType }, body })

describe("POST /polarities rejects bad input with problem+json", () => {
  test("rejects invalid JSON with 400", async () => {
    await expectProblem(await post('{"review": "unterminated'), 400, /not valid JSON/)
  })

  test("rejects a missing review with 422", async () => {
    await expectProblem(await post("{}"), 422, /review/)
  })

  test("rejects a non-string review with 422", async () => {
    await expectProblem(await post('{"review": 42}'), 422, /review must be a string/)
  })

  test("rejects a JSON body that is not an object with 422", async () => {
    await expectProblem(await post('["a review"]'), 422, /must be a JSON object/)
  })

  test("rejects an empty review with 422", async () => {
    await expectProblem(await post('{"review": ""}'), 422, /must not be empty/)
  })

  test("rejects a review of only white space with 422", async () => {
    await expectProblem(await post('{"review": "  \\n\\t "}'), 422, /must not be empty/)
  })

  test("rejects an over-long review with 422", async () => {
    const review = "bad ".repeat(MAX_REVIEW_LENGTH / 4 + 1)
    await expectProblem(
      await post(JSON.stringify({ review })),
      422,
      new RegExp(`at most ${MAX_REVIEW_LENGTH}`),
    )
  })

  test("rejects a wrong content type with 415", async () => {
    await expectProblem(await post('{"review": "good"}', "text/plain"), 415, /application\/json/)
  })

  test("rejects a form post with 415", async () => {
    await expectProblem(
      await post("review=good", "application/x-www-form-urlencoded"),
      415,
      /application\/json/,
    )
  })

  test("rejects an oversized body with 413", async () => {
    const body = JSON.stringify({ review: "x".repeat(70 * 1024) })
    await expectProblem(await post(body), 413, /larger than 65536 bytes/)
  })

  test("rejects an oversized chunked body with 413", async () => {
    const chunk = new TextEncoder().encode("x".repeat(16 * 1024))
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"review": "'))
        for (let i = 0; i < 6; i++) controller.enqueue(chunk)
        controller.enqueue(new TextEncoder().encode('"}'))
        controller.close()
      },
    })
    const res = await fetch(stack.url("/polarities"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: stream,
    })
    await expectProblem(res, 413, /larger than/)
  })

  test("rejects a body of many megabytes with the same 413 problem, timed like every answer", async () => {
    for (const path of ["/polarities", "/polarities/batch", "/polarities/tasks/lookup"]) {
      const res = await fetch(stack.url(path), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ review: "x".repeat(3 * 1024 * 1024) }),
      })
      expect(res.headers.get("server-timing")).toMatch(/^gateway;dur=/)
      await expectProblem(res, 413, /larger than \d+ bytes/)
    }
  })

  test("rejects a wait over 30 seconds with 422", async () => {
    await expectProblem(await post('{"review": "good"}', "application/json", "?wait=31"), 422, /wait must be/)
  })

  test("rejects a wait that is not a number with 422", async () => {
    await expectProblem(
      await post('{"review": "good"}', "application/json", "?wait=soon"),
      422,
      /wait must be/,
    )
  })
})

describe("other routes answer problem+json", () => {
  test("a task id that is not a UUID is 404", async () => {
    await expectProblem(await fetch(stack.url("/polarities/tasks/not-a-uuid")), 404, /task ids are UUIDs/)
  })

  test("an unknown route is 404", async () => {
    await expectProblem(await fetch(stack.url("/nope")), 404, /no route for GET \/nope/)
  })
})

describe("a trailing slash names the same resource", () => {
  test("POST /polarities/, the seed app's path, takes a review", async () => {
    const res = await fetch(stack.url("/polarities/"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ review: "Lovely!" }),
    })
    expect(res.status).toBe(202)
    expect(await res.json()).toEqual({ task_id: expect.any(String), status: "PENDING" })
  })

  test("a GET with a trailing slash is redirected to the address without it, query kept", async () => {
    for (const path of ["/docs/", "/dashboard/", "/polarities/tasks/?status=SUCCESS"]) {
      const res = await fetch(stack.url(path), { redirect: "manual" })
      expect(res.status).toBe(301)
      expect(res.headers.get("location")).toBe(stack.url(path.replace("/?", "?").replace(/\/$/, "")))
    }
    const page = await fetch(stack.url("/docs/"))
    expect(page.status).toBe(200)
    expect(page.headers.get("content-type")).toStartWith("text/html")
  })
})

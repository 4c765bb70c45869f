import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { postBody, type Stack, startStack } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("language")
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

describe("POST /polarities with a language", () => {
  test.each([["en"], ["ru"]])("accepts the language %p", async (language) => {
    const res = await postBody(stack, { review: "Lovely!", language })
    expect(res.status).toBe(202)
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

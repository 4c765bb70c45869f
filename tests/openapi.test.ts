import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { toJsonSchema } from "@valibot/to-json-schema"
import type * as v from "valibot"
import {
  FlakyTaskInput,
  LookupTasks,
  ProblemDetails,
  ScheduleInput,
  SchedulePatch,
  SubmitBatch,
  SubmitDocument,
  SubmitReport,
  SubmitReview,
  TaskRecord,
} from "../shared/contracts.ts"
import { type Stack, startStack } from "./support.ts"

let stack: Stack
beforeAll(async () => {
  stack = await startStack("openapi", { ENABLE_TEST_TASKS: "true" })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

interface Operation {
  requestBody?: { content: Record<string, { schema: { $ref: string } }> }
  responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }> }>
}
interface OpenApi {
  openapi: string
  info: { title: string }
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, unknown> }
}

async function openApi(): Promise<OpenApi> {
  const res = await fetch(stack.url("/openapi.json"))
  expect(res.status).toBe(200)
  expect(res.headers.get("content-type")).toStartWith("application/json")
  return (await res.json()) as OpenApi
}

/** What the valibot schema converts to, as the test reads the conversion rules: the doc must hold exactly this. */
function jsonSchemaOf(schema: v.GenericSchema, typeMode: "input" | "output") {
  const ignoreActions = typeMode === "input" ? ["trim", "check", "raw_check", "finite"] : ["finite"]
  const { $schema: _, ...json } = toJsonSchema(schema, { target: "draft-2020-12", typeMode, ignoreActions })
  return json
}

const operations = (doc: OpenApi) =>
  Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, operation]) => ({ path, method, operation })),
  )

describe("GET /openapi.json", () => {
  test("is an OpenAPI 3.1 document of this API", async () => {
    const doc = await openApi()
    expect(doc.openapi).toBe("3.1.0")
    expect(doc.info.title).toBe("Sentiment polarity API")
  })

  test("documents every route the gateway serves, and no other", async () => {
    const doc = await openApi()
    const served = stack.gateway.app.routes
      .filter((route) => route.method !== "ALL")
      .map((route) => `${route.method} ${route.path.replace(/:(\w+)/g, "{$1}")}`)
    const documented = operations(doc).map(({ path, method }) => `${method.toUpperCase()} ${path}`)
    expect(documented.toSorted()).toEqual([...new Set(served)].toSorted())
    expect(documented).toContain("POST /test/flaky")
  })

  test("request bodies are the JSON Schema generated from the valibot schemas that validate them", async () => {
    const doc = await openApi()
    const validators: Record<string, v.GenericSchema> = {
      SubmitReview,
      SubmitDocument,
      SubmitBatch,
      LookupTasks,
      FlakyTaskInput,
      ScheduleInput,
      SchedulePatch,
      SubmitReport,
    }
    const bodies = operations(doc).flatMap(({ operation }) =>
      Object.values(operation.requestBody?.content ?? {}).map((media) => media.schema.$ref),
    )
    expect(bodies.length).toBeGreaterThan(0)
    for (const ref of bodies) {
      const name = ref.replace("#/components/schemas/", "")
      const validator = validators[name]
      if (!validator) throw new Error(`the test does not know the validator of ${name}`)
      expect(doc.components.schemas[name]).toEqual(jsonSchemaOf(validator, "input"))
    }
  })

  test("responses name schemas that exist, and the task record and problem are the valibot ones", async () => {
    const doc = await openApi()
    expect(doc.components.schemas.TaskRecord).toEqual(jsonSchemaOf(TaskRecord, "output"))
    expect(doc.components.schemas.ProblemDetails).toEqual(jsonSchemaOf(ProblemDetails, "output"))
    for (const { path, method, operation } of operations(doc)) {
      for (const [status, response] of Object.entries(operation.responses)) {
        for (const [mediaType, { schema }] of Object.entries(response.content ?? {})) {
          const name = schema.$ref?.replace("#/components/schemas/", "")
          if (name) expect(doc.components.schemas).toHaveProperty(name)
          // /healthz answers 503 with its own JSON body, for load balancers; every other error is a problem.
          if (Number(status) >= 400 && path !== "/healthz") {
            expect({ path, method, status, mediaType }).toEqual({
              path,
              method,
              status,
              mediaType: "application/problem+json",
            })
          }
        }
      }
    }
  })
})

describe("GET /docs", () => {
  test("serves the interactive docs page with every asset it loads, from the gateway itself", async () => {
    const res = await fetch(stack.url("/docs"))
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toStartWith("text/html")
    const html = await res.text()
    const assets = [...html.matchAll(/(?:href|src)="([^"]+)"/g)].map((match) => match[1] ?? "")
    expect(assets.toSorted()).toEqual([
      "docs/favicon-32x32.png",
      "docs/start.js",
      "docs/swagger-ui-bundle.js",
      "docs/swagger-ui.css",
    ])
    const types: Record<string, string> = {
      "docs/favicon-32x32.png": "image/png",
      "docs/start.js": "text/javascript",
      "docs/swagger-ui-bundle.js": "text/javascript",
      "docs/swagger-ui.css": "text/css",
    }
    for (const asset of assets) {
      const file = await fetch(new URL(asset, res.url))
      expect({ asset, status: file.status }).toEqual({ asset, status: 200 })
      expect(file.headers.get("content-type")).toStartWith(types[asset] ?? "?")
      expect((await file.arrayBuffer()).byteLength).toBeGreaterThan(0)
    }
    const start = await (await fetch(stack.url("/docs/start.js"))).text()
    expect(start).toContain('new URL("openapi.json", document.baseURI)')
  })

  test("an asset it does not have is a 404 problem", async () => {
    const res = await fetch(stack.url("/docs/../../package.json"))
    expect(res.status).toBe(404)
    const other = await fetch(stack.url("/docs/index.html"))
    expect(other.status).toBe(404)
    expect(other.headers.get("content-type")).toBe("application/problem+json")
  })
})

describe("Server-Timing", () => {
  test("every response carries the time spent in the gateway, errors and unknown routes included", async () => {
    const requests: [string, RequestInit?][] = [
      ["/healthz"],
      ["/openapi.json"],
      ["/docs"],
      ["/nope"],
      ["/polarities/tasks/not-a-uuid"],
      ["/polarities", { method: "POST", headers: { "content-type": "text/plain" }, body: "x" }],
      ["/polarities", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }],
      [
        "/polarities",
        { method: "POST", headers: { "content-type": "application/json" }, body: '{"review": "fine"}' },
      ],
    ]
    for (const [path, init] of requests) {
      const res = await fetch(stack.url(path), init)
      await res.body?.cancel()
      expect({ path, timing: res.headers.get("server-timing") }).toEqual({
        path,
        timing: expect.stringMatching(/^gateway;dur=\d+\.\d$/),
      })
    }
  })
})

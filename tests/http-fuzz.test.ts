// Hostile HTTP input, two ways: a table of known attacks and mistakes, each answered with a 4xx problem (never a
// 5xx), and a seeded random fuzzer over every route of the OpenAPI document, so that a route added later is fuzzed
// without anyone writing a case for it. Afterwards every service must be healthy and memory bounded.
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { connect } from "node:net"
import { keyLine, mintKey } from "../services/gateway/api-keys.ts"
import { MAX_BATCH_SIZE } from "../shared/contracts.ts"
import { mulberry32, pick, type Random } from "./random.ts"
import { type Stack, startStack } from "./support.ts"

const alice = mintKey()
const bob = mintKey()
const ops = mintKey()
const ADMIN_TOKEN = "fuzz-admin-token-of-at-least-32-characters"
const MAX_RSS_GROWTH_MB = 200

let stack: Stack
let rssBefore = 0
beforeAll(async () => {
  stack = await startStack("fuzz", {
    API_KEYS: [keyLine("alice", false, alice), keyLine("bob", false, bob), keyLine("ops", true, ops)].join(
      ";",
    ),
    ADMIN_TOKEN,
    RATE_LIMIT_PER_SECOND: "0",
  })
  rssBefore = process.memoryUsage().rss
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const asAlice = { authorization: `Bearer ${alice}` }
const json = { ...asAlice, "content-type": "application/json" }
const TASK = "0199a4b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"

interface Case {
  name: string
  method?: string
  path: string
  headers?: Record<string, string>
  body?: string | Uint8Array | ReadableStream<Uint8Array>
  /** The status expected; any 4xx problem when absent. */
  status?: number
  /** Refused by the HTTP server itself, before any of our code reads the request: a bare 4xx, no body. */
  byServer?: boolean
}

const post = (path: string, body: string | Uint8Array, status?: number): Omit<Case, "name"> => ({
  method: "POST",
  path,
  headers: json,
  body,
  ...(status !== undefined && { status }),
})

/** `depth` nested arrays: JSON's own recursion, which a recursive parser or validator may not survive. */
const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`
const deepObject = (depth: number) => `${'{"review":'.repeat(depth)}"x"${"}".repeat(depth)}`

function chunked(totalBytes: number): ReadableStream<Uint8Array> {
  const chunk = new TextEncoder().encode("x".repeat(64 * 1024))
  let sent = 0
  return new ReadableStream({
    pull(controller) {
      if (sent === 0) controller.enqueue(new TextEncoder().encode('{"review": "'))
      if (sent >= totalBytes) return controller.close()
      controller.enqueue(chunk)
      sent += chunk.length
    },
  })
}

const CASES: Case[] = [
  { name: "broken JSON", ...post("/polarities", '{"review": "unterminated', 400) },
  { name: "an empty body", ...post("/polarities", "", 400) },
  { name: "JSON that is not an object", ...post("/polarities", "null", 422) },
  { name: "a number for the review", ...post("/polarities", '{"review": 42}', 422) },
  { name: "an array for the review", ...post("/polarities", '{"review": ["a"]}', 422) },
  { name: "a review that is an object", ...post("/polarities", '{"review": {"toString": "x"}}', 422) },
  { name: "a deadline as a string", ...post("/polarities", '{"review": "x", "expires_in": "soon"}', 422) },
  { name: "a deadline of 1e400", ...post("/polarities", '{"review": "x", "expires_in": 1e400}', 422) },
  {
    name: "a negative time limit",
    ...post("/polarities/documents", '{"document": "x", "time_limit": -1}', 422),
  },
  {
    name: "a language that is not one",
    ...post("/polarities", '{"review": "x", "language": "__proto__"}', 422),
  },
  { name: "reviews as a string", ...post("/polarities/batch", '{"reviews": "x"}', 422) },
  {
    name: `${MAX_BATCH_SIZE + 1} reviews`,
    ...post("/polarities/batch", JSON.stringify({ reviews: Array(MAX_BATCH_SIZE + 1).fill("x") }), 422),
  },
  { name: "task ids of the wrong type", ...post("/polarities/tasks/lookup", '{"task_ids": [1, null]}', 422) },
  {
    name: "one id 1,000 times (issue 13's 2.4 GB lookup)",
    ...post("/polarities/tasks/lookup", JSON.stringify({ task_ids: Array(1000).fill(TASK) }), 422),
  },
  { name: "a lone surrogate", ...post("/polarities", '{"review": "\\ud800 alone"}', 422) },
  { name: "a NUL character", ...post("/polarities", '{"review": "a\\u0000b"}', 422) },
  { name: "a NUL in a document", ...post("/polarities/documents", '{"document": "a\\u0000b."}', 422) },
  {
    name: "bytes that are not UTF-8",
    ...post("/polarities", new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), 400),
  },
  { name: "10,000-deep arrays", ...post("/polarities", nested(10_000)) },
  { name: "10,000-deep objects", ...post("/polarities", deepObject(10_000)) },
  {
    name: "a prototype key instead of the review",
    ...post("/polarities", '{"__proto__": {"review": "x"}}', 422),
  },
  {
    name: "a constructor key",
    ...post("/polarities", '{"constructor": {"prototype": {"review": "x"}}}', 422),
  },
  {
    name: "a body just over MAX_BODY_BYTES",
    ...post("/polarities", JSON.stringify({ review: "x".repeat(65_536) }), 413),
  },
  { name: "a 10 MB body", ...post("/polarities", "x".repeat(10 * 1024 * 1024), 413) },
  {
    name: "a 10 MB chunked body",
    method: "POST",
    path: "/polarities",
    headers: json,
    body: chunked(10 * 1024 * 1024),
    status: 413,
  },
  {
    name: "a form post",
    ...post("/polarities", "review=x"),
    headers: { ...asAlice, "content-type": "application/x-www-form-urlencoded" },
    status: 415,
  },
  {
    name: "no content type",
    method: "POST",
    path: "/polarities",
    headers: asAlice,
    body: '{"review": "x"}',
    status: 415,
  },
  {
    name: "a 300-character Idempotency-Key",
    ...post("/polarities", '{"review": "x"}', 422),
    headers: { ...json, "idempotency-key": "k".repeat(300) },
  },
  { name: "a wait of Infinity", ...post("/polarities?wait=Infinity", '{"review": "x"}', 422) },
  { name: "a wait of 1e309", ...post("/polarities?wait=1e309", '{"review": "x"}', 422) },
  {
    name: "a status that is a prototype name",
    path: "/polarities/tasks?status=__proto__",
    headers: asAlice,
    status: 422,
  },
  {
    name: "a limit that is not a number",
    path: "/polarities/tasks?limit=constructor",
    headers: asAlice,
    status: 422,
  },
  {
    name: "a cursor that is not ours",
    path: "/polarities/tasks?cursor=%00%ff",
    headers: asAlice,
    status: 422,
  },
  {
    name: "a task id that is not a UUID",
    path: "/polarities/tasks/not-a-uuid",
    headers: asAlice,
    status: 404,
  },
  {
    name: "a 10 KB task id",
    path: `/polarities/tasks/${"a".repeat(10 * 1024)}`,
    headers: asAlice,
    status: 404,
  },
  {
    name: "a 100 KB task id",
    path: `/polarities/tasks/${"a".repeat(100 * 1024)}`,
    headers: asAlice,
    status: 431,
    byServer: true,
  },
  {
    name: "a 100 KB header",
    path: "/polarities/tasks",
    headers: { ...asAlice, "x-big": "a".repeat(100 * 1024) },
    status: 431,
    byServer: true,
  },
  {
    name: "a 10 KB bearer token",
    path: "/polarities/tasks",
    headers: { authorization: `Bearer ${"a".repeat(10 * 1024)}` },
    status: 401,
  },
  {
    name: "a bearer token with a NUL",
    path: "/polarities/tasks",
    headers: { authorization: "Bearer a%00b" },
    status: 401,
  },
  {
    name: "an encoded traversal in a task id",
    path: "/polarities/tasks/..%2f..%2fetc%2fpasswd",
    headers: asAlice,
    status: 404,
  },
  { name: "a traversal in a docs asset", path: "/docs/..%2f..%2fpackage.json", status: 404 },
  {
    name: "a traversal in a dashboard asset",
    path: "/dashboard/assets/..%2f..%2f..%2fpackage.json",
    headers: { authorization: `Bearer ${ops}` },
    status: 404,
  },
  {
    name: "a prototype name as a dashboard asset",
    path: "/dashboard/assets/__proto__",
    headers: { authorization: `Bearer ${ops}` },
    status: 404,
  },
  { name: "a prototype name as a docs asset", path: "/docs/constructor", status: 404 },
  {
    name: "__proto__ as a dead-letter queue",
    path: "/admin/dead-letters/__proto__",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    status: 404,
  },
  {
    name: "hasOwnProperty as a dead-letter queue",
    path: "/admin/dead-letters/hasOwnProperty",
    headers: { authorization: `Bearer ${ops}` },
    status: 404,
  },
  {
    name: "a replay limit of -1",
    method: "POST",
    path: "/admin/dead-letters/failed/replay?limit=-1",
    headers: { authorization: `Bearer ${ops}` },
    status: 422,
  },
  {
    name: "a group id that is not a UUID",
    path: "/polarities/groups/__proto__",
    headers: asAlice,
    status: 404,
  },
  {
    name: "an unknown method on a known path",
    method: "PATCH",
    path: "/polarities",
    headers: asAlice,
    status: 405,
  },
  {
    name: "a cross-site form post",
    ...post(`/polarities/tasks/${TASK}/retry`, "x=1"),
    headers: { ...asAlice, origin: "https://evil.example", "content-type": "text/plain" },
    status: 403,
  },
]

describe("a table of hostile requests: each a 4xx problem, never a 5xx", () => {
  for (const hostile of CASES) {
    test(hostile.name, async () => {
      const { method = "GET", path, headers = {}, body } = hostile
      const res = await fetch(stack.url(path), { method, headers, ...(body !== undefined && { body }) })
      const text = await res.text()
      const seen = { status: res.status, type: res.headers.get("content-type") }
      if (hostile.byServer) {
        expect(seen).toEqual({ status: hostile.status ?? seen.status, type: null })
        return
      }
      expect(seen).toEqual({ status: hostile.status ?? seen.status, type: "application/problem+json" })
      expect(res.status).toBeGreaterThanOrEqual(400)
      expect(res.status).toBeLessThan(500)
      expect(JSON.parse(text)).toEqual({
        type: "about:blank",
        title: expect.any(String),
        status: res.status,
        detail: expect.any(String),
      })
    })
  }

  test("paths a client library would normalise, sent as they are", async () => {
    const paths = [
      "/polarities/tasks/../../../etc/passwd",
      "/docs/../package.json",
      "/dashboard/assets/../../../../package.json",
      "//polarities//tasks",
      "/polarities/tasks/%2e%2e/%2e%2e/",
      "/%00",
      "/polarities/tasks/\u00e9",
    ]
    for (const path of paths) {
      const { status, head } = await rawRequest(
        `GET ${path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${alice}\r\n\r\n`,
      )
      expect({ path, status }).toEqual({ path, status: expect.any(Number) })
      expect(status).toBeGreaterThanOrEqual(400)
      expect(status).toBeLessThan(500)
      if (status !== 400) expect(head).toContain("application/problem+json")
    }
  })

  test("a valid body with prototype keys besides is taken at its word, and pollutes nothing", async () => {
    const res = await fetch(stack.url("/polarities"), {
      method: "POST",
      headers: json,
      body: '{"review": "fine", "__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}}',
    })
    expect(res.status).toBe(202)
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined()
  })
})

describe("a seeded random fuzzer over every route of the OpenAPI document", () => {
  const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
  const count = Number(process.env.FUZZ_COUNT ?? 600)

  test(`${count} random requests answer below 500, problems as problem+json (FUZZ_SEED=${seed})`, async () => {
    console.log(`[fuzz] FUZZ_SEED=${seed} FUZZ_COUNT=${count}`)
    const random = mulberry32(seed)
    const spec = (await (await fetch(stack.url("/openapi.json"))).json()) as OpenApi
    const operations = Object.entries(spec.paths).flatMap(([path, item]) =>
      Object.entries(item).map(([method, operation]) => ({ path, method: method.toUpperCase(), operation })),
    )
    expect(operations.length).toBeGreaterThan(15)
    const taskIds = await submitSome()
    const failures: string[] = []
    const statuses: Record<number, number> = {}
    for (let i = 0; i < count; i++) {
      const op = pick(random, operations)
      const request = randomRequest(random, op, spec, taskIds)
      const res = await fetch(stack.url(request.path), request.init)
      const type = res.headers.get("content-type") ?? ""
      statuses[res.status] = (statuses[res.status] ?? 0) + 1
      // A stream is only opened: its first bytes say nothing more than its status.
      if (type.startsWith("text/event-stream")) await res.body?.cancel()
      else await res.arrayBuffer()
      const problemExpected = res.status >= 400 && res.status !== 431 && res.status !== 413
      if (res.status >= 500 || (problemExpected && type !== "application/problem+json")) {
        failures.push(`${request.init.method} ${request.path} → ${res.status} ${type}`)
      }
      // Alice's tasks and group, named in the path by bob: never his to read or act on.
      const byBob = request.init.headers.authorization === `Bearer ${bob}`
      if (byBob && res.status < 400 && taskIds.some((id) => request.path.includes(id))) {
        failures.push(`bob reached alice's ${request.init.method} ${request.path} → ${res.status}`)
      }
    }
    console.log(`[fuzz] statuses: ${JSON.stringify(statuses)}`)
    expect({ seed, failures }).toEqual({ seed, failures: [] })
    // Past the key check and the validation: some requests were served.
    expect(Object.keys(statuses).some((status) => Number(status) < 300)).toBe(true)
  })
})

describe("afterwards", () => {
  test("every service is healthy and memory stayed bounded", async () => {
    for (const url of [stack.gateway.url, stack.worker.url, stack.store.url]) {
      expect((await fetch(`${url}/healthz`)).status).toBe(200)
    }
    // The fuzzer may have paused a queue, as an admin may: resumed, it runs again.
    for (const queue of ["polarity", "default"]) {
      const resumed = await fetch(stack.url(`/admin/queues/${queue}/resume`), {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      })
      expect(resumed.status).toBe(200)
    }
    const res = await fetch(stack.url("/polarities?wait=10"), {
      method: "POST",
      headers: json,
      body: '{"review": "Still lovely."}',
    })
    expect(res.status).toBe(200)
    const growthMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20
    console.log(
      `[fuzz] RSS of the test process (all three services): ${growthMb.toFixed(0)} MB more than at start`,
    )
    expect(growthMb).toBeLessThan(MAX_RSS_GROWTH_MB)
  })
})

// --- the random requests

interface OpenApi {
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, JsonSchema> }
}
interface Operation {
  parameters?: { name: string; in: "path" | "query" | "header"; schema: JsonSchema }[]
  requestBody?: { content: Record<string, { schema: JsonSchema }> }
}
interface JsonSchema {
  $ref?: string
  type?: string | string[]
  properties?: Record<string, JsonSchema>
  items?: JsonSchema
  enum?: unknown[]
  anyOf?: JsonSchema[]
  oneOf?: JsonSchema[]
}

const ODD_STRINGS = [
  "",
  " ",
  "__proto__",
  "constructor",
  "toString",
  "../../etc/passwd",
  "%2e%2e%2f",
  "\u0000",
  "\ud800",
  "😀",
  "a".repeat(5000),
  "null",
  "-1",
  "1e400",
  "NaN",
  "0x10",
  "<script>alert(1)</script>",
  "' OR 1=1 --",
  "failed",
  "poison",
  "PENDING",
  "SUCCESS",
  "2",
  "0",
]

function randomString(random: Random, taskIds: string[]): string {
  const roll = random()
  if (roll < 0.25 && taskIds.length > 0) return pick(random, taskIds)
  if (roll < 0.35) return crypto.randomUUID()
  if (roll < 0.85) return pick(random, ODD_STRINGS)
  return Array.from({ length: Math.floor(random() * 40) }, () =>
    String.fromCharCode(Math.floor(random() * 0xffff)),
  ).join("")
}

/** A value for a schema: most often of its type (with odd contents), sometimes of any other. */
function randomValue(
  random: Random,
  schema: JsonSchema,
  spec: OpenApi,
  taskIds: string[],
  depth = 0,
): unknown {
  const resolved = schema.$ref ? (spec.components.schemas[schema.$ref.split("/").at(-1) ?? ""] ?? {}) : schema
  if (depth > 4 || random() < 0.15)
    return pick(random, [null, 0, -1, 1e308, true, "x", [], {}, [[[]]], { __proto__: 1 }])
  if (resolved.enum && random() < 0.5) return pick(random, resolved.enum)
  const variants = resolved.anyOf ?? resolved.oneOf
  if (variants) return randomValue(random, pick(random, variants), spec, taskIds, depth + 1)
  const type = Array.isArray(resolved.type) ? pick(random, resolved.type) : resolved.type
  switch (type) {
    case "object": {
      const entries = Object.entries(resolved.properties ?? {}).filter(() => random() < 0.85)
      const value: Record<string, unknown> = {}
      for (const [key, property] of entries)
        value[key] = randomValue(random, property, spec, taskIds, depth + 1)
      if (random() < 0.1) value[pick(random, ODD_STRINGS)] = randomString(random, taskIds)
      return value
    }
    case "array": {
      const length = pick(random, [0, 1, 2, 3, 50, 1001])
      return Array.from({ length }, () => randomValue(random, resolved.items ?? {}, spec, taskIds, depth + 1))
    }
    case "number":
    case "integer":
      return pick(random, [0, 1, -1, 0.5, 3600, 604_801, 1e21, Number.MAX_SAFE_INTEGER + 2])
    case "boolean":
      return random() < 0.5
    default:
      return randomString(random, taskIds)
  }
}

/** Query values are strings; `wait` stays short, so that no request holds the fuzzer for 30 s. */
function randomQueryValue(random: Random, name: string, taskIds: string[]): string {
  if (name === "wait") return pick(random, ["0", "0.01", "-1", "31", "abc", "", "1e309"])
  return randomString(random, taskIds)
}

function randomRequest(
  random: Random,
  { path, method, operation }: { path: string; method: string; operation: Operation },
  spec: OpenApi,
  taskIds: string[],
) {
  const parameters = operation.parameters ?? []
  let url = path
  const query = new URLSearchParams()
  const headers: Record<string, string> = {}
  for (const parameter of parameters) {
    if (parameter.in === "path") {
      const value =
        parameter.schema.enum && random() < 0.3
          ? String(pick(random, parameter.schema.enum))
          : randomString(random, taskIds)
      url = url.replace(`{${parameter.name}}`, encodeURIComponent(value.toWellFormed()))
    } else if (parameter.in === "query" && random() < 0.7) {
      query.set(parameter.name, randomQueryValue(random, parameter.name, taskIds))
    } else if (parameter.in === "header" && random() < 0.5) {
      headers[parameter.name] = randomString(random, taskIds).replace(/[^\x20-\x7e]/g, "?")
    }
  }
  const auth = random()
  if (auth < 0.45) headers.authorization = `Bearer ${alice}`
  else if (auth < 0.6) headers.authorization = `Bearer ${bob}`
  else if (auth < 0.8) headers.authorization = `Bearer ${ops}`
  else if (auth < 0.9) headers.authorization = `Bearer ${pick(random, [mintKey(), ADMIN_TOKEN, "", "x y"])}`
  const bodySchema = operation.requestBody?.content["application/json"]?.schema
  let body: string | undefined
  // A GET or HEAD with a body is something fetch() will not send; the table sends odd requests raw.
  if (bodySchema || (method !== "GET" && random() < 0.1)) {
    const roll = random()
    headers["content-type"] =
      roll < 0.85
        ? "application/json"
        : pick(random, [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/json; charset=latin1",
            "",
          ])
    body =
      random() < 0.85
        ? JSON.stringify(randomValue(random, bodySchema ?? {}, spec, taskIds))
        : pick(random, ["{", "[1,", '{"a":1}x', "\u0000", nested(2000)])
  }
  if (random() < 0.05) headers.origin = "https://evil.example"
  const search = query.size > 0 ? `?${query}` : ""
  return { path: `${url}${search}`, init: { method, headers, ...(body !== undefined && { body }) } }
}

/** A few real tasks (and a group), so that random ids sometimes name things that exist. */
async function submitSome(): Promise<string[]> {
  const res = await fetch(stack.url("/polarities/batch?wait=10"), {
    method: "POST",
    headers: json,
    body: JSON.stringify({ reviews: ["Lovely.", "Awful.", "A table."] }),
  })
  const group = (await res.json()) as {
    group_id: string
    task_ids?: string[]
    results?: { task_id: string }[]
  }
  return [group.group_id, ...(group.task_ids ?? group.results?.map((task) => task.task_id) ?? [])]
}

/** One request exactly as written, over a socket of its own: the status line and headers of the answer. */
function rawRequest(request: string): Promise<{ status: number; head: string }> {
  const url = new URL(stack.url("/"))
  const { promise, resolve, reject } = Promise.withResolvers<{ status: number; head: string }>()
  const socket = connect(Number(url.port), url.hostname, () => socket.write(request))
  let received = ""
  socket.on("data", (chunk) => {
    received += chunk.toString("latin1")
    const end = received.indexOf("\r\n\r\n")
    if (end < 0) return
    socket.destroy()
    resolve({ status: Number(received.slice(9, 12)), head: received.slice(0, end).toLowerCase() })
  })
  socket.on("error", reject)
  socket.setTimeout(10_000, () => {
    socket.destroy()
    reject(new Error(`no answer to ${request.split("\r\n")[0]}`))
  })
  return promise
}

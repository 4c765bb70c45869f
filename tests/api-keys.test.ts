import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ApiKeys, keyLine, mintKey, parseKeys } from "../services/gateway/api-keys.ts"
import { createLogger } from "../shared/log.ts"
import { eventually, expectProblem, type Stack, startStack } from "./support.ts"

const ADMIN_TOKEN = "an-admin-token-of-at-least-32-characters"
const alice = mintKey()
const ops = mintKey()
const carol = mintKey()
const keysDir = mkdtempSync(join(tmpdir(), "polarity-keys-"))
const keysFile = join(keysDir, "api-keys")
const writeKeys = (...lines: string[]) => writeFileSync(keysFile, `# name role digest\n${lines.join("\n")}\n`)

let stack: Stack
beforeAll(async () => {
  writeKeys(keyLine("alice", false, alice), keyLine("ops", true, ops))
  stack = await startStack("api-keys", { API_KEYS_FILE: keysFile, API_KEYS_RELOAD_MS: "100", ADMIN_TOKEN })
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
  rmSync(keysDir, { recursive: true, force: true })
})

const bearer = (key: string) => ({ authorization: `Bearer ${key}` })
const json = { "content-type": "application/json" }
const TASK = "0199a4b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"

/** Every route of the task API, as a client would call it. */
const API_CALLS: [string, string, string?][] = [
  ["POST", "/polarities", '{"review": "good"}'],
  ["POST", "/polarities/documents", '{"document": "Good. Bad."}'],
  ["POST", "/polarities/batch", '{"reviews": ["good"]}'],
  ["GET", `/polarities/groups/${TASK}`],
  ["GET", "/polarities/tasks"],
  ["GET", `/polarities/tasks/${TASK}`],
  ["GET", `/polarities/task/${TASK}`],
  ["POST", "/polarities/tasks/lookup", `{"task_ids": ["${TASK}"]}`],
  ["GET", `/polarities/tasks/${TASK}/events`],
  ["DELETE", `/polarities/tasks/${TASK}`],
  ["POST", `/polarities/tasks/${TASK}/retry`],
  ["GET", "/a/route/added/later"],
]

const call = (method: string, path: string, body?: string, headers: Record<string, string> = {}) =>
  fetch(stack.url(path), { method, headers: { ...json, ...headers }, ...(body && { body }) })

describe("with API keys configured", () => {
  test("every task route, and any route not named public, is a 401 problem without a key", async () => {
    for (const [method, path, body] of API_CALLS) {
      const res = await call(method, path, body)
      expect(res.headers.get("www-authenticate")).toBe('Bearer realm="api"')
      await expectProblem(res, 401, "this API needs the header Authorization: Bearer <API key>")
    }
  })

  test("an unknown or malformed key is a 401 problem", async () => {
    const unknown = await call("GET", "/polarities/tasks", undefined, bearer(mintKey()))
    expect(unknown.headers.get("www-authenticate")).toBe('Bearer realm="api"')
    await expectProblem(unknown, 401, "this API key is not valid (unknown, or revoked)")
    const malformed = await call("GET", "/polarities/tasks", undefined, { authorization: "Bearer a b" })
    await expectProblem(malformed, 401, "the Authorization header must be Bearer <API key>")
    const basic = await call("GET", "/polarities/tasks", undefined, { authorization: `Basic ${btoa("a:b")}` })
    await expectProblem(basic, 401, "the Authorization header must be Bearer <API key>")
  })

  test("a valid key is served", async () => {
    const res = await call("POST", "/polarities?wait=5", '{"review": "Lovely!"}', bearer(alice))
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ status: "SUCCESS" })
    const missing = await call("GET", `/polarities/tasks/${TASK}`, undefined, bearer(alice))
    await expectProblem(missing, 404, `no task with id ${TASK}`)
  })

  test("the health check, metrics and API docs need no key", async () => {
    for (const path of ["/healthz", "/metrics", "/openapi.json", "/docs", "/docs/start.js"]) {
      expect({ path, status: (await fetch(stack.url(path))).status }).toEqual({ path, status: 200 })
    }
    const slash = await fetch(stack.url("/docs/"), { redirect: "manual" })
    expect(slash.status).toBe(301)
  })

  test("a key added to the file is accepted, and one removed is refused, without a restart", async () => {
    const refused = await call("GET", "/polarities/tasks", undefined, bearer(carol))
    expect(refused.status).toBe(401)
    writeKeys(keyLine("alice", false, alice), keyLine("ops", true, ops), keyLine("carol", false, carol))
    await eventually(async () => {
      expect((await call("GET", "/polarities/tasks", undefined, bearer(carol))).status).toBe(200)
    })
    writeKeys(keyLine("ops", true, ops), keyLine("carol", false, carol))
    await eventually(async () => {
      expect((await call("GET", "/polarities/tasks", undefined, bearer(alice))).status).toBe(401)
    })
    expect((await call("GET", "/polarities/tasks", undefined, bearer(carol))).status).toBe(200)
    writeKeys(keyLine("alice", false, alice), keyLine("ops", true, ops))
    await eventually(async () => {
      expect((await call("GET", "/polarities/tasks", undefined, bearer(alice))).status).toBe(200)
    })
  })

  test("/admin takes ADMIN_TOKEN or an admin key; a user key is a 403, none a 401", async () => {
    const path = "/admin/dead-letters/failed"
    expect((await call("GET", path, undefined, bearer(ADMIN_TOKEN))).status).toBe(200)
    expect((await call("GET", path, undefined, bearer(ops))).status).toBe(200)
    await expectProblem(
      await call("GET", path, undefined, bearer(alice)),
      403,
      'the API key "alice" is not an admin key',
    )
    const none = await call("GET", path)
    expect(none.headers.get("www-authenticate")).toBe('Bearer realm="admin"')
    await expectProblem(none, 401, /admin endpoints need Authorization: Bearer/)
    await expectProblem(await call("GET", path, undefined, bearer(`${ADMIN_TOKEN}x`)), 401, /admin endpoints/)
  })

  test("the dashboard takes an admin key; a user key is a 403, none a 401", async () => {
    for (const path of ["/dashboard", "/dashboard/api/overview", "/dashboard/api/tasks"]) {
      expect((await call("GET", path, undefined, bearer(ops))).status).toBe(200)
      await expectProblem(
        await call("GET", path, undefined, bearer(alice)),
        403,
        'the dashboard shows every task: the API key "alice" is not an admin key',
      )
      await expectProblem(
        await call("GET", path),
        401,
        "the dashboard needs Authorization: Bearer <admin API key>",
      )
    }
  })
})

describe("the keys themselves", () => {
  test("npm run api-key mints a key and the line that admits it", async () => {
    const proc = Bun.spawn([process.execPath, "services/gateway/api-keys.ts", "reporting", "admin"], {
      stdout: "pipe",
    })
    const output = await new Response(proc.stdout).text()
    expect(await proc.exited).toBe(0)
    const key = /key .*: (spk_[\w-]{43})$/m.exec(output)?.[1] ?? ""
    const line = /line .*: +(reporting admin sha256:[0-9a-f]{64})$/m.exec(output)?.[1] ?? ""
    const keys = ApiKeys.load({ API_KEYS: line, API_KEYS_RELOAD_MS: 1000 }, createLogger("test", "error"))
    expect(keys?.verify(key)).toEqual({ name: "reporting", admin: true })
    expect(keys?.verify(mintKey())).toBeUndefined()
  })

  test("a file that turns bad keeps the keys read before, and says why", async () => {
    const dir = mkdtempSync(join(tmpdir(), "polarity-keys-"))
    const file = join(dir, "api-keys")
    const key = mintKey()
    writeFileSync(file, keyLine("alice", false, key))
    const errors: unknown[] = []
    const log = {
      ...createLogger("test", "error"),
      error: (msg: string, fields?: object) => errors.push({ msg, ...fields }),
    }
    const keys = ApiKeys.load({ API_KEYS_FILE: file, API_KEYS_RELOAD_MS: 100 }, log)
    try {
      writeFileSync(file, "alice user not-a-digest\n")
      await eventually(async () => expect(errors).toHaveLength(1))
      expect(errors[0]).toEqual({
        msg: "api keys not reloaded; the keys read before stay in force",
        err: `${file} line 1: expected "<name> <user|admin> sha256:<64 hex digits>"`,
        keys: 1,
      })
      expect(keys?.verify(key)).toEqual({ name: "alice", admin: false })
    } finally {
      keys?.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test("a file holds digests only, and a bad line names itself", () => {
    const key = mintKey()
    expect(keyLine("alice", false, key)).not.toContain(key)
    expect(() => parseKeys("alice user sha256:abc", "keys")).toThrow(
      'keys line 1: expected "<name> <user|admin> sha256:<64 hex digits>"',
    )
    const digest = "a".repeat(64)
    expect(() => parseKeys(`alice root sha256:${digest}`, "keys")).toThrow(
      "keys line 1: the role is user or admin",
    )
    expect(() => parseKeys(`a/b user sha256:${digest}`, "keys")).toThrow(
      "keys line 1: a name is 1-64 letters",
    )
    expect(() => parseKeys(`a user sha256:${digest}; b user sha256:${digest}`, "API_KEYS")).toThrow(
      "API_KEYS line 2: this key is listed twice",
    )
  })
})

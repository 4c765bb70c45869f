import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { loadGatewayConfig } from "../services/gateway.ts"
import { ConfigError } from "../shared/config.ts"
import { expectProblem, type Stack, startStack } from "./support.ts"

const DASHBOARD_TOKEN = "a-dashboard-token-for-hygiene"
let stack: Stack
/** Gateways of the same stack with other settings; the gateway scales freely, so they share its broker prefix. */

beforeAll(async () => {
  stack = await startStack("hygiene")
})
afterAll(async () => {
  await stack?.[Symbol.asyncDispose]()
})

const TASK = "0199a4b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"

describe("methods", () => {
  test("a known path asked with another method is a 405 problem with Allow", async () => {
    const cases: [string, string, string][] = [
      ["PUT", "/polarities", "POST, OPTIONS"],
      ["GET", "/polarities", "POST, OPTIONS"],
      ["PATCH", `/polarities/tasks/${TASK}`, "GET, HEAD, DELETE, OPTIONS"],
      ["DELETE", "/healthz", "GET, HEAD, OPTIONS"],
      ["GET", "/admin/dead-letters/failed/replay", "POST, OPTIONS"],
    ]
    for (const [method, path, allow] of cases) {
      const res = await fetch(stack.url(path), { method })
      expect({ method, path, allow: res.headers.get("allow") }).toEqual({ method, path, allow })
      await expectProblem(res, 405, `${path} answers ${allow}, not ${method}`)
    }
  })

  test("OPTIONS on a known path is 204 with Allow; on an unknown one a 404", async () => {
    const res = await fetch(stack.url(`/polarities/tasks/${TASK}/retry`), { method: "OPTIONS" })
    expect(res.status).toBe(204)
    expect(res.headers.get("allow")).toBe("POST, OPTIONS")
    expect(res.headers.get("access-control-allow-origin")).toBeNull()
    await expectProblem(
      await fetch(stack.url("/nope"), { method: "OPTIONS" }),
      404,
      "no route for OPTIONS /nope",
    )
  })
})

describe("cross-site requests", () => {
  const evil = { origin: "https://evil.example" }

  test("a form post from another site's page changes nothing: 403", async () => {
    const form = { ...evil, "content-type": "application/x-www-form-urlencoded" }
    for (const [method, path] of [
      ["POST", "/polarities"],
      ["POST", `/polarities/tasks/${TASK}/retry`],
      ["DELETE", `/polarities/tasks/${TASK}`],
      ["POST", "/admin/dead-letters/failed/replay"],
    ] as const) {
      const res = await fetch(stack.url(path), {
        method,
        headers: form,
        body: method === "POST" ? "review=x" : null,
      })
      await expectProblem(
        res,
        403,
        `a ${method} from the origin https://evil.example is refused: it is not this API's origin or one of CORS_ORIGINS`,
      )
    }
  })

  test("JSON from another site is refused too; the API's own origin and clients without Origin are served", async () => {
    const body = '{"review": "good"}'
    const post = (headers: Record<string, string>) =>
      fetch(stack.url("/polarities"), {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body,
      })
    expect((await post(evil)).status).toBe(403)
    expect((await post({ origin: new URL(stack.url("/")).origin })).status).toBe(202)
    expect((await post({})).status).toBe(202)
    // A form body from the API's own origin (or no browser at all) is still not JSON.
    await expectProblem(
      await fetch(stack.url("/polarities"), {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "review=good",
      }),
      415,
      /application\/json/,
    )
  })

  test("there is no CORS policy unless CORS_ORIGINS names origins", async () => {
    const preflight = {
      method: "OPTIONS",
      headers: { origin: "https://app.example", "access-control-request-method": "POST" },
    }
    const closed = await fetch(stack.url("/polarities"), preflight)
    expect(closed.headers.get("access-control-allow-origin")).toBeNull()
    const url = await stack.gatewayWith({ CORS_ORIGINS: "https://app.example, https://ops.example" })
    const open = await fetch(url("/polarities"), preflight)
    expect(open.status).toBe(204)
    expect(open.headers.get("access-control-allow-origin")).toBe("https://app.example")
    expect(open.headers.get("access-control-allow-headers")).toContain("authorization")
    const other = await fetch(url("/polarities"), {
      ...preflight,
      headers: { ...preflight.headers, origin: "https://evil.example" },
    })
    expect(other.headers.get("access-control-allow-origin")).toBeNull()
    const post = await fetch(url("/polarities"), {
      method: "POST",
      headers: { origin: "https://app.example", "content-type": "application/json" },
      body: '{"review": "good"}',
    })
    expect(post.status).toBe(202)
    expect(post.headers.get("access-control-allow-origin")).toBe("https://app.example")
    expect(post.headers.get("access-control-expose-headers")).toContain("location")
  })

  test("CORS_ORIGINS takes origins only", () => {
    expect(() => loadGatewayConfig({ CORS_ORIGINS: "https://app.example/path" })).toThrow(ConfigError)
    expect(
      loadGatewayConfig({ CORS_ORIGINS: " https://a.example ,http://b.example:8080" }).CORS_ORIGINS,
    ).toEqual(["https://a.example", "http://b.example:8080"])
  })
})

describe("headers", () => {
  test("every answer says nosniff, no referrer and no framing; the HTML pages forbid framing in their CSP", async () => {
    const answers = [
      await fetch(stack.url("/healthz")),
      await fetch(stack.url(`/polarities/tasks/${TASK}`)),
      await fetch(stack.url("/nope")),
      await fetch(stack.url("/docs")),
      await fetch(stack.url("/dashboard")),
    ]
    for (const res of answers) {
      expect({
        url: res.url,
        nosniff: res.headers.get("x-content-type-options"),
        referrer: res.headers.get("referrer-policy"),
        frames: res.headers.get("x-frame-options"),
      }).toEqual({ url: res.url, nosniff: "nosniff", referrer: "no-referrer", frames: "DENY" })
    }
    for (const res of answers.slice(3)) {
      expect(res.headers.get("content-type")).toStartWith("text/html")
      expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'")
    }
  })

  test("the dashboard cookie is Secure over TLS, as a trusted proxy reports it", async () => {
    const login = (url: (path: string) => string, headers: Record<string, string> = {}) =>
      fetch(url(`/dashboard?token=${DASHBOARD_TOKEN}`), { redirect: "manual", headers })
    const direct = await stack.gatewayWith({ DASHBOARD_TOKEN })
    const behindProxy = await stack.gatewayWith({ DASHBOARD_TOKEN, TRUST_PROXY: "true" })
    const https = { "x-forwarded-proto": "https" }
    const cookie = async (res: Response) => {
      expect(res.status).toBe(303)
      return res.headers.get("set-cookie") ?? ""
    }
    expect(await cookie(await login(direct))).not.toContain("Secure")
    // Without TRUST_PROXY the header is anyone's to send, and says nothing.
    expect(await cookie(await login(direct, https))).not.toContain("Secure")
    expect(await cookie(await login(behindProxy, https))).toContain("Secure")
    expect(await cookie(await login(behindProxy))).not.toContain("Secure")
  })
})

describe("admin endpoints", () => {
  test("a queue name that is a property of every object is a 404, never a 500", async () => {
    for (const name of ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"]) {
      const res = await fetch(stack.url(`/admin/dead-letters/${name}`))
      await expectProblem(res, 404, "dead-letter queues are failed and poison")
    }
  })

  test("are open without ADMIN_TOKEN only on a loopback-only gateway; elsewhere they are off", async () => {
    expect((await fetch(stack.url("/admin/dead-letters/failed"))).status).toBe(200)
    const exposed = await stack.gatewayWith({ HOST: "0.0.0.0" })
    await expectProblem(
      await fetch(exposed("/admin/dead-letters/failed")),
      403,
      "admin endpoints are off: this gateway listens beyond loopback without ADMIN_TOKEN or admin API keys",
    )
    // The task API stays open there: without keys, that is the documented open mode.
    expect((await fetch(exposed("/polarities/tasks"))).status).toBe(200)
  })

  test("ADMIN_TOKEN is at least 32 characters", () => {
    expect(() => loadGatewayConfig({ ADMIN_TOKEN: "x".repeat(31) })).toThrow(
      "invalid configuration: ADMIN_TOKEN: must be at least 32 characters",
    )
    expect(loadGatewayConfig({ ADMIN_TOKEN: "x".repeat(32) }).ADMIN_TOKEN).toHaveLength(32)
    expect(loadGatewayConfig({ ADMIN_TOKEN: "" }).ADMIN_TOKEN).toBeUndefined()
  })
})

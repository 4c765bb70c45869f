// Who may call what: one middleware in front of every route, so that a route added later needs an API key (when
// keys are configured) unless it is named here as public. The dashboard has its own credentials and /admin its
// token; everything else is the task API.
import type { Context, MiddlewareHandler } from "hono"
import { bearerAuth } from "hono/bearer-auth"
import { Problem, problemResponse } from "../../shared/http.ts"
import { type ApiKeys, sameSecret } from "./api-keys.ts"

/**
 * Who a request comes from, as the routes see it. `owner` is recorded on what it submits (the key's name; null
 * when the API is open); `seesAll` reads and acts on every task (an admin key, the dashboard's operator, anyone
 * when the API is open); `limitKey` is what the per-caller limits count against (null: none apply).
 */
export interface Caller {
  owner: string | null
  seesAll: boolean
  limitKey: string | null
}

/** The owner the status store filters by: none for a caller who sees every task. */
export const ownerFilter = (caller: Caller): string | undefined =>
  caller.seesAll ? undefined : (caller.owner ?? undefined)

const OPEN_CALLER: Caller = { owner: null, seesAll: true, limitKey: null }

export function callerOf(c: Context): Caller {
  return (c.get("caller") as Caller | undefined) ?? OPEN_CALLER
}

type Access = "public" | "dashboard" | "admin" | "api"

/**
 * The only routes anyone may call. Anything not listed, including a route added later, is the task API. A trailing
 * slash is allowed: GET `/docs/` is redirected to `/docs`, whoever asks.
 */
const PUBLIC_PATHS = [/^\/healthz\/?$/, /^\/metrics\/?$/, /^\/openapi\.json\/?$/, /^\/docs(?:\/[^/]*)?$/]

export function accessOf(path: string): Access {
  if (PUBLIC_PATHS.some((pattern) => pattern.test(path))) return "public"
  if (path === "/dashboard" || path.startsWith("/dashboard/")) return "dashboard"
  if (path.startsWith("/admin/")) return "admin"
  return "api"
}

export const bearerOf = (c: Context): string | undefined =>
  c.req.header("authorization")?.match(/^bearer +(\S+) *$/i)?.[1]

/**
 * The client's address as the socket has it; behind a proxy (TRUST_PROXY) the last X-Forwarded-For entry, the one
 * our proxy added: the entries before it are the client's to write.
 */
export function clientAddress(c: Context, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = c.req.header("x-forwarded-for")?.split(",").at(-1)?.trim()
    if (forwarded) return forwarded
  }
  // Bun passes its server as the fetch handler's env, Deno the connection's info.
  const env = c.env as
    | { requestIP?(req: Request): { address: string } | null; remoteAddr?: { hostname?: string } }
    | undefined
  return env?.requestIP?.(c.req.raw)?.address ?? env?.remoteAddr?.hostname ?? "unknown"
}

/** The request came over TLS, to us or (TRUST_PROXY) to the proxy in front. */
export function overTls(c: Context, trustProxy: boolean): boolean {
  if (new URL(c.req.url).protocol === "https:") return true
  return trustProxy && c.req.header("x-forwarded-proto")?.split(",")[0]?.trim() === "https"
}

export interface AccessOptions {
  keys: ApiKeys | undefined
  adminToken: string | undefined
  /** The gateway listens on loopback only: with neither keys nor ADMIN_TOKEN, /admin stays open there alone. */
  loopbackOnly: boolean
  /** Without keys: apply the per-caller limits to each client address (LIMIT_BY_ADDRESS). */
  limitByAddress: boolean
  trustProxy: boolean
  /** The dashboard's own check (its token, basic auth, session cookie, or an admin key). */
  dashboard: MiddlewareHandler
}

const keyProblem = (detail: string) => () =>
  problemResponse(401, detail, { "www-authenticate": 'Bearer realm="api"' })

/** The task API: a valid key when keys are configured; otherwise anyone, limited by address if so configured. */
function apiAccess({ keys, limitByAddress, trustProxy }: AccessOptions): MiddlewareHandler {
  if (!keys) {
    return async (c, next) => {
      const limitKey = limitByAddress ? `address:${clientAddress(c, trustProxy)}` : null
      c.set("caller", { owner: null, seesAll: true, limitKey } satisfies Caller)
      await next()
    }
  }
  return bearerAuth({
    realm: "api",
    verifyToken: (token, c) => {
      const key = keys.verify(token)
      if (key) c.set("caller", { owner: key.name, seesAll: key.admin, limitKey: `key:${key.name}` })
      return key !== undefined
    },
    noAuthenticationHeader: {
      message: keyProblem("this API needs the header Authorization: Bearer <API key>"),
    },
    invalidAuthenticationHeader: {
      message: keyProblem("the Authorization header must be Bearer <API key>"),
    },
    invalidToken: { message: keyProblem("this API key is not valid (unknown, or revoked)") },
  })
}

/**
 * /admin: ADMIN_TOKEN or an admin API key. With neither configured, open on a loopback-only gateway (a laptop, the
 * tests) and off anywhere else: an admin endpoint reachable from a network is never open by default.
 */
function adminAccess({ keys, adminToken, loopbackOnly }: AccessOptions): MiddlewareHandler {
  return async (c, next) => {
    const bearer = bearerOf(c)
    if (adminToken && bearer !== undefined && sameSecret(bearer, adminToken)) return next()
    const key = bearer === undefined ? undefined : keys?.verify(bearer)
    if (key?.admin) return next()
    if (key) throw new Problem(403, `the API key "${key.name}" is not an admin key`)
    if (!adminToken && !keys) {
      if (loopbackOnly) return next()
      throw new Problem(
        403,
        "admin endpoints are off: this gateway listens beyond loopback without ADMIN_TOKEN or admin API keys",
      )
    }
    throw new Problem(401, "admin endpoints need Authorization: Bearer <ADMIN_TOKEN or an admin API key>", {
      "www-authenticate": 'Bearer realm="admin"',
    })
  }
}

/** The one middleware in front of every route. Preflight (OPTIONS) carries no credentials and passes to CORS. */
export function guard(options: AccessOptions): MiddlewareHandler {
  const api = apiAccess(options)
  const admin = adminAccess(options)
  return async (c, next) => {
    if (c.req.method === "OPTIONS") return next()
    switch (accessOf(c.req.path)) {
      case "public":
        return next()
      case "dashboard":
        return options.dashboard(c, next)
      case "admin":
        return admin(c, next)
      case "api":
        return api(c, next)
    }
  }
}

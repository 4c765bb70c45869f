// Who may open the dashboard and its data: its own token (DASHBOARD_TOKEN) and/or basic-auth credentials
// (DASHBOARD_USER, DASHBOARD_PASSWORD), the operator's way in from a browser; and, when API keys are configured, an
// admin API key as `Authorization: Bearer`. A token can also be sent once as `?token=` in a link: the gateway then
// sets a cookie and sends the browser on without the token in its address bar, history or the next Referer.
// EventSource cannot send headers, so the cookie is what carries the live stream. With neither credentials nor keys
// the dashboard is open, as the API is.
import { createHmac } from "node:crypto"
import type { Context, MiddlewareHandler } from "hono"
import { getCookie, setCookie } from "hono/cookie"
import { Problem } from "../../shared/http.ts"
import { bearerOf, type Caller, overTls } from "./access.ts"
import { type ApiKeys, sameSecret } from "./api-keys.ts"

export interface DashboardCredentials {
  token?: string | undefined
  user?: string | undefined
  password?: string | undefined
}

interface DashboardAuthOptions {
  credentials: DashboardCredentials
  keys: ApiKeys | undefined
  trustProxy: boolean
}

const COOKIE = "dashboard_session"
/** The dashboard's operator: sees and acts on every task; its streams count against one limit. */
const OPERATOR: Caller = { owner: null, seesAll: true, limitKey: "dashboard" }

/** The cookie's value: derived from the token, so that a stolen cookie is not the token itself. */
const sessionOf = (token: string) =>
  createHmac("sha256", token).update("dashboard-session").digest("base64url")

function basicCredentials(c: Context): [string, string] | undefined {
  const header = c.req.header("authorization") ?? ""
  if (!/^basic /i.test(header)) return undefined
  const decoded = Buffer.from(header.slice(6).trim(), "base64").toString("utf8")
  const colon = decoded.indexOf(":")
  return colon < 0 ? undefined : [decoded.slice(0, colon), decoded.slice(colon + 1)]
}

function operatorAuthorized(c: Context, { token, user, password }: DashboardCredentials): boolean {
  if (token) {
    const bearer = bearerOf(c)
    if (bearer !== undefined && sameSecret(bearer, token)) return true
    const session = getCookie(c, COOKIE)
    if (session !== undefined && sameSecret(session, sessionOf(token))) return true
  }
  if (user && password) {
    const given = basicCredentials(c)
    // Both compared, whatever the first gives, so that the time taken says nothing about the user name.
    if (given && [sameSecret(given[0], user), sameSecret(given[1], password)].every(Boolean)) return true
  }
  return false
}

/** The key a request presents, if it is an admin's; a 403 for a valid key that is not. */
function adminKeyCaller(c: Context, keys: ApiKeys | undefined): Caller | undefined {
  const bearer = bearerOf(c)
  const key = bearer === undefined ? undefined : keys?.verify(bearer)
  if (!key) return undefined
  if (!key.admin) {
    throw new Problem(403, `the dashboard shows every task: the API key "${key.name}" is not an admin key`)
  }
  return { owner: key.name, seesAll: true, limitKey: `key:${key.name}` }
}

/** Sets the caller and lets the request through, or answers 401/403 problem+json. */
export function dashboardAuth({ credentials, keys, trustProxy }: DashboardAuthOptions): MiddlewareHandler {
  const { token, user, password } = credentials
  const basic = Boolean(user && password)
  if (!token && !basic && !keys) {
    return async (c, next) => {
      c.set("caller", OPERATOR)
      await next()
    }
  }
  return async (c, next) => {
    const linked = c.req.query("token")
    if (token && linked !== undefined && c.req.method === "GET" && sameSecret(linked, token)) {
      const url = new URL(c.req.url)
      url.searchParams.delete("token")
      setCookie(c, COOKIE, sessionOf(token), {
        httpOnly: true,
        sameSite: "Strict",
        path: "/dashboard",
        secure: overTls(c, trustProxy),
      })
      return c.redirect(`${url.pathname}${url.search}`, 303)
    }
    const caller = operatorAuthorized(c, credentials) ? OPERATOR : adminKeyCaller(c, keys)
    if (caller) {
      c.set("caller", caller)
      return next()
    }
    const ways = [
      token && "Authorization: Bearer <DASHBOARD_TOKEN> (or ?token= once)",
      basic && "basic auth",
      keys && "Authorization: Bearer <admin API key>",
    ]
    throw new Problem(401, `the dashboard needs ${ways.filter(Boolean).join(" or ")}`, {
      "www-authenticate": basic ? 'Basic realm="dashboard", charset="UTF-8"' : 'Bearer realm="dashboard"',
    })
  }
}

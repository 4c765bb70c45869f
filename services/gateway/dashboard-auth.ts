// Optional protection of the dashboard and its data: a token (DASHBOARD_TOKEN) and/or basic-auth credentials
// (DASHBOARD_USER, DASHBOARD_PASSWORD). A token can be sent as `Authorization: Bearer`, or once as `?token=` in
// a link: the gateway then sets a cookie and sends the browser on without the token in its address bar, history
// or the next Referer. EventSource cannot send headers, so the cookie is what carries the live stream.
import { createHmac, timingSafeEqual } from "node:crypto"
import type { Context, MiddlewareHandler } from "hono"
import { getCookie, setCookie } from "hono/cookie"
import { Problem } from "../../shared/http.ts"

export interface DashboardCredentials {
  token?: string | undefined
  user?: string | undefined
  password?: string | undefined
}

const COOKIE = "dashboard_session"

/** Equal strings, compared in constant time (digests first, so that their lengths say nothing). */
function same(given: string, expected: string): boolean {
  const digest = (text: string) => createHmac("sha256", "dashboard-compare").update(text).digest()
  return timingSafeEqual(digest(given), digest(expected))
}

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

function authorized(c: Context, { token, user, password }: DashboardCredentials): boolean {
  if (token) {
    const bearer = c.req.header("authorization")?.match(/^bearer (.+)$/i)?.[1]
    if (bearer !== undefined && same(bearer, token)) return true
    const session = getCookie(c, COOKIE)
    if (session !== undefined && same(session, sessionOf(token))) return true
  }
  if (user && password) {
    const given = basicCredentials(c)
    // Both compared, whatever the first gives, so that the time taken says nothing about the user name.
    if (given && [same(given[0], user), same(given[1], password)].every(Boolean)) return true
  }
  return false
}

/** Lets every request through when nothing is configured; otherwise a 401 problem without valid credentials. */
export function dashboardAuth(credentials: DashboardCredentials): MiddlewareHandler {
  const { token, user, password } = credentials
  const basic = Boolean(user && password)
  if (!token && !basic) return async (_c, next) => next()
  return async (c, next) => {
    const linked = c.req.query("token")
    if (token && linked !== undefined && c.req.method === "GET" && same(linked, token)) {
      const url = new URL(c.req.url)
      url.searchParams.delete("token")
      setCookie(c, COOKIE, sessionOf(token), {
        httpOnly: true,
        sameSite: "Strict",
        path: "/dashboard",
        secure: url.protocol === "https:",
      })
      return c.redirect(`${url.pathname}${url.search}`, 303)
    }
    if (authorized(c, credentials)) return next()
    const ways = [token && "Authorization: Bearer <DASHBOARD_TOKEN> (or ?token= once)", basic && "basic auth"]
    throw new Problem(401, `the dashboard needs ${ways.filter(Boolean).join(" or ")}`, {
      "www-authenticate": basic ? 'Basic realm="dashboard", charset="UTF-8"' : 'Bearer realm="dashboard"',
    })
  }
}

// HTTP hygiene, all from Hono's own middleware but the cross-site check: security headers on every answer, an
// explicit CORS policy (none unless CORS_ORIGINS names origins), 405 with Allow for a known path asked with another
// method (204 with Allow to OPTIONS), and no state change from another site's page.
import type { Hono, MiddlewareHandler } from "hono"
import { cors } from "hono/cors"
import { methodNotAllowed } from "hono/method-not-allowed"
import { secureHeaders } from "hono/secure-headers"
import * as v from "valibot"
import { Problem, problemResponse } from "../../shared/http.ts"

/** `CORS_ORIGINS`: origins (`https://app.example`) separated by commas, or `*` for any; none by default. */
export const CorsOrigins = v.pipe(
  v.optional(v.string(), ""),
  v.transform((raw) =>
    raw
      .split(",")
      .map((origin) => origin.trim())
      .filter(Boolean),
  ),
  v.check(
    (origins) => origins.every((origin) => origin === "*" || /^https?:\/\/[^/\s]+$/.test(origin)),
    "must be origins like https://app.example (scheme and host, no path), separated by commas, or *",
  ),
)

/**
 * `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` and the rest of
 * Hono's set on every answer; the HTML pages add a Content-Security-Policy with `frame-ancestors 'none'`.
 */
export const securityHeaders = secureHeaders({ xFrameOptions: "DENY" })

/** Browsers may read the API from these origins; with none, no CORS headers at all (same origin only). */
export function corsPolicy(origins: string[]): MiddlewareHandler | undefined {
  if (origins.length === 0) return undefined
  return cors({
    origin: origins.includes("*") ? "*" : origins,
    allowMethods: ["GET", "POST", "DELETE", "OPTIONS"],
    allowHeaders: ["authorization", "content-type", "idempotency-key", "last-event-id"],
    exposeHeaders: [
      "location",
      "retry-after",
      "idempotent-replayed",
      "ratelimit-limit",
      "ratelimit-remaining",
      "ratelimit-reset",
      "ratelimit-policy",
    ],
    maxAge: 600,
  })
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"])

/**
 * A browser sends `Origin` with every cross-origin request that is not a GET or HEAD, form posts included: one that
 * would change state and comes from neither this origin nor CORS_ORIGINS is refused. Hono's `csrf` middleware
 * treats a POST without a content type as a form post and refuses it without an Origin, which would refuse
 * `curl -X POST …/retry`; clients that are not browsers send no Origin and pass here.
 */
export function refuseCrossSite(origins: string[]): MiddlewareHandler {
  const allowed = new Set(origins)
  return async (c, next) => {
    const origin = c.req.header("origin")
    if (
      origin !== undefined &&
      !SAFE_METHODS.has(c.req.method) &&
      !allowed.has("*") &&
      !allowed.has(origin) &&
      origin !== new URL(c.req.url).origin
    ) {
      throw new Problem(
        403,
        `a ${c.req.method} from the origin ${origin.slice(0, 200)} is refused: it is not this API's origin or one of CORS_ORIGINS`,
      )
    }
    await next()
  }
}

/** 405 with Allow for a known path asked with a method it does not serve; OPTIONS gets 204 and the same Allow. */
export function allowedMethods(app: Hono): MiddlewareHandler {
  return methodNotAllowed({
    app,
    onMethodNotAllowed: (c, methods) => {
      const allow = [...methods, "OPTIONS"].join(", ")
      if (c.req.method === "OPTIONS") return c.body(null, 204, { allow })
      return problemResponse(405, `${c.req.path} answers ${allow}, not ${c.req.method}`, { allow })
    },
  })
}

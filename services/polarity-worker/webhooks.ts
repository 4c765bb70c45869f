// Delivering completion webhooks: a task's final record POSTed to its callback_url, signed the way Standard
// Webhooks sign (HMAC-SHA256 of `<id>.<timestamp>.<body>`), so that receivers can use its libraries. The connection
// goes only to an address the guarded lookup approved: the name is resolved once, checked, and that address used,
// so a DNS answer that changes between the check and the connection (rebinding) cannot reach an internal one.
import { createHmac } from "node:crypto"
import { type LookupAddress, lookup } from "node:dns"
import http from "node:http"
import https from "node:https"
import type { LookupFunction } from "node:net"
import { type AllowedHosts, callbackUrlProblem, isInternalAddress } from "../../shared/webhooks.ts"

export interface WebhookSettings {
  /** WEBHOOK_SECRET: `whsec_<base64>` as Standard Webhooks write it, or any other string, used as its bytes. */
  secret: string
  allowed: AllowedHosts
  timeoutMs: number
}

/** How one attempt went: `refused` is a URL that may never be called, so it is not tried again. */
export interface AttemptResult {
  outcome: "delivered" | "failed" | "refused"
  status: number | null
  error: string | null
}

class RefusedAddress extends Error {
  override name = "RefusedAddress"
}

/** The `webhook-signature` header: `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`. */
export function signature(secret: string, id: string, timestamp: number, body: string): string {
  const key = secret.startsWith("whsec_") ? Buffer.from(secret.slice(6), "base64") : Buffer.from(secret)
  return `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`
}

/** Resolves as the system does, and refuses an internal address unless the host or the address is allowed. */
function guardedLookup(allowed: AllowedHosts): LookupFunction {
  return (hostname, options, callback) => {
    lookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, "", 0)
      const internal = addresses.find(
        ({ address }) => isInternalAddress(address) && !allowed.allows(hostname) && !allowed.allows(address),
      )
      if (internal) {
        const reason = `${hostname} resolves to ${internal.address}, a loopback or private address; WEBHOOK_ALLOW_HOSTS must name it to be called`
        return callback(new RefusedAddress(reason), "", 0)
      }
      if (options.all) return (callback as (e: null, a: LookupAddress[]) => void)(null, addresses)
      const [first] = addresses
      callback(null, first?.address ?? "", first?.family ?? 4)
    })
  }
}

/** One attempt: a 2xx is delivered; anything else (another status, a redirect, no answer in time) failed. */
export function deliver(
  delivery: { delivery_id: string; url: string; record: unknown },
  settings: WebhookSettings,
): Promise<AttemptResult> {
  const problem = callbackUrlProblem(delivery.url, settings.allowed)
  if (problem) return Promise.resolve({ outcome: "refused", status: null, error: problem })
  const url = new URL(delivery.url)
  const body = JSON.stringify(delivery.record)
  const timestamp = Math.floor(Date.now() / 1000)
  const headers = {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(body)),
    "user-agent": "sentiment-polarity-webhooks/1",
    "webhook-id": delivery.delivery_id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signature(settings.secret, delivery.delivery_id, timestamp, body),
  }
  const { promise, resolve } = Promise.withResolvers<AttemptResult>()
  const client = url.protocol === "https:" ? https : http
  const request = client.request(
    url,
    { method: "POST", headers, lookup: guardedLookup(settings.allowed) },
    (response) => {
      const status = response.statusCode ?? 0
      // The answer's body is of no use: not read, so a receiver cannot make the worker hold a large one.
      response.destroy()
      const delivered = status >= 200 && status < 300
      resolve({
        outcome: delivered ? "delivered" : "failed",
        status,
        error: delivered ? null : `HTTP ${status}`,
      })
    },
  )
  const timer = setTimeout(
    () => request.destroy(new Error(`no answer within ${settings.timeoutMs} ms`)),
    settings.timeoutMs,
  )
  request.on("error", (err) => {
    resolve({
      outcome: err instanceof RefusedAddress ? "refused" : "failed",
      status: null,
      error: err.message,
    })
  })
  request.end(body)
  return promise.finally(() => clearTimeout(timer))
}

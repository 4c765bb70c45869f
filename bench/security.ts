// `bun bench/security.ts`: what API keys, limits and the HTTP hygiene cost a request, in CPU, without the broker:
// the gateway's own middleware in front of a route that answers at once, against the same route bare, and the
// key check alone for growing numbers of keys. Prints µs per request; the end-to-end cost is `npm run bench
// -- --api-key` against `npm run bench` (docs/performance.md).
import { Hono } from "hono"
import { guard } from "../services/gateway/access.ts"
import { ApiKeys, keyLine, mintKey } from "../services/gateway/api-keys.ts"
import { dashboardAuth } from "../services/gateway/dashboard-auth.ts"
import { allowedMethods, refuseCrossSite, securityHeaders } from "../services/gateway/hygiene.ts"
import { RateLimiter, rateLimit } from "../services/gateway/limits.ts"
import { createLogger } from "../shared/log.ts"

const ROUNDS = Number(process.env.ROUNDS ?? 50_000)
const log = createLogger("bench", "error")

function keysOf(count: number): { keys: ApiKeys; key: string } {
  const minted = Array.from({ length: count }, () => mintKey())
  const lines = minted.map((key, i) => keyLine(`client-${i}`, false, key)).join(";")
  const keys = ApiKeys.load({ API_KEYS: lines, API_KEYS_RELOAD_MS: 60_000 }, log)
  if (!keys) throw new Error("no keys")
  return { keys, key: minted.at(-1) ?? "" }
}

/** µs per call of `work`, the best of three runs of ROUNDS calls (the machine is shared: the best is the cost). */
async function microseconds(work: () => unknown | Promise<unknown>): Promise<number> {
  let best = Number.POSITIVE_INFINITY
  for (let run = 0; run < 3; run++) {
    const started = performance.now()
    for (let i = 0; i < ROUNDS; i++) await work()
    best = Math.min(best, ((performance.now() - started) * 1000) / ROUNDS)
  }
  return best
}

function app(secured: { keys: ApiKeys | undefined; limiter: RateLimiter | undefined } | undefined) {
  const hono = new Hono()
  if (secured) {
    const { keys, limiter } = secured
    hono.use(securityHeaders)
    hono.use(allowedMethods(hono))
    hono.use(refuseCrossSite([]))
    const options = {
      keys,
      adminToken: undefined,
      loopbackOnly: true,
      limitByAddress: false,
      trustProxy: false,
    }
    hono.use(guard({ ...options, dashboard: dashboardAuth({ credentials: {}, keys, trustProxy: false }) }))
    hono.use(rateLimit(limiter))
  }
  hono.get("/polarities/tasks/:taskId", (c) => c.json({ task_id: c.req.param("taskId") }))
  return hono
}

async function perRequest(hono: Hono, key?: string): Promise<number> {
  const headers = key ? { authorization: `Bearer ${key}` } : undefined
  const path = "http://gateway/polarities/tasks/0199a4b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
  return microseconds(async () => {
    const res = await hono.request(path, headers ? { headers } : {})
    if (res.status !== 200) throw new Error(`answered ${res.status}`)
    await res.arrayBuffer()
  })
}

const rows: [string, number][] = []
const { keys, key } = keysOf(10)
const limiter = new RateLimiter(1_000_000_000, 1_000_000_000)
const apps: [string, Hono, string?][] = [
  ["a request, bare route", app(undefined)],
  ["  + headers, 405, cross-site check (open API)", app({ keys: undefined, limiter: undefined })],
  ["  + an API key (of 10) and a rate limit", app({ keys, limiter }), key],
]
// Twice over, in turn, keeping each one's best: the first rounds warm the JIT for all of them.
const best = new Map<string, number>()
for (let turn = 0; turn < 2; turn++) {
  for (const [what, hono, presented] of apps) {
    best.set(what, Math.min(best.get(what) ?? Number.POSITIVE_INFINITY, await perRequest(hono, presented)))
  }
}
rows.push(...best)
for (const count of [1, 10, 100, 1000]) {
  const many = keysOf(count)
  rows.push([`the key check alone, ${count} key(s)`, await microseconds(() => many.keys.verify(many.key))])
  many.keys.close()
}
rows.push(["the rate bucket alone", await microseconds(() => limiter.take("key:bench"))])
keys.close()
limiter.close()

console.log(`µs per request or call, best of 3 × ${ROUNDS}`)
for (const [what, us] of rows) console.log(`  ${what.padEnd(52)} ${us.toFixed(2).padStart(8)}`)

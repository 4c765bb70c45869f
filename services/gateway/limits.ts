// Per-caller limits, kept in this gateway's memory: a request rate with a burst (a token bucket per caller),
// how many event streams and `?wait=` requests a caller holds open at once, and the bytes of batches in flight.
// Several gateways each keep their own counts, so N replicas allow N times the rate; a caller's streams are
// counted where they are open.
import type { Context, MiddlewareHandler } from "hono"
import { Problem } from "../../shared/http.ts"
import { Gauge, type ServiceMetrics } from "../../shared/metrics.ts"
import { type Caller, callerOf } from "./access.ts"

interface Bucket {
  tokens: number
  at: number
}

/** Callers whose buckets are full again are forgotten this often, so the map holds only recent callers. */
const SWEEP_MS = 60_000

/**
 * A token bucket per caller: `burst` requests at once, refilled at `perSecond`. Hono's ecosystem has
 * hono-rate-limiter, but its windows are fixed (a client may send twice the limit across a window's edge) and it
 * has no burst apart from the rate; a bucket is these few lines.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>()
  private readonly sweeper: ReturnType<typeof setInterval>

  constructor(
    readonly perSecond: number,
    readonly burst: number,
  ) {
    this.sweeper = setInterval(() => this.sweep(performance.now()), SWEEP_MS)
    this.sweeper.unref?.()
  }

  /** Takes one request's token; `remaining` after it, and seconds until the next token or a full bucket. */
  take(key: string, now = performance.now()) {
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, at: now }
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond)
    bucket.at = now
    this.buckets.set(key, bucket)
    const allowed = bucket.tokens >= 1
    if (allowed) bucket.tokens -= 1
    return {
      allowed,
      remaining: Math.floor(bucket.tokens),
      retryAfter: Math.max(1, Math.ceil((1 - bucket.tokens) / this.perSecond)),
      reset: Math.ceil((this.burst - bucket.tokens) / this.perSecond),
    }
  }

  private sweep(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond >= this.burst) this.buckets.delete(key)
    }
  }

  close(): void {
    clearInterval(this.sweeper)
  }
}

/**
 * 429 with `Retry-After` past a caller's rate; every limited answer carries the IETF draft's `RateLimit-Limit`,
 * `RateLimit-Remaining`, `RateLimit-Reset` and `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-06).
 */
export function rateLimit(limiter: RateLimiter | undefined): MiddlewareHandler {
  if (!limiter) return async (_c, next) => next()
  const policy = `${limiter.burst};w=${Math.max(1, Math.round(limiter.burst / limiter.perSecond))}`
  return async (c, next) => {
    const { limitKey } = callerOf(c)
    if (limitKey === null) return next()
    const { allowed, remaining, retryAfter, reset } = limiter.take(limitKey)
    const headers = {
      "ratelimit-limit": String(limiter.burst),
      "ratelimit-remaining": String(remaining),
      "ratelimit-reset": String(reset),
      "ratelimit-policy": policy,
    }
    if (!allowed) {
      throw new Problem(
        429,
        `too many requests: ${limiter.perSecond} a second, ${limiter.burst} at once; retry after ${retryAfter} s`,
        { ...headers, "retry-after": String(retryAfter) },
      )
    }
    await next()
    for (const [name, value] of Object.entries(headers)) c.res.headers.set(name, value)
  }
}

/** The settings that bound some `Slots`: in all, and optionally per caller. */
export interface SlotLimits {
  max: number
  /** The settings' names, for the messages. */
  maxSetting: string
  perCaller?: { max: number; setting: string }
}

/**
 * Things a caller holds open (event streams, `?wait=` requests, a batch's bytes): at most `perCaller` each, and
 * `max` in all, which protects the gateway and the store whoever asks, keys or not.
 */
export class Slots {
  private readonly held = new Map<string, number>()
  private total = 0

  constructor(
    private readonly what: string,
    private readonly limits: SlotLimits,
  ) {}

  get open(): number {
    return this.total
  }

  /**
   * Takes `amount` slots, or throws 429 (this caller's are all taken) or 503 (the gateway's are); returns their
   * release, which may be called more than once.
   */
  take(caller: Caller, amount = 1): () => void {
    const key = caller.limitKey
    const mine = key === null ? 0 : (this.held.get(key) ?? 0)
    this.checkRoom(key === null ? undefined : mine, amount)
    this.total += amount
    if (key !== null) this.held.set(key, mine + amount)
    let released = false
    return () => {
      if (released) return
      released = true
      this.total -= amount
      if (key === null) return
      const left = (this.held.get(key) ?? amount) - amount
      if (left === 0) this.held.delete(key)
      else this.held.set(key, left)
    }
  }

  private checkRoom(mine: number | undefined, amount: number): void {
    const { max, maxSetting, perCaller } = this.limits
    if (perCaller && mine !== undefined && mine + amount > perCaller.max) {
      throw new Problem(
        429,
        `at most ${perCaller.max} ${this.what} open at once per caller (${perCaller.setting}); close one first`,
        { "retry-after": "1" },
      )
    }
    if (this.total + amount > max) {
      const detail =
        amount === 1
          ? `this gateway holds its most ${this.what} (${max}, ${maxSetting}); retry shortly`
          : `this gateway holds ${this.total} of its ${max} ${this.what} (${maxSetting}) and ${amount} more do not fit; retry shortly`
      throw new Problem(503, detail, { "retry-after": "1" })
    }
  }

  /** Reports how many are held, as `polarity_gateway_held{what}`. */
  report(gauge: Gauge<"what">, what: string): void {
    gauge.set({ what }, this.total)
  }

  /** Runs `work` holding a slot when `hold` is true (a request that asked to wait). */
  async around<T>(c: Context, hold: boolean, work: () => Promise<T>): Promise<T> {
    if (!hold) return work()
    const release = this.take(callerOf(c))
    try {
      return await work()
    } finally {
      release()
    }
  }
}

/**
 * Holds a request body's bytes in `budget` until the request ends (answered, failed or aborted): a declared
 * Content-Length before anything is read, a chunked body chunk by chunk as it is read. Parsing, validating and
 * publishing a batch holds 15–19 times its size, so this, not the rate limits, bounds what batches cost at once.
 * Goes before the body limit, which reads a chunked body whole.
 */
export function holdBodyBytes(budget: Slots, maxBodyBytes: number): MiddlewareHandler {
  return async (c, next) => {
    const body = c.req.raw.body
    if (!body) return next()
    const caller = callerOf(c)
    const releases: (() => void)[] = []
    const declared = c.req.raw.headers.has("transfer-encoding") ? null : c.req.header("content-length")
    const size = declared == null ? Number.NaN : Number.parseInt(declared, 10)
    if (Number.isSafeInteger(size)) {
      // A body over the limit is the body limit's 413, not this 503.
      if (size <= maxBodyBytes) releases.push(budget.take(caller, size))
    } else {
      let read = 0
      const counted = body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, stream) {
            read += chunk.byteLength
            // The chunk that takes the body over the limit is the body limit's 413, as a declared size is.
            if (read <= maxBodyBytes) releases.push(budget.take(caller, chunk.byteLength))
            stream.enqueue(chunk)
          },
        }),
      )
      c.req.raw = new Request(c.req.raw, { body: counted, duplex: "half" } as RequestInit)
    }
    try {
      await next()
    } finally {
      for (const release of releases) release()
    }
  }
}

/** `polarity_gateway_held{what="streams"|"waits"|"batch_bytes"}`: what callers hold open in this gateway now. */
export function heldGauge({ registry }: ServiceMetrics, slots: Record<string, Slots>): void {
  new Gauge({
    name: "polarity_gateway_held",
    help: "Event streams, ?wait= requests and bytes of batches held open in this gateway now.",
    labelNames: ["what"],
    registers: [registry],
    collect() {
      for (const [what, held] of Object.entries(slots)) held.report(this, what)
    },
  })
}

/** How long a key's in-flight count from the store is used before it is asked again. */
const IN_FLIGHT_FRESH_MS = 250

interface InFlightCount {
  /** The store's count when asked, plus what this gateway accepted since. */
  tasks: number
  at: number
  /** What this gateway accepted since the store was asked. */
  added: number
}

/**
 * MAX_TASKS_IN_FLIGHT_PER_KEY. The status store counts each key's tasks in flight (submitted, not final); asking it
 * before every submission cost the store and the gateway 35–50 µs of CPU per task and a round trip on each POST,
 * so the count is asked at most every IN_FLIGHT_FRESH_MS per key (concurrent requests share one ask; the store reads
 * what is queued first, so every submission answered before is in it), and this gateway adds what it accepts
 * meanwhile. A count that would refuse is asked afresh first, so that tasks ended meanwhile are not held against
 * the key; what other gateways accept meanwhile is counted at the next ask.
 */
export class InFlightQuota {
  private readonly counts = new Map<string, InFlightCount>()
  private readonly asking = new Map<string, Promise<InFlightCount>>()

  constructor(
    readonly max: number,
    private readonly askStore: (owner: string) => Promise<number>,
  ) {}

  /** Counts `adding` tasks for `owner`, or throws 429 when they would pass the quota. */
  async take(owner: string, adding: number): Promise<void> {
    let count = await this.current(owner)
    if (count.tasks + adding > this.max && count.added > 0) count = await this.ask(owner)
    if (count.tasks + adding > this.max) {
      throw new Problem(
        429,
        `the key "${owner}" has ${count.tasks} tasks in flight and asks for ${adding} more; at most ${this.max} may be submitted and not final at once (MAX_TASKS_IN_FLIGHT_PER_KEY)`,
        { "retry-after": "1" },
      )
    }
    count.tasks += adding
    count.added += adding
  }

  private current(owner: string): Promise<InFlightCount> {
    const known = this.counts.get(owner)
    if (known && performance.now() - known.at < IN_FLIGHT_FRESH_MS) return Promise.resolve(known)
    return this.ask(owner)
  }

  /** Concurrent requests share one ask. */
  private ask(owner: string): Promise<InFlightCount> {
    let asked = this.asking.get(owner)
    if (!asked) {
      asked = this.askStore(owner)
        .then((tasks) => {
          const count = { tasks, at: performance.now(), added: 0 }
          this.counts.set(owner, count)
          return count
        })
        .finally(() => this.asking.delete(owner))
      this.asking.set(owner, asked)
    }
    return asked
  }
}

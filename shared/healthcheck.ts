// The images' HEALTHCHECK: asks the service's own /healthz, on the host and port its settings give, and exits 0
// when it answers 200. `SERVICE` names the service, as the Dockerfile sets it. Web-standard only, so it runs
// under Bun and Deno alike; tests/deploy.test.ts checks these names and defaults against each service's config.

/** Where each service listens: the variables that set it and their defaults. */
export const LISTEN_SETTINGS = {
  gateway: { host: "HOST", port: "PORT", defaultPort: 9000 },
  "polarity-worker": { host: "WORKER_HOST", port: "WORKER_PORT", defaultPort: 9001 },
  "status-store": { host: "STATUS_STORE_HOST", port: "STATUS_STORE_PORT", defaultPort: 9002 },
} as const

const ANY_ADDRESS: Record<string, string> = { "0.0.0.0": "127.0.0.1", "::": "::1" }

/** The URL of the service's /healthz as seen from inside its container. */
export function healthUrl(env: Record<string, string | undefined>): string {
  const service = env.SERVICE ?? ""
  if (!(service in LISTEN_SETTINGS))
    throw new Error(`SERVICE must be one of ${Object.keys(LISTEN_SETTINGS).join(", ")}, not "${service}"`)
  const listen = LISTEN_SETTINGS[service as keyof typeof LISTEN_SETTINGS]
  const bound = env[listen.host]?.trim() || "0.0.0.0"
  const host = ANY_ADDRESS[bound] ?? bound
  const port = env[listen.port]?.trim() || String(listen.defaultPort)
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}/healthz`
}

if (import.meta.main) {
  const url = healthUrl(process.env)
  const healthy = await fetch(url, { signal: AbortSignal.timeout(4000) }).then(
    (res) => res.ok,
    () => false,
  )
  if (!healthy) console.error(`${url} did not answer 200`)
  process.exit(healthy ? 0 : 1)
}

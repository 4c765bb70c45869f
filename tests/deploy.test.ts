// compose.yaml and the Dockerfile cannot be run here (no Docker engine), so check what can be checked:
// every service they name exists, every variable they set is one the service reads and parses, and the
// health checks and ports agree.
import { describe, expect, test } from "bun:test"
import { existsSync, readFileSync } from "node:fs"
import { BUN_ENV } from "../bench/stack.ts"
import { GatewayEnv, loadGatewayConfig } from "../services/gateway.ts"
import { loadWorkerConfig, WorkerEnv } from "../services/polarity-worker.ts"
import { loadStoreConfig, StoreEnv } from "../services/status-store.ts"

interface ComposeService {
  build?: { args?: Record<string, string> }
  image?: string
  environment?: Record<string, string>
  healthcheck?: { test: string[] }
  depends_on?: Record<string, { condition: string }>
  ports?: string[]
}
const compose = Bun.YAML.parse(readFileSync("compose.yaml", "utf8")) as {
  services: Record<string, ComposeService>
}
const dockerfile = readFileSync("Dockerfile", "utf8")

const services = {
  gateway: { entries: GatewayEnv, load: loadGatewayConfig, port: (c: Record<string, unknown>) => c.PORT },
  "polarity-worker": {
    entries: WorkerEnv,
    load: loadWorkerConfig,
    port: (c: Record<string, unknown>) => c.WORKER_PORT,
  },
  "status-store": {
    entries: StoreEnv,
    load: loadStoreConfig,
    port: (c: Record<string, unknown>) => c.STATUS_STORE_PORT,
  },
}

describe("compose.yaml", () => {
  for (const [name, service] of Object.entries(services)) {
    test(`${name}: built from its own file, with settings it reads and accepts`, () => {
      const spec = compose.services[name]
      expect(spec?.build?.args?.SERVICE).toBe(name)
      expect(existsSync(`services/${name}.ts`)).toBe(true)
      const environment = spec?.environment ?? {}
      expect(Object.keys(environment).filter((key) => !(key in service.entries))).toEqual([])
      const config = service.load(environment) as Record<string, unknown>
      expect(new URL(String(config.AMQP_URL)).hostname).toBe("rabbitmq")
      expect(spec?.healthcheck?.test.join(" ")).toContain(`127.0.0.1:${service.port(config)}/healthz`)
      expect(spec?.depends_on?.rabbitmq?.condition).toBe("service_healthy")
    })
  }

  test("the gateway publishes its port, and RabbitMQ has a health check", () => {
    expect(compose.services.gateway?.ports).toContain("9000:9000")
    expect(compose.services.rabbitmq?.healthcheck?.test.length).toBeGreaterThan(0)
  })
})

describe("Dockerfile", () => {
  test("copies what exists and runs the service named by its build argument", () => {
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) =>
      (m[1] ?? "").split(" "),
    )
    expect(copied.length).toBeGreaterThan(0)
    for (const path of copied) expect({ path, exists: existsSync(path) }).toEqual({ path, exists: true })
    expect(dockerfile).toMatch(/exec bun services\/\$\{SERVICE\}\.ts/)
  })

  test("runs Bun with the JavaScriptCore settings of npm start (package.json's config.bunEnv)", () => {
    const env = dockerfile.match(/^ENV (?:.|\\\n)+?[^\\]$/m)?.[0] ?? ""
    expect(Object.keys(BUN_ENV)).toEqual([
      "BUN_JSC_forceRAMSize",
      "BUN_JSC_smallHeapGrowthFactor",
      "BUN_JSC_useFTLJIT",
    ])
    for (const [name, value] of Object.entries(BUN_ENV)) expect(env).toContain(`${name}=${value}`)
  })
})

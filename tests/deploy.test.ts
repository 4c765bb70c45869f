// compose.yaml, compose.host.yaml and the Dockerfile, checked against the code. Docker Compose v2 cannot run
// here, so this checks what can be checked without it: every service they name exists, every variable they set
// is one the service reads and accepts, ports and health checks agree with the services' settings, and the
// images are pinned and labelled. The images themselves are built and run by tests/containers/.
import { describe, expect, test } from "bun:test"
import { existsSync, readFileSync } from "node:fs"
import { BUN_ENV } from "../bench/stack.ts"
import { GatewayEnv, loadGatewayConfig } from "../services/gateway.ts"
import { loadWorkerConfig, WorkerEnv } from "../services/polarity-worker.ts"
import { loadStoreConfig, StoreEnv } from "../services/status-store.ts"
import { brokerUrls } from "../shared/config.ts"
import { healthUrl, LISTEN_SETTINGS } from "../shared/healthcheck.ts"
import { dockerfileBases } from "./containers/images.ts"

interface ComposeService {
  build?: { context?: string; args?: Record<string, string> }
  image?: string
  environment?: Record<string, string>
  command?: unknown
  entrypoint?: unknown
  healthcheck?: { test: string[] }
  depends_on?: Record<string, { condition: string }>
  ports?: string[]
  network_mode?: string
  profiles?: string[]
  volumes?: string[]
  deploy?: { replicas?: number }
}
type Compose = { services: Record<string, ComposeService> }
const readYaml = (path: string) => Bun.YAML.parse(readFileSync(path, "utf8")) as Compose
const compose = readYaml("compose.yaml")
const hostOverride = readYaml("compose.host.yaml")
const dockerfile = readFileSync("Dockerfile", "utf8")
const packageJson = JSON.parse(readFileSync("package.json", "utf8")) as { version: string }
const lockfile = JSON.parse(readFileSync("package-lock.json", "utf8")) as {
  packages: Record<string, { version: string }>
}

const services = {
  gateway: { entries: GatewayEnv, load: loadGatewayConfig },
  "polarity-worker": { entries: WorkerEnv, load: loadWorkerConfig },
  "status-store": { entries: StoreEnv, load: loadStoreConfig },
}

/** Compose's merge of an override file, for the keys these files use: mappings merge, the rest is replaced. */
function merged(name: string): ComposeService {
  const base = compose.services[name] ?? {}
  const override = hostOverride.services[name] ?? {}
  return { ...base, ...override, environment: { ...base.environment, ...override.environment } }
}

/** The port a service's healthcheck asks, from the settings compose gives it. */
function listenPort(name: keyof typeof services, environment: Record<string, string>): number {
  const config = services[name].load(environment) as Record<string, unknown>
  return Number(config[LISTEN_SETTINGS[name].port])
}

describe("compose.yaml", () => {
  for (const [name, service] of Object.entries(services)) {
    test(`${name}: built from the Dockerfile for its own file, with settings it reads and accepts`, () => {
      const spec = compose.services[name] ?? {}
      expect({ context: spec.build?.context, args: spec.build?.args, image: spec.image }).toEqual({
        context: ".",
        args: { SERVICE: name },
        image: `sentiment-polarity/${name}:${packageJson.version}`,
      })
      expect(existsSync(`services/${name}.ts`)).toBe(true)
      // The image's entrypoint and HEALTHCHECK run it; compose overrides neither.
      expect([spec.command, spec.entrypoint, spec.healthcheck]).toEqual([undefined, undefined, undefined])
      const environment = spec.environment ?? {}
      expect(Object.keys(environment).filter((key) => !(key in service.entries))).toEqual([])
      const config = service.load(environment)
      expect(brokerUrls(config).map((url) => new URL(url).hostname)).toEqual(["rabbitmq"])
      expect(spec.depends_on?.rabbitmq?.condition).toBe("service_healthy")
    })
  }

  test("runs two status-store replicas on the bundled PostgreSQL, which SQLite could not", () => {
    const store = compose.services["status-store"] ?? {}
    expect(store.deploy?.replicas).toBe(2)
    expect(loadStoreConfig(store.environment ?? {}).DATABASE_URL).toStartWith("postgres://")
    expect(store.ports).toBeUndefined()
  })

  test("publishes the gateway's own port, and nothing on the host's RabbitMQ ports", () => {
    const gatewayPort = listenPort("gateway", compose.services.gateway?.environment ?? {})
    expect(compose.services.gateway?.ports).toEqual([`${gatewayPort}:${gatewayPort}`])
    const published = Object.values(compose.services).flatMap((spec) => spec.ports ?? [])
    const hostPorts = published.map((mapping) => Number(mapping.split(":").at(-2)))
    expect(hostPorts.filter((port) => [5672, 15672, 25672, 4369].includes(port))).toEqual([])
    expect(compose.services.rabbitmq?.healthcheck?.test.length).toBeGreaterThan(0)
  })

  test("the status store runs on the bundled PostgreSQL, which keeps its data on a volume and publishes no port", () => {
    const store = compose.services["status-store"] ?? {}
    const url = new URL(String(loadStoreConfig(store.environment ?? {}).DATABASE_URL))
    const postgres = compose.services[url.hostname] ?? {}
    const environment = postgres.environment ?? {}
    expect({
      database: [url.username, decodeURIComponent(url.password), url.pathname.slice(1), url.port] as (
        | string
        | undefined
      )[],
      dependsOn: store.depends_on,
      volumes: postgres.volumes,
      ports: postgres.ports,
      healthcheck: postgres.healthcheck?.test.slice(0, 2),
    }).toEqual({
      database: [environment.POSTGRES_USER, environment.POSTGRES_PASSWORD, environment.POSTGRES_DB, "5432"],
      dependsOn: {
        rabbitmq: { condition: "service_healthy" },
        [url.hostname]: { condition: "service_healthy" },
      },
      volumes: ["postgres-data:/var/lib/postgresql/data"],
      ports: undefined,
      healthcheck: ["CMD", "pg_isready"],
    })
    expect(postgres.image).toMatch(/^postgres:\d+\.\d+-/)
    // Without DATABASE_URL (npm start, a container of its own) the store keeps its SQLite file in /data.
    expect(dockerfile).toMatch(/mkdir -p \/data && chown bun:bun \/data/)
  })
})

describe("compose.host.yaml", () => {
  test("leaves the bundled broker and database out unless asked for", () => {
    expect(hostOverride.services.rabbitmq).toEqual({ profiles: ["bundled-broker"] })
    expect(hostOverride.services.postgres).toEqual({ profiles: ["bundled-database"] })
    const store = loadStoreConfig(merged("status-store").environment ?? {})
    expect(new URL(String(store.DATABASE_URL)).host).toBe("127.0.0.1:5432")
  })

  test("runs one status store, as replicas on the host's network would share its port", () => {
    expect(hostOverride.services["status-store"]?.deploy).toEqual({ replicas: 1 })
  })

  for (const name of Object.keys(services) as (keyof typeof services)[]) {
    test(`${name}: on the host's network, against the host's broker, with settings it accepts`, () => {
      const spec = merged(name)
      const config = services[name].load(spec.environment ?? {})
      expect({
        network: spec.network_mode,
        broker: brokerUrls(config).map((url) => new URL(url).host),
        dependsOn: spec.depends_on,
        // With the host's network nothing is published: the service listens on the host's port itself.
        ports: spec.ports ?? [],
      }).toEqual({ network: "host", broker: ["127.0.0.1:5672"], dependsOn: {}, ports: [] })
    })
  }

  test("resets, rather than merges, what host networking cannot have", () => {
    const text = readFileSync("compose.host.yaml", "utf8")
    expect(text.match(/depends_on: !reset \{\}/g)?.length).toBe(3)
    expect(text).toContain("ports: !reset []")
  })
})

describe("Dockerfile", () => {
  test("copies what exists, and the build context holds nothing else", () => {
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) =>
      (m[1] ?? "").split(" "),
    )
    expect(copied.length).toBeGreaterThan(0)
    for (const path of copied) expect({ path, exists: existsSync(path) }).toEqual({ path, exists: true })
    const allowed = readFileSync(".dockerignore", "utf8")
      .split("\n")
      .filter((line) => line.startsWith("!"))
      .map((line) => line.slice(1).replace(/\/$/, ""))
    expect(allowed.toSorted()).toEqual([...new Set(copied)].toSorted())
  })

  test("runs the service named by its build argument with bun as PID 1, and checks its health", () => {
    expect(dockerfile).toMatch(/ln -s "services\/\$\{SERVICE\}\.ts" service\.ts/)
    expect(dockerfile).toMatch(/^ENTRYPOINT \["bun", "service\.ts"\]$/m)
    expect(dockerfile).toMatch(/^HEALTHCHECK .*CMD \["bun", "shared\/healthcheck\.ts"\]$/m)
    expect(dockerfile).toMatch(/^USER bun$/m)
  })

  test("pins its base images to full versions, Bun's to the one the lockfile installs", () => {
    const bases = dockerfileBases(dockerfile)
    expect(bases.filter((image) => !/:\d+\.\d+\.\d+/.test(image))).toEqual([])
    const bun = bases.find((image) => image.startsWith("oven/bun:"))
    expect(bun).toBe(`oven/bun:${lockfile.packages["node_modules/bun"]?.version}-slim`)
  })

  test("labels the image with its version (package.json's by default), revision and source", () => {
    expect(dockerfile).toContain(`ARG VERSION=${packageJson.version}`)
    for (const label of ["version", "revision", "source"])
      expect(dockerfile).toMatch(new RegExp(`org\\.opencontainers\\.image\\.${label}=`))
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

describe("shared/healthcheck.ts", () => {
  for (const name of Object.keys(services) as (keyof typeof services)[]) {
    test(`${name}: asks the host and port the service listens on`, () => {
      const { host, port } = LISTEN_SETTINGS[name]
      expect([host in services[name].entries, port in services[name].entries]).toEqual([true, true])
      const defaults = services[name].load({}) as Record<string, unknown>
      expect(healthUrl({ SERVICE: name })).toBe(`http://127.0.0.1:${defaults[port]}/healthz`)
      const custom = { SERVICE: name, [host]: "127.0.0.2", [port]: "9123" }
      expect(services[name].load(custom)).toMatchObject({ [host]: "127.0.0.2", [port]: 9123 })
      expect(healthUrl(custom)).toBe("http://127.0.0.2:9123/healthz")
      expect(healthUrl({ SERVICE: name, [host]: "::" })).toBe(`http://[::1]:${defaults[port]}/healthz`)
    })
  }

  test("names the services it knows when SERVICE is not one of them", () => {
    expect(() => healthUrl({ SERVICE: "mailer" })).toThrow(
      'SERVICE must be one of gateway, polarity-worker, status-store, not "mailer"',
    )
  })
})

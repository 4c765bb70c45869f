// The three services as containers on the private engine: host networking, loopback ports of their own, a name
// prefix of their own on the machine's RabbitMQ, and the status store's database on a named volume.
import { createServer } from "node:net"
import { createTestDatabase, type TestDatabase } from "../postgres.ts"
import type { Runtime } from "../runtimes.ts"
import { AMQP_URL, deleteTopology, uniquePrefix } from "../support.ts"
import type { Engine } from "./engine.ts"
import { imageName, type Service } from "./images.ts"

/** The variables that set each service's listening address. */
const LISTEN = {
  gateway: { host: "HOST", port: "PORT" },
  "polarity-worker": { host: "WORKER_HOST", port: "WORKER_PORT" },
  "status-store": { host: "STATUS_STORE_HOST", port: "STATUS_STORE_PORT" },
} as const

/** Which runtime's image runs each service (Bun's where not said). */
export type ImageRuntimes = Partial<Record<Service, Runtime>>
/** Where the status store keeps its state: SQLite on the stack's volume, or a database of the stack's own. */
export type StoreBackend = "sqlite" | "postgres"

export interface RunOptions {
  version?: string
  /** Another port than the service's usual one in this stack (a second worker beside the first). */
  port?: number
}

export interface ContainerStack extends AsyncDisposable {
  prefix: string
  volume: string
  /** The container now serving each service. */
  current: Record<Service, string>
  /** Each service's usual loopback port in this stack. */
  ports: Record<Service, number>
  /** The gateway's URL + path. */
  url(path: string): string
  /** Start a container of the service and resolve once Docker reports it healthy; it becomes `current`. */
  run(service: Service, options?: RunOptions): Promise<string>
  /** `docker stop` (SIGTERM, then SIGKILL after 30 s): how long it took, the exit code and the container's log. */
  stop(container: string): Promise<{ ms: number; exitCode: number; log: string }>
  kill(container: string): Promise<void>
}

export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (!address || typeof address === "string") throw new Error("no port")
  return address.port
}

export async function startContainerStack(
  engine: Engine,
  topic: string,
  runtimes: ImageRuntimes = {},
  backend: StoreBackend = "sqlite",
): Promise<ContainerStack> {
  const prefix = uniquePrefix(`containers-${topic}`)
  const id = prefix.replaceAll(/[^\w-]/g, "")
  // On the machine's PostgreSQL, which the containers reach on the host's network as the tests do.
  const database: TestDatabase | undefined =
    backend === "postgres" ? await createTestDatabase(`containers_${topic}`) : undefined
  const storeSettings: Record<string, string> = database
    ? { DATABASE_URL: database.url }
    : { DATABASE_PATH: "/data/status-store.sqlite" }
  const volume = `${id}-data`
  const ports: Record<Service, number> = {
    gateway: await freePort(),
    "polarity-worker": await freePort(),
    "status-store": await freePort(),
  }
  const started: string[] = []
  const current = {} as Record<Service, string>
  let count = 0

  async function run(service: Service, options: RunOptions = {}): Promise<string> {
    const name = `${id}-${service}-${++count}`
    const listen = LISTEN[service]
    const settings: Record<string, string> = {
      AMQP_URL,
      AMQP_PREFIX: prefix,
      LOG_LEVEL: "info",
      ENABLE_TEST_TASKS: "true",
      [listen.host]: "127.0.0.1",
      [listen.port]: String(options.port ?? ports[service]),
      ...(service === "status-store" && storeSettings),
    }
    await engine.docker([
      "run",
      "--detach",
      "--network=host",
      `--name=${name}`,
      // The image's own HEALTHCHECK command, asked every second rather than every ten, so tests wait less.
      "--health-interval=1s",
      ...(service === "status-store" ? [`--volume=${volume}:/data`] : []),
      ...Object.entries(settings).flatMap(([key, value]) => ["--env", `${key}=${value}`]),
      imageName(service, options.version ?? "1", runtimes[service]),
    ])
    started.push(name)
    await untilHealthy(engine, name)
    current[service] = name
    return name
  }

  return {
    prefix,
    volume,
    current,
    ports,
    url: (path) => `http://127.0.0.1:${ports.gateway}${path}`,
    run,
    async stop(container) {
      const startedAt = performance.now()
      await engine.docker(["stop", "--time=30", container])
      const ms = Math.round(performance.now() - startedAt)
      const exitCode = Number(await engine.docker(["inspect", "--format", "{{.State.ExitCode}}", container]))
      return { ms, exitCode, log: await containerLog(engine, container) }
    },
    async kill(container) {
      await engine.docker(["kill", container])
    },
    async [Symbol.asyncDispose]() {
      if (started.length > 0) await engine.docker(["rm", "--force", ...started]).catch(() => "")
      await engine.docker(["volume", "rm", "--force", volume]).catch(() => "")
      await database?.[Symbol.asyncDispose]()
      await deleteTopology({ AMQP_URL, AMQP_PREFIX: prefix })
    },
  }
}

export async function containerLog(engine: Engine, container: string): Promise<string> {
  // The services log to stdout; `docker logs` replays both streams, and only stdout comes back here.
  return engine.docker(["logs", container])
}

/** Wait for Docker's own verdict from the image's HEALTHCHECK; fail with the log if the container exits. */
async function untilHealthy(engine: Engine, container: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const [running, health] = (
      await engine.docker(["inspect", "--format", "{{.State.Running}} {{.State.Health.Status}}", container])
    ).split(" ")
    if (health === "healthy") return
    if (running !== "true" || Date.now() > deadline) {
      const log = await containerLog(engine, container).catch((err: Error) => err.message)
      throw new Error(
        `${container} is not healthy (running: ${running}, health: ${health}); its log:\n${log}`,
      )
    }
    await Bun.sleep(100)
  }
}

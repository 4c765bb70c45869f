// The real Dockerfile, built and run: every image is built once per run on a private Docker engine, then each
// service runs as its own container on the host's network against the machine's RabbitMQ. What a deployment
// relies on is proven here: end to end through the containers, graceful `docker stop`, nothing lost to
// `docker kill`, and each service replaced by a new image on its own while tasks flow. Figures are printed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as v from "valibot"
import { DashboardOverview, type TaskRecord } from "../../shared/contracts.ts"
import { topologyNames } from "../../shared/topology.ts"
import { DENO_ENV, denoFlags, type Runtime, type ServiceName } from "../runtimes.ts"
import { rawChannel } from "../support.ts"
import { type Engine, engineUnavailable, startEngine } from "./engine.ts"
import {
  buildLabels,
  buildServiceImage,
  DOCKERFILES,
  dockerfileBases,
  imageName,
  imageSize,
  loadBaseImage,
  makeStandIns,
  REPO,
  SERVICES,
  type Service,
  timings,
} from "./images.ts"
import {
  type ContainerStack,
  freePort,
  type ImageRuntimes,
  type StoreBackend,
  startContainerStack,
} from "./stack.ts"
import { isFinal, lookupAll, type PhaseFigures, TaskFlow, tally } from "./task-flow.ts"

const unavailable = engineUnavailable()
if (unavailable) console.warn(`container tests skipped: ${unavailable}`)

const MB = 1e6
/** Each test starts containers and waits for them on a shared 2-core machine: minutes, not npm test's minute. */
const TEST_TIMEOUT = { timeout: 5 * 60_000 }
let engine: Engine | undefined
const runStartedAt = performance.now()
let base: "cached" | "made" = "made"

function docker(args: string[]): Promise<string> {
  if (!engine) throw new Error("no engine")
  return engine.docker(args)
}

async function stackFor(
  topic: string,
  runtimes: ImageRuntimes = {},
  backend: StoreBackend = "sqlite",
): Promise<ContainerStack> {
  if (!engine) throw new Error("no engine")
  return startContainerStack(engine, topic, runtimes, backend)
}

const ALL_DENO: ImageRuntimes = { gateway: "deno", "polarity-worker": "deno", "status-store": "deno" }
/**
 * The deployments run end to end: each runtime's images alone, Deno's gateway in front of Bun's, and each
 * runtime's store on the machine's PostgreSQL.
 */
const DEPLOYMENTS: [string, string, ImageRuntimes, StoreBackend][] = [
  ["the Bun containers", "e2e", {}, "sqlite"],
  ["the Deno containers", "e2e-deno", ALL_DENO, "sqlite"],
  ["a Deno gateway's container with Bun's worker and store", "e2e-mixed", { gateway: "deno" }, "sqlite"],
  ["the Bun containers, the store on PostgreSQL", "e2e-postgres", {}, "postgres"],
  ["the Deno containers, the store on PostgreSQL", "e2e-deno-postgres", ALL_DENO, "postgres"],
]
const SCRIPT_NAMES: Record<Service, ServiceName> = {
  gateway: "gateway",
  "polarity-worker": "worker",
  "status-store": "store",
}

/**
 * The permissions `npm run start:deno:<service>` grants, with the image's paths: the app in /app, the store's
 * data directory on the /data volume.
 */
function imagePermissions(service: Service): string[] {
  return denoFlags(SCRIPT_NAMES[service])
    .filter((flag) => flag.startsWith("--allow-"))
    .map((flag) => {
      const [name, paths] = flag.split("=")
      if (!paths || name === "--allow-sys") return flag
      const inImage = paths.split(",").map((path) => (path === "data" ? "/data" : `/app/${path}`))
      return `${name}=${inImage.join(",")}`
    })
}

/** What each runtime's images are: checked on every image built. */
const IMAGE_FACTS: Record<Runtime, { user: string; uid: string; entrypoint: string[]; files: string[] }> = {
  bun: {
    user: "bun",
    uid: "1000",
    entrypoint: ["bun", "service.ts"],
    files: ["node_modules", "package.json", "service.ts", "services", "shared", "tsconfig.json"],
  },
  deno: {
    user: "deno",
    uid: "1993",
    entrypoint: ["/app/run"],
    files: ["node_modules", "package.json", "run", "services", "shared"],
  },
}

const HEALTHCHECKS: Record<Runtime, string[]> = {
  bun: ["CMD", "bun", "shared/healthcheck.ts"],
  deno: [
    "CMD",
    "deno",
    "run",
    "--no-prompt",
    "--cached-only",
    "--allow-net",
    "--allow-env",
    "shared/healthcheck.ts",
  ],
}

/** The command line of a service's PID 1: the runtime itself, so docker stop's SIGTERM reaches it directly. */
function pid1(service: Service, runtime: Runtime): string[] {
  if (runtime === "bun") return ["bun", "service.ts"]
  return [
    "deno",
    "run",
    "--no-prompt",
    "--cached-only",
    "--no-code-cache",
    ...imagePermissions(service),
    `services/${service}.ts`,
  ]
}

/** The whole stack, store first so the gateway's first query has someone to answer it. */
async function runAll(stack: ContainerStack, version = "1"): Promise<void> {
  for (const service of ["status-store", "polarity-worker", "gateway"] as const)
    await stack.run(service, { version })
}

async function postJson(url: string, body: unknown): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  })
}

/** Submit test tasks that each sleep `sleepMs` in the worker, and resolve once every one has STARTED. */
async function tasksInHand(stack: ContainerStack, count: number, sleepMs: number): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < count; i++) {
    const res = await postJson(stack.url("/test/flaky"), { sleep_ms: sleepMs })
    expect(res.status).toBe(202)
    ids.push(((await res.json()) as { task_id: string }).task_id)
  }
  for (;;) {
    const records = await lookupAll(stack.url, ids, 0)
    if (records.every((record) => record?.status === "STARTED")) return ids
    if (records.some(isFinal)) throw new Error(`a task ended before the test could stop its worker`)
    await Bun.sleep(50)
  }
}

async function submitBatch(stack: ContainerStack, size: number): Promise<string> {
  const reviews = Array.from({ length: size }, (_, i) => `Review ${i}: good, but a little sad.`)
  const res = await postJson(stack.url("/polarities/batch"), { reviews })
  expect(res.status).toBe(202)
  return ((await res.json()) as { group_id: string }).group_id
}

async function groupWhenFinal(stack: ContainerStack, groupId: string) {
  const res = await fetch(stack.url(`/polarities/groups/${groupId}?wait=30`))
  expect(res.status).toBe(200)
  return (await res.json()) as { status: string; size: number; counts: Record<string, number> }
}

/** Messages left in a queue: ready ones, which is what an unacked delivery becomes once its consumer is gone. */
async function queueDepth(queue: string): Promise<number> {
  await using amqp = await rawChannel()
  return (await amqp.channel.queueDeclare(queue, { passive: true })).messageCount
}

describe.skipIf(unavailable !== undefined)("containers", () => {
  beforeAll(
    async () => {
      engine = await startEngine()
      base = await loadBaseImage(engine)
      await makeStandIns(engine)
      // Version 1 of every image, then version 2 (the same code with new labels) to deploy over it; Deno's
      // version 1.
      for (const version of ["1", "2"])
        for (const service of SERVICES) await buildServiceImage(engine, service, version)
      for (const service of SERVICES) await buildServiceImage(engine, service, "1", "deno")
    },
    { timeout: 20 * 60_000 },
  )

  afterAll(
    async () => {
      await engine?.stop()
      const costs = Object.entries(timings).map(([step, ms]) => `${step} ${(ms / 1000).toFixed(1)} s`)
      console.log(
        `container suite: ${((performance.now() - runStartedAt) / 1000).toFixed(0)} s in all, base image ${base}; ${costs.join(", ")}`,
      )
    },
    { timeout: 120_000 },
  )

  test.each(["bun", "deno"] as const)(
    "each %s image runs as a non-root user, checks its own health, and holds only what runs",
    async (runtime) => {
      const facts = IMAGE_FACTS[runtime]
      const base = dockerfileBases(readFileSync(join(REPO, DOCKERFILES[runtime]), "utf8")).at(-1) ?? ""
      const sizes = [`${base} (stand-in) ${((await imageSize(engine as Engine, base)) / MB).toFixed(1)} MB`]
      for (const service of SERVICES) {
        const image = imageName(service, "1", runtime)
        const config = JSON.parse(await docker(["image", "inspect", "--format", "{{json .Config}}", image]))
        const env = (name: string) => config.Env.find((entry: string) => entry.startsWith(`${name}=`))
        expect({
          user: config.User,
          entrypoint: config.Entrypoint,
          cmd: config.Cmd,
          healthcheck: config.Healthcheck.Test,
          service: env("SERVICE"),
          version: config.Labels["org.opencontainers.image.version"],
          revision: config.Labels["org.opencontainers.image.revision"],
          source: config.Labels["org.opencontainers.image.source"],
        }).toEqual({
          user: facts.user,
          entrypoint: facts.entrypoint,
          cmd: null,
          healthcheck: HEALTHCHECKS[runtime],
          service: `SERVICE=${service}`,
          version: "1",
          revision: buildLabels("1").REVISION,
          source: buildLabels("1").SOURCE,
        })
        if (runtime === "deno") {
          // The V8 settings of `npm run start:deno:<service>`, as the image's environment.
          const v8Flags = denoFlags(SCRIPT_NAMES[service]).find((flag) => flag.startsWith("--v8-flags="))
          expect(env("DENO_V8_FLAGS")).toBe(`DENO_V8_FLAGS=${v8Flags?.slice("--v8-flags=".length)}`)
          // And the glibc settings of those scripts (package.json's config.denoEnv).
          for (const setting of DENO_ENV) expect(env(setting.split("=")[0] ?? "")).toBe(setting)
        }
        const listing = (command: string) =>
          docker(["run", "--rm", "--network=host", "--entrypoint=sh", image, "-c", command])
        expect((await listing("ls -A /app")).split("\n")).toEqual(facts.files)
        // No development tool, no TypeScript compiler, no source maps or package tests.
        expect(
          await listing(
            "cd /app/node_modules && ls -d typescript @biomejs bun deno concurrently playwright-core */test 2>/dev/null; find . -name '*.map' | head -3",
          ),
        ).toBe("")
        expect(await listing("id -u")).toBe(facts.uid)
        const size = await imageSize(engine as Engine, image)
        sizes.push(`${image} ${(size / MB).toFixed(1)} MB`)
      }
      console.log(`image sizes: ${sizes.join(", ")}`)
    },
    TEST_TIMEOUT,
  )

  test.each(DEPLOYMENTS)(
    "a review, a batch, the dashboard and every /healthz, through %s",
    async (_deployment, topic, runtimes, backend) => {
      await using stack = await stackFor(topic, runtimes, backend)
      await runAll(stack)

      const res = await postJson(stack.url("/polarities?wait=10"), {
        review: "This is terrible, awful and sad.",
      })
      expect(res.status).toBe(200)
      const record = (await res.json()) as TaskRecord
      expect({ status: record.status, result: record.result }).toEqual({
        status: "SUCCESS",
        result: {
          score: -8,
          comparative: expect.any(Number),
          polarity: "negative",
          positive: [],
          negative: ["sad", "awful", "terrible"],
          language: "en",
        },
      })

      const batch = await postJson(stack.url("/polarities/batch?wait=10"), {
        reviews: ["Lovely!", "Ужасный сервис, всё сломано и очень грустно.", "It is a table."],
      })
      expect(batch.status).toBe(200)
      const group = (await batch.json()) as { status: string; results: TaskRecord[] }
      expect(group.status).toBe("SUCCESS")
      expect(
        group.results.map((task) => [task.result && "polarity" in task.result && task.result.polarity]),
      ).toEqual([["positive"], ["negative"], ["neutral"]])

      const dashboard = await fetch(stack.url("/dashboard"))
      expect({ status: dashboard.status, type: dashboard.headers.get("content-type") }).toEqual({
        status: 200,
        type: expect.stringContaining("text/html"),
      })
      expect(await dashboard.text()).toContain("<html")
      const overview = await fetch(stack.url("/dashboard/api/overview"))
      expect(overview.status).toBe(200)
      expect(v.safeParse(DashboardOverview, await overview.json()).issues).toBeUndefined()

      for (const service of SERVICES) {
        const health = await fetch(`http://127.0.0.1:${stack.ports[service]}/healthz`)
        expect({ service, status: health.status, body: await health.json() }).toEqual({
          service,
          status: 200,
          body: {
            status: "ok",
            broker: "connected",
            ...(service === "status-store" && { database: "reachable" }),
          },
        })
        // The runtime itself is PID 1, so docker stop's SIGTERM reaches it with no shell in between.
        const cmdline = await docker(["exec", stack.current[service], "cat", "/proc/1/cmdline"])
        expect(cmdline.split("\0").filter(Boolean)).toEqual(pid1(service, runtimes[service] ?? "bun"))
      }
    },
    TEST_TIMEOUT,
  )

  test.each([
    ["Bun", "stop", {}],
    ["Deno", "stop-deno", ALL_DENO],
  ] as const)(
    "docker stop of %s images is graceful: the worker finishes the tasks in hand, the store commits, all exit 0",
    async (runtime, topic, runtimes) => {
      await using stack = await stackFor(topic, runtimes)
      await runAll(stack)
      const names = topologyNames(stack.prefix)
      const stops: string[] = []

      const inHand = await tasksInHand(stack, 4, 3000)
      const worker = await stack.stop(stack.current["polarity-worker"])
      stops.push(`worker ${worker.ms} ms with 4 tasks in hand`)
      expect({ exitCode: worker.exitCode, stopped: worker.log.includes('"msg":"stopped"') }).toEqual({
        exitCode: 0,
        stopped: true,
      })
      // No worker runs now: the tasks are final only if the stopping worker finished them, and acked if no
      // delivery went back to the queue.
      expect((await lookupAll(stack.url, inHand, 10)).map((task) => [task?.status, task?.attempts])).toEqual(
        inHand.map(() => ["SUCCESS", 1]),
      )
      expect(await queueDepth(names.taskQueues.default)).toBe(0)
      await stack.run("polarity-worker")

      const groupId = await submitBatch(stack, 300)
      const store = await stack.stop(stack.current["status-store"])
      stops.push(`store ${store.ms} ms while a batch of 300 flowed`)
      expect({ exitCode: store.exitCode, stopped: store.log.includes('"msg":"stopped"') }).toEqual({
        exitCode: 0,
        stopped: true,
      })
      await stack.run("status-store")
      expect(await groupWhenFinal(stack, groupId)).toMatchObject({ status: "SUCCESS", size: 300 })

      const gateway = await stack.stop(stack.current.gateway)
      stops.push(`gateway ${gateway.ms} ms`)
      expect({ exitCode: gateway.exitCode, stopped: gateway.log.includes('"msg":"stopped"') }).toEqual({
        exitCode: 0,
        stopped: true,
      })
      console.log(`docker stop (${runtime}): ${stops.join(", ")}`)
    },
    TEST_TIMEOUT,
  )

  test(
    "docker kill, then a new container: nothing is lost",
    async () => {
      await using stack = await stackFor("kill")
      await runAll(stack)

      const inHand = await tasksInHand(stack, 4, 3000)
      await stack.kill(stack.current["polarity-worker"])
      await stack.run("polarity-worker")
      expect((await lookupAll(stack.url, inHand, 30)).map((task) => task?.status)).toEqual(
        inHand.map(() => "SUCCESS"),
      )

      const groupId = await submitBatch(stack, 300)
      await stack.kill(stack.current["status-store"])
      await stack.run("status-store")
      expect(await groupWhenFinal(stack, groupId)).toMatchObject({ status: "SUCCESS", size: 300 })
    },
    TEST_TIMEOUT,
  )

  test(
    "each service is replaced by a new image on its own while tasks flow: none lost",
    async () => {
      await using stack = await stackFor("deploy")
      await runAll(stack, "1")
      const flow = new TaskFlow(stack.url).start()
      let phases: PhaseFigures[] = []
      try {
        await flow.flowing()
        // The new worker starts beside the old one (another port), then the old one stops: no gap.
        flow.enter("worker replaced")
        const oldWorker = stack.current["polarity-worker"]
        await stack.run("polarity-worker", { version: "2", port: await freePort() })
        expect((await stack.stop(oldWorker)).exitCode).toBe(0)
        await flow.flowing()
        // One store at a time owns its SQLite file: the old one stops, the new one starts on the same volume.
        flow.enter("store replaced")
        expect((await stack.stop(stack.current["status-store"])).exitCode).toBe(0)
        await stack.run("status-store", { version: "2" })
        await flow.flowing()
        // The gateway's port is taken until the old one stops.
        flow.enter("gateway replaced")
        expect((await stack.stop(stack.current.gateway)).exitCode).toBe(0)
        await stack.run("gateway", { version: "2" })
        await flow.flowing()
        flow.enter("after")
        await flow.flowing()
      } finally {
        phases = await flow.stop()
        console.log(
          `deploying version 2 while ${flow.accepted.length} tasks flowed:\n${phases.map(describePhase).join("\n")}`,
        )
      }
      // A client meets a refused connection or a 503 at worst, never another error.
      const outcomes = new Set(
        phases.flatMap((figures) => [...Object.keys(figures.submit), ...Object.keys(figures.read)]),
      )
      expect([...outcomes].filter((outcome) => !["ok", "503", "refused"].includes(outcome))).toEqual([])
      for (const service of SERVICES) {
        const image = await docker(["inspect", "--format", "{{.Config.Image}}", stack.current[service]])
        expect(image).toBe(imageName(service, "2"))
      }
      // Tasks accepted before the store was replaced are read from its volume by the new one.
      const records = await lookupAll(stack.url, flow.accepted, 30)
      const ended: Record<string, number> = { unique: new Set(flow.accepted).size, ...tally(records) }
      expect(ended).toEqual({ unique: flow.accepted.length, SUCCESS: flow.accepted.length })
    },
    TEST_TIMEOUT,
  )
})

function describePhase(figures: PhaseFigures): string {
  const counts = (outcomes: Record<string, number>) =>
    Object.entries(outcomes)
      .map(([outcome, count]) => `${count} ${outcome}`)
      .join(", ") || "none"
  return `  ${figures.phase}: submissions ${counts(figures.submit)} (longest outage ${figures.longestOutageMs.submit} ms); reads ${counts(figures.read)} (longest outage ${figures.longestOutageMs.read} ms)`
}

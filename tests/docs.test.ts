// The reference in README.md and docs/ names metrics and settings; each must be one the services really have.
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { GatewayEnv } from "../services/gateway.ts"
import { loadWorkerConfig, startPool, WorkerEnv } from "../services/polarity-worker.ts"
import { StoreEnv } from "../services/status-store.ts"
import { type Stack, startStack } from "./support.ts"

const DOCS = [
  "README.md",
  ...readdirSync("docs").flatMap((file) => (file.endsWith(".md") ? [`docs/${file}`] : [])),
]
const docsText = DOCS.map((path) => readFileSync(path, "utf8")).join("\n")

let stack: Stack
// The supervisor of an autoscaled pool has metrics of its own; with a minimum of 0 and nothing waiting it starts
// no process.
let pool: Awaited<ReturnType<typeof startPool>>
beforeAll(async () => {
  stack = await startStack("docs")
  const config = loadWorkerConfig({ ...stack.env, WORKER_NAME: "docs-pool" })
  pool = await startPool({ ...config, WORKER_AUTOSCALE: { max: 1, min: 0 } }, "services/polarity-worker.ts")
})
afterAll(async () => {
  await pool?.stop()
  await stack?.[Symbol.asyncDispose]()
})

/** The metric families a service exports, from the `# TYPE` lines of its /metrics. */
async function exportedMetrics(url: string): Promise<string[]> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return [...text.matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1] ?? "")
}

describe("the docs name only what exists", () => {
  test("every metric the docs name is exported by a service", async () => {
    const exported = new Set(
      (
        await Promise.all(
          [stack.gateway.url, stack.worker.url, stack.store.url, pool.url].map(exportedMetrics),
        )
      ).flat(),
    )
    expect(exported.size).toBeGreaterThan(20)
    const named = new Set(docsText.match(/\b(?:polarity|nodejs|process)_[a-z0-9_]*[a-z0-9]\b/g) ?? [])
    const histogramSeries = /_(bucket|sum|count)$/
    const missing = [...named].filter(
      (name) => !exported.has(name) && !exported.has(name.replace(histogramSeries, "")),
    )
    expect(missing).toEqual([])
  })

  test("every setting a service reads is in the first column of a table in docs/configuration.md", () => {
    const configuration = readFileSync("docs/configuration.md", "utf8")
    const settings = new Set([GatewayEnv, WorkerEnv, StoreEnv].flatMap((env) => Object.keys(env)))
    expect(settings.size).toBeGreaterThan(30)
    const undocumented = [...settings].filter(
      (name) => !new RegExp(`^\\| [^|]*\`${name}\``, "m").test(configuration),
    )
    expect(undocumented).toEqual([])
  })

  test("every relative link in README.md and docs/ points to a file that exists", () => {
    const broken = DOCS.flatMap((path) => {
      const links = [...readFileSync(path, "utf8").matchAll(/\]\(([^)#:\s]+)(?:#[^)]*)?\)/g)]
      return links.map((link) => join(dirname(path), link[1] ?? "")).filter((target) => !existsSync(target))
    })
    expect(broken).toEqual([])
  })
})

// The status store's database setting, and its /healthz on PostgreSQL: it says whether the database answers,
// not only the broker.
import { describe, expect, test } from "bun:test"
import { rmSync } from "node:fs"
import { loadStoreConfig, start as startStore } from "../services/status-store.ts"
import { ConfigError } from "../shared/config.ts"
import { createTestDatabase } from "./postgres.ts"
import { deleteTopology, testEnv } from "./support.ts"

test("the store's /healthz answers 503 with the database unreachable once its database is gone", async () => {
  await using database = await createTestDatabase("store-health")
  // No query of the store's own loops in flight when the database goes: the driver's write-after-close defect
  // (docs/deploy.md) would end the process, which is this test's, rather than show in /healthz.
  const { env, dataDir } = testEnv("store-health", {
    DATABASE_URL: database.url,
    SCHEDULER_TICK_MS: "60000",
    RESULT_EXPIRES: "never",
  })
  const store = await startStore(loadStoreConfig(env))
  try {
    const healthy = await fetch(`${store.url}/healthz`)
    expect({ status: healthy.status, body: await healthy.json() }).toEqual({
      status: 200,
      body: { status: "ok", broker: "connected", database: "reachable" },
    })
    await database[Symbol.asyncDispose]()
    const degraded = await fetch(`${store.url}/healthz`)
    expect({ status: degraded.status, body: await degraded.json() }).toEqual({
      status: 503,
      body: { status: "degraded", broker: "connected", database: "unreachable" },
    })
  } finally {
    await store.stop().catch(() => {})
    await deleteTopology(env)
    rmSync(dataDir, { recursive: true, force: true })
  }
})

describe("DATABASE_URL", () => {
  const notPostgres =
    "must be a postgres:// or postgresql:// URL (unset, the store uses the SQLite file at DATABASE_PATH)"
  const refusals: [string, string, string][] = [
    ["not a URL", "postgres host", notPostgres],
    ["another database's URL", "mysql://app:secret@db/tasks", notPostgres],
    ["a URL without a host", "postgres:///tasks", "must name the PostgreSQL server's host"],
  ]
  for (const [what, url, problem] of refusals) {
    test(`refuses ${what} at start-up, naming the setting and never the password`, () => {
      const message = `invalid configuration: DATABASE_URL: ${problem}`
      expect(() => loadStoreConfig({ DATABASE_URL: url })).toThrow(new ConfigError(message))
      expect(message).not.toContain("secret")
    })
  }

  test("takes postgres:// and postgresql:// URLs; unset, the store stays on SQLite", () => {
    for (const url of ["postgres://app:secret@db:5432/tasks", "postgresql://db/tasks"])
      expect(loadStoreConfig({ DATABASE_URL: url }).DATABASE_URL).toBe(url)
    expect(loadStoreConfig({}).DATABASE_URL).toBeUndefined()
  })
})

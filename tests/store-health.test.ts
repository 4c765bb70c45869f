// The status store's /healthz on PostgreSQL: it says whether the database answers, not only the broker.
import { expect, test } from "bun:test"
import { rmSync } from "node:fs"
import { loadStoreConfig, start as startStore } from "../services/status-store.ts"
import { createTestDatabase } from "./postgres.ts"
import { deleteTopology, testEnv } from "./support.ts"

test("the store's /healthz answers 503 with the database unreachable once its database is gone", async () => {
  await using database = await createTestDatabase("store-health")
  const { env, dataDir } = testEnv("store-health", { DATABASE_URL: database.url })
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
